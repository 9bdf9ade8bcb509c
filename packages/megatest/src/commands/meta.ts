import { EvalMeshError } from '@evalmesh/protocol'
import type { Args } from '../args.js'
import type { AreaContext } from '../area.js'
import { MEGATEST_VERSION, TASK_FIELDS, TEST_META_FIELDS } from '../constants.js'
import { TRIGGERED_TABLES } from '../schema.js'
import { numberish } from './common.js'
import { cmd, type CommandDef } from './define.js'

const TEST_META_SETTABLE = new Set<string>(TEST_META_FIELDS.filter(f => f !== 'id' && f !== 'testname'))

function bumpVar (ctx: AreaContext, a: Args, delta: number): number {
  const name = a.str(0)
  const cur = ctx.stmt('SELECT val FROM metadat WHERE var=?').pluck().get(name) as string | null | undefined
  const curNum = cur === undefined || cur === null ? 0 : numberish(cur)
  if (typeof curNum !== 'number') {
    throw new EvalMeshError('MEGATEST_ERROR', `var ${name} of area ${ctx.name} holds "${String(cur)}", not a number`, { var: name })
  }
  const next = curNum + delta
  ctx.stmt('INSERT INTO metadat (var, val) VALUES (?, ?) ON CONFLICT (var) DO UPDATE SET val=excluded.val').run(name, String(next))
  return next
}

function nosyncGet (ctx: AreaContext, name: string): string | undefined {
  if (ctx.nosync === null) return undefined
  return ctx.nsStmt('SELECT val FROM no_sync_metadat WHERE var=?').pluck().get(name) as string | undefined
}

export const META_COMMANDS: CommandDef[] = [
  cmd('set-var', 'write', ['var', 'val'], (ctx, a) => {
    const val = a.scalar(1)
    if (val === null) a.fail(1, 'must be a string or a number (use del-var to remove a var)')
    ctx.stmt('INSERT OR REPLACE INTO metadat (var, val) VALUES (?, ?)').run(a.str(0), val)
    return val
  }),
  cmd('get-var', 'read', ['var'], (ctx, a) => {
    const v = ctx.stmt('SELECT val FROM metadat WHERE var=?').pluck().get(a.str(0))
    return v === undefined ? null : numberish(v)
  }),
  cmd('del-var', 'write', ['var'], (ctx, a) => ctx.stmt('DELETE FROM metadat WHERE var=?').run(a.str(0)).changes > 0),
  cmd('inc-var', 'write', ['var', 'n'], (ctx, a) => bumpVar(ctx, a, a.isNull(1) ? 1 : a.num(1))),
  cmd('dec-var', 'write', ['var', 'n'], (ctx, a) => bumpVar(ctx, a, -(a.isNull(1) ? 1 : a.num(1)))),
  cmd('add-var', 'write', ['var', 'n'], (ctx, a) => bumpVar(ctx, a, a.num(1))),

  cmd('tasks-add', 'write', ['action', 'owner', 'target', 'runname', 'testpatt', 'params'], (ctx, a) =>
    Number(ctx.stmt(`INSERT INTO tasks_queue (action, owner, state, target, name, testpatt, params, creation_time)
      VALUES (?, ?, 'new', ?, ?, ?, ?, ?)`).run(a.str(0), a.strOr(1, ''), a.strOr(2, ''), a.strOr(3, ''), a.strOr(4, ''), a.strOr(5, ''), ctx.now()).lastInsertRowid)),
  cmd('tasks-set-state-given-param-key', 'write', ['param-key', 'state'], (ctx, a) =>
    ctx.stmt('UPDATE tasks_queue SET state=? WHERE params LIKE ?').run(a.str(1), a.str(0)).changes),
  cmd('tasks-get-last', 'read', ['target', 'runname'], (ctx, a) =>
    ctx.stmt(`SELECT ${TASK_FIELDS.join(', ')} FROM tasks_queue WHERE target LIKE ? AND name LIKE ?
      ORDER BY creation_time DESC, id DESC LIMIT 1`).get(a.strOr(0, '%'), a.strOr(1, '%')) ?? null),

  cmd('testmeta-add-record', 'write', ['testname'], (ctx, a) =>
    ctx.stmt('INSERT OR IGNORE INTO test_meta (testname) VALUES (?)').run(a.str(0)).changes > 0),
  cmd('testmeta-get-record', 'read', ['testname'], (ctx, a) =>
    ctx.stmt(`SELECT ${TEST_META_FIELDS.join(', ')} FROM test_meta WHERE testname=?`).get(a.str(0)) ?? null),
  cmd('testmeta-update-field', 'write', ['testname', 'field', 'value'], (ctx, a) => {
    const field = a.str(1)
    // The field name is the one identifier a caller chooses; only known columns pass.
    if (!TEST_META_SETTABLE.has(field)) a.fail(1, `must be one of ${[...TEST_META_SETTABLE].join(', ')}, got "${field}"`)
    return ctx.stmt(`UPDATE test_meta SET ${field}=? WHERE testname=?`).run(a.scalar(2), a.str(0)).changes > 0
  }),

  cmd('no-sync-set', 'write', ['var', 'val'], (ctx, a) => {
    const val = a.scalar(1)
    ctx.nsStmt('INSERT OR REPLACE INTO no_sync_metadat (var, val) VALUES (?, ?)').run(a.str(0), val)
    return val
  }, 'nosync'),
  // api.scm classes it as a write (not in api:read-only-queries): a read-only area refuses it.
  cmd('no-sync-get/default', 'write', ['var', 'default'], (ctx, a) => {
    const v = nosyncGet(ctx, a.str(0))
    return v === undefined ? (a.raw(1) ?? null) : v
  }, 'none'),
  cmd('no-sync-del!', 'write', ['var'], (ctx, a) =>
    ctx.nsStmt('DELETE FROM no_sync_metadat WHERE var=?').run(a.str(0)).changes > 0, 'nosync'),
  cmd('no-sync-get-lock', 'write', ['key'], (ctx, a) => {
    const key = a.str(0)
    const now = ctx.now()
    const got = ctx.nsStmt('INSERT OR IGNORE INTO no_sync_metadat (var, val) VALUES (?, ?)').run(key, String(now)).changes > 0
    if (got) return [true, now]
    return [false, numberish(nosyncGet(ctx, key) ?? null)]
  }, 'nosync'),

  cmd('register-process', 'write', ['host', 'pid', 'starttime', 'status', 'purpose', 'dbname', 'mtversion'], (ctx, a) => {
    ctx.nsStmt(`INSERT OR REPLACE INTO processes (host, pid, starttime, status, purpose, dbname, mtversion)
      VALUES (?, ?, ?, ?, ?, ?, ?)`).run(a.str(0), a.int(1), a.intOr(2, ctx.now()), a.strOr(3, 'running'), a.strOr(4, ''), a.strOr(5, ''), a.strOr(6, MEGATEST_VERSION))
    return true
  }, 'nosync'),
  cmd('set-process-done', 'write', ['host', 'pid', 'reason'], (ctx, a) =>
    ctx.nsStmt('UPDATE processes SET status=?, endtime=? WHERE host=? AND pid=?').run(a.strOr(2, 'done'), ctx.now(), a.str(0), a.int(1)).changes > 0, 'nosync'),
  cmd('set-process-status', 'write', ['host', 'pid', 'status'], (ctx, a) =>
    ctx.nsStmt('UPDATE processes SET status=? WHERE host=? AND pid=?').run(a.str(2), a.str(0), a.int(1)).changes > 0, 'nosync'),
  // api.scm classes it as a write (not in api:read-only-queries): a read-only area refuses it.
  cmd('get-process-options', 'write', ['purpose', 'dbname'], (ctx, a) =>
    ctx.nosync === null
      ? []
      : ctx.nsStmt(`SELECT host, pid, starttime, endtime, status, purpose, dbname, mtversion FROM processes
        WHERE purpose=? AND dbname=? AND status='running' ORDER BY starttime, id`).all(a.str(0), a.strOr(1, '')), 'none'),

  cmd('get-changed-record-ids', 'read', ['since'], (ctx, a) => {
    const since = a.int(0)
    return TRIGGERED_TABLES.map(t => [t, ctx.stmt(`SELECT id FROM ${t} WHERE last_update > ? ORDER BY id`).pluck().all(since)])
  }),

  cmd('login', 'read', ['toppath', 'version', 'client-signature'], (ctx, a) => {
    const toppath = a.strOrNull(0)
    const version = a.strOrNull(1)
    if (toppath !== null && toppath !== ctx.dir && toppath !== ctx.name) {
      // Never the area's directory: a client learns the area by its name, not where it lives.
      const given = toppath.length > 200 ? toppath.slice(0, 199) + '…' : toppath
      return [false, `login failed: toppath ${given} is neither the path nor the name of area ${ctx.name}`]
    }
    if (version !== null && version.split('.').slice(0, 2).join('.') !== MEGATEST_VERSION) {
      return [false, `login failed: client version ${version} does not match server version ${MEGATEST_VERSION}`]
    }
    return [true, 'successful login']
  }),
  cmd('ping', 'read', [], (ctx) => ctx.signature),
  // An operator action (OPERATOR_COMMANDS): the service stops serving this area once the
  // reply is out; the node and its other areas carry on.
  cmd('kill-server', 'write', [], (ctx) => {
    ctx.requestKill()
    return true
  }, 'none')
]
