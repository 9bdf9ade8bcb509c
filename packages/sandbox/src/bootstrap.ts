/**
 * Source run once in every fresh session context, through `evalClosure` with
 * `$0` = the console sink and `$1` = the host-call starter (both isolated-vm
 * Callbacks). Everything that talks to the host stays in this closure: the global
 * only ever sees plain functions and plain objects, never a Reference or Callback.
 *
 * It returns one `dispatch(op, ...)` function, which the child keeps as a
 * Reference: op 1 settles a host call, op 2 (re)installs the granted names.
 * Settling goes through a timed `apply`, so promise continuations after a host
 * call still run under the wall-time limit.
 */
export const BOOTSTRAP_SOURCE = String.raw`
const sink = $0, hostStart = $1;
const g = globalThis;
// WebAssembly memory is not counted by the isolate's memory limit, and shared
// memory can park the isolate's thread: forms get neither.
delete g.WebAssembly; delete g.SharedArrayBuffer; delete g.Atomics;

const ErrorCtor = Error, PromiseCtor = Promise;
const ownKeys = Reflect.ownKeys, getDesc = Object.getOwnPropertyDescriptor, getProto = Object.getPrototypeOf;
const isArray = Array.isArray, jsonStr = JSON.stringify;
// Forms may replace Map.prototype.get and friends; the host-call path uses no methods.
const pending = Object.create(null);

function call (name, args) {
  return new PromiseCtor((resolve, reject) => {
    const r = hostStart(name, args);
    if (typeof r === 'string') reject(new ErrorCtor(r));
    else pending[r] = { resolve, reject };
  });
}

function quote (s) { return "'" + s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n') + "'"; }

function fmt (v, depth, seen) {
  switch (typeof v) {
    case 'string': return depth === 0 ? v : quote(v);
    case 'number': return Object.is(v, -0) ? '-0' : String(v);
    case 'bigint': return String(v) + 'n';
    case 'symbol': return v.toString();
    case 'undefined': return 'undefined';
    case 'boolean': return String(v);
    case 'function': {
      const src = Function.prototype.toString.call(v);
      return (src.startsWith('class') ? '[class ' : '[Function: ') + (v.name || '(anonymous)') + ']';
    }
  }
  if (v === null) return 'null';
  if (seen.includes(v)) return '[Circular]';
  if (v instanceof ErrorCtor) return depth === 0 && typeof v.stack === 'string' ? v.stack : '[' + String(v.name) + ': ' + String(v.message) + ']';
  if (v instanceof Date) return isNaN(v) ? 'Invalid Date' : v.toISOString();
  if (v instanceof RegExp) return String(v);
  if (v instanceof Promise) return 'Promise {}';
  const proto = getProto(v);
  const ctor = proto && getDesc(proto, 'constructor');
  const cname = ctor && typeof ctor.value === 'function' ? ctor.value.name : (proto === null ? '[Object: null prototype]' : '');
  if (depth > 2) return isArray(v) ? '[Array]' : '[' + (cname || 'Object') + ']';
  const inner = seen.concat([v]);
  const parts = [];
  let open = '{', close = '}', prefix = cname && cname !== 'Object' ? cname + ' ' : '';
  if (isArray(v) || ArrayBuffer.isView(v)) {
    open = '['; close = ']';
    if (!isArray(v)) prefix = cname + '(' + v.length + ') ';
    else if (cname === 'Array') prefix = '';
    const n = Math.min(v.length, 100);
    for (let i = 0; i < n; i++) parts.push(fmt(v[i], depth + 1, inner));
    if (v.length > n) parts.push('... ' + (v.length - n) + ' more items');
  } else if (v instanceof Map) {
    prefix = 'Map(' + v.size + ') ';
    for (const [k, x] of v) parts.push(fmt(k, depth + 1, inner) + ' => ' + fmt(x, depth + 1, inner));
  } else if (v instanceof Set) {
    prefix = 'Set(' + v.size + ') ';
    for (const x of v) parts.push(fmt(x, depth + 1, inner));
  }
  if (!ArrayBuffer.isView(v)) {
    for (const k of ownKeys(v)) {
      if (isArray(v) && (k === 'length' || String(k >>> 0) === k)) continue;
      const d = getDesc(v, k);
      if (!d || !d.enumerable) continue;
      const key = typeof k === 'symbol' ? '[' + k.toString() + ']' : (/^[A-Za-z_$][\w$]*$/.test(k) ? k : quote(k));
      const val = 'value' in d ? fmt(d.value, depth + 1, inner) : (d.get && d.set ? '[Getter/Setter]' : d.get ? '[Getter]' : '[Setter]');
      parts.push(key + ': ' + val);
      if (parts.length > 100) { parts.push('...'); break; }
    }
  }
  if (parts.length === 0) return prefix + open + close;
  return prefix + open + ' ' + parts.join(', ') + ' ' + close;
}

function line (args) {
  let s = '';
  for (let i = 0; i < args.length; i++) {
    let part;
    try { part = fmt(args[i], 0, []); } catch (e) { part = '[unprintable]'; }
    s += (i === 0 ? '' : ' ') + part;
  }
  return s;
}

const con = {};
for (const level of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
  con[level] = function (...args) { sink(line(args)); };
}
con.dir = function (v) { sink(line([v])); };
Object.defineProperty(g, 'console', { value: con, writable: true, configurable: true, enumerable: false });

let installed = [];
function install (names) {
  for (const k of installed) delete g[k];
  installed = [];
  const sorted = names.slice().sort((a, b) => a.split('.').length - b.split('.').length);
  for (const name of sorted) {
    const parts = name.split('.');
    let o = g;
    for (let i = 0; i < parts.length - 1; i++) {
      const seg = parts[i];
      const cur = getDesc(o, seg);
      if (!cur || (typeof cur.value !== 'object' && typeof cur.value !== 'function') || cur.value === null) {
        Object.defineProperty(o, seg, { value: {}, writable: true, configurable: true, enumerable: o !== g });
        if (o === g) installed.push(seg);
      }
      o = o[seg];
    }
    const last = parts[parts.length - 1];
    const fn = { [last]: (...args) => call(name, args) }[last];
    const prev = getDesc(o, last);
    if (prev && typeof prev.value === 'object' && prev.value !== null) Object.assign(fn, prev.value);
    Object.defineProperty(o, last, { value: fn, writable: true, configurable: true, enumerable: o !== g });
    if (o === g && !installed.includes(last)) installed.push(last);
  }
}

return function dispatch (op, a, b, c) {
  if (op === 1) {
    const p = pending[a];
    if (p === undefined) return;
    delete pending[a];
    if (b) p.resolve(c);
    else {
      const e = new ErrorCtor(c.message);
      if (typeof c.code === 'string') e.code = c.code;
      p.reject(e);
    }
  } else if (op === 2) {
    install(a);
  }
};
`
