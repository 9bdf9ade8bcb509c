/**
 * Source run once in every fresh session context, through `evalClosure` with
 * `$0` = the console sink and `$1` = the host-call starter (both isolated-vm
 * Callbacks) and `$2` = the session's batch board (a SharedArrayBuffer, see
 * BOARD below). Everything that talks to the host stays in this closure: the global
 * only ever sees plain functions and plain objects, never a Reference or Callback.
 *
 * It returns one `dispatch(op, ...)` function, which the child keeps as a
 * Reference: op 1 settles a host call, op 2 (re)installs the granted names,
 * op 3 runs a batch of forms, op 4 hands over the value or error a batch kept.
 * Settling goes through a timed `apply`, so promise continuations after a host
 * call still run under the wall-time limit.
 *
 * The batch runner (op 3) evaluates forms that batch-forms.ts admitted, one after
 * the other, by indirect eval. Each form's outcome goes onto the board as soon as
 * it is known, so that the host can tell every form its own outcome even when the
 * batch ends in a timeout, a memory-limit disposal or an abort. A form whose
 * completion value is not a number, string, boolean, undefined or null, or that
 * throws, ends the batch: its value or error is kept here and handed over by
 * op 4 in a trip of its own, with the same copy, promise and error handling as the
 * slow path. The runner itself calls no method a form could have replaced.
 */

/** Shape of the batch board shared with the isolate; offsets in elements. */
/** The operations of the isolate's dispatch function (see the description above), by name. */
export const OP = Object.freeze({ settleHostCall: 1, installGrants: 2, runBatch: 3, takeKept: 4 } as const)

export const BOARD = {
  /** Most forms one batch carries. */
  slots: 64,
  /** UTF-16 code units for string results, per batch. */
  poolUnits: 16384,
  /** Longest string result written to the board; longer ones are handed over by op 4. */
  maxString: 1024,
  // Int32 regions, each `slots` long: state, kind, string offset, string length, form id.
  state: 0, kind: 1, strOff: 2, strLen: 3, formId: 4,
  int32Regions: 5
} as const

/** Slot states: the host cancels a pending slot (abort) with a compare-exchange. */
export const SLOT = { pending: 0, running: 1, done: 2, cancelled: 3 } as const
/** What a done slot holds. */
export const KIND = { undefined: 1, null: 2, true: 3, false: 4, number: 5, string: 6, kept: 7, threw: 8, declined: 9 } as const

export function boardBytes (): number {
  return BOARD.slots * 4 * BOARD.int32Regions + BOARD.slots * 8 + BOARD.poolUnits * 2
}

export const BOOTSTRAP_SOURCE = String.raw`
const sink = $0, hostStart = $1, board = $2;
const g = globalThis;
const atomics = g.Atomics, indirectEval = g.eval, dateNow = Date.now, hasOwn = Object.hasOwn;
const codeAt = Function.prototype.call.bind(String.prototype.charCodeAt);
const strIndexOf = Function.prototype.call.bind(String.prototype.indexOf);
const strSlice = Function.prototype.call.bind(String.prototype.slice);
const SLOTS = ${BOARD.slots}, POOL = ${BOARD.poolUnits}, MAXSTR = ${BOARD.maxString};
const ints = new Int32Array(board, 0, SLOTS * ${BOARD.int32Regions});
const nums = new Float64Array(board, SLOTS * 4 * ${BOARD.int32Regions}, SLOTS);
const pool = new Uint16Array(board, SLOTS * 4 * ${BOARD.int32Regions} + SLOTS * 8, POOL);
const ST = SLOTS * ${BOARD.state}, KD = SLOTS * ${BOARD.kind}, SO = SLOTS * ${BOARD.strOff}, SL = SLOTS * ${BOARD.strLen}, FI = SLOTS * ${BOARD.formId};
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

// ---- batch runner ----
// Forms by id (null prototype: no lookup ever reaches a prototype a form could change).
let forms = Object.create(null);
let kept, keptThrew = false;

// Every name the form touches must be an own data property of the global object
// holding a primitive (globalThis itself excepted), so reading or writing it runs
// no code; and no stack formatter may be installed, since frames would differ.
const ErrorFn = Error, FunctionProto = Function.prototype, ObjectProto = Object.prototype;
function admissible (names, usesGlobalThis, strict) {
  if (getDesc(ErrorFn, 'prepareStackTrace') !== undefined || getDesc(FunctionProto, 'prepareStackTrace') !== undefined ||
      getDesc(ObjectProto, 'prepareStackTrace') !== undefined || getProto(ErrorFn) !== FunctionProto || getProto(FunctionProto) !== ObjectProto) return false;
  if (usesGlobalThis) {
    const d = getDesc(g, 'globalThis');
    if (d === undefined || !hasOwn(d, 'value') || d.value !== g) return false;
  }
  for (let i = 0; i < names.length; i++) {
    const d = getDesc(g, names[i]);
    if (d === undefined || !hasOwn(d, 'value')) return false;
    const v = d.value;
    if ((typeof v === 'object' && v !== null) || typeof v === 'function') return false;
    // A synchronous trip (strict) takes only names whose values cannot be costly to use.
    if (strict && (typeof v === 'string' || typeof v === 'bigint')) return false;
  }
  return true;
}

function runBatch (n, slackMs, fresh, strict) {
  if (fresh !== undefined) {
    if (fresh.clear) forms = Object.create(null);
    const list = fresh.forms;
    for (let i = 0; i < list.length; i++) forms[list[i][0]] = list[i];
  }
  kept = undefined; keptThrew = false;
  const t0 = dateNow();
  let used = 0;
  for (let i = 0; i < n; i++) {
    // Later forms wait for the next trip, so each form gets (nearly) its whole time limit.
    if (i > 0 && dateNow() - t0 > slackMs) return i;
    if (atomics.compareExchange(ints, ST + i, 0, 1) !== 0) continue;
    const f = forms[ints[FI + i]];
    if (f === undefined || !admissible(f[2], f[3], strict)) { ints[KD + i] = ${KIND.declined}; atomics.store(ints, ST + i, 0); return i; }
    let v;
    try {
      v = indirectEval(f[1]);
    } catch (e) {
      kept = e; keptThrew = true;
      ints[KD + i] = ${KIND.threw};
      atomics.store(ints, ST + i, 2);
      return i + 1;
    }
    const t = typeof v;
    let kind;
    if (t === 'number') { nums[i] = v; kind = ${KIND.number}; }
    else if (v === undefined) kind = ${KIND.undefined};
    else if (v === null) kind = ${KIND.null};
    else if (v === true) kind = ${KIND.true};
    else if (v === false) kind = ${KIND.false};
    else if (t === 'string' && v.length <= MAXSTR && used + v.length <= POOL) {
      ints[SO + i] = used; ints[SL + i] = v.length;
      for (let j = 0; j < v.length; j++) pool[used + j] = codeAt(v, j);
      used += v.length;
      kind = ${KIND.string};
    } else {
      kept = v;
      ints[KD + i] = ${KIND.kept};
      atomics.store(ints, ST + i, 2);
      return i + 1;
    }
    ints[KD + i] = kind;
    atomics.store(ints, ST + i, 2);
  }
  return n;
}

// A batched form's error shows the frames of the eval and of this runner; the slow
// path would show one frame, the form's own: "at form.js:L:C".
const EVAL_FRAME = '\n    at eval (form.js:';
function takeKept () {
  const v = kept, threw = keptThrew;
  kept = undefined; keptThrew = false;
  if (!threw) return v;
  const stack = v.stack;
  if (typeof stack === 'string') {
    const at = strIndexOf(stack, EVAL_FRAME);
    if (at >= 0) {
      const end = strIndexOf(stack, ')', at);
      v.stack = strSlice(stack, 0, at) + '\n    at form.js:' + strSlice(stack, at + EVAL_FRAME.length, end);
    }
  }
  throw v;
}

return function dispatch (op, a, b, c, d) {
  if (op === 3) return runBatch(a, b, c, d === true);
  if (op === 4) return takeKept();
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
