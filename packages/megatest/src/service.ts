import { EvalMeshError, type ErrorCode, scrubPaths } from '@evalmesh/protocol'
import { openArea, type AreaInit, type MegatestArea } from './area.js'
import { COMMANDS } from './commands/index.js'

/**
 * Commands only an operator of the node may send (docs/SECURITY.md). The service does
 * not know who calls: the node checks `CommandInfo.operator` (or this set) before
 * calling and refuses the others with FORBIDDEN.
 */
export const OPERATOR_COMMANDS: ReadonlySet<string> = new Set(['kill-server'])

/** The tt transport's reply four-tuple `(status errmsg result meta)`, JSON-shaped. */
export interface MegatestResponse {
  status: 'ok' | 'busy' | 'error'
  errmsg: string
  result: unknown
  /** ping: `{ sstate }`; others: `{ wait }` (seconds); errors add `{ code, wire, data }`. */
  meta: Record<string, unknown>
}

export interface MegatestServiceOptions {
  areas: AreaInit[]
  /**
   * Requests in flight (this one included) above which the service answers
   * `busy` instead of running the command. Megatest's limit was 3; default 32.
   */
  loadLimit?: number
  /**
   * Called after kill-server has stopped the service serving an area (its databases are
   * closed, its requests answer UNKNOWN_AREA). For the node's bookkeeping only, e.g. to
   * drop the area's .servinfo registration: kill-server must never stop the node.
   */
  onKillServer?: (area: string) => void
}

export interface CommandInfo {
  name: string
  mode: 'read' | 'write'
  params: string[]
  /** Only an operator of the node may send it (OPERATOR_COMMANDS). */
  operator: boolean
}

export interface AreaInfo {
  name: string
  dir: string
  readOnly: boolean
  signature: string
  keys: string[]
  /** ms since the epoch of the last request to this area (its open time before any). */
  lastAccessAt: number
}

export interface MegatestService {
  /** Run a command and answer with Megatest's response shape; never throws. */
  call: (area: string, command: string, params?: readonly unknown[]) => Promise<MegatestResponse>
  /** Run a command and return its result, or throw EvalMeshError (MEGATEST_BUSY carries data.wait). */
  callOrThrow: (area: string, command: string, params?: readonly unknown[]) => Promise<unknown>
  commands: () => CommandInfo[]
  areas: () => AreaInfo[]
  addArea: (init: AreaInit) => AreaInfo
  /** Stop serving an area and close its databases; false if it was not served. */
  removeArea: (name: string) => boolean
  /** Requests currently in flight. */
  inFlight: () => number
  /** ms since the epoch of the last request to any area (service start before any). */
  lastAccessAt: () => number
  /** Seconds since the last request; the node stops after its idle timeout (Megatest: 600). */
  idleSeconds: (nowMs?: number) => number
  close: () => void
}

const DEFAULT_LOAD_LIMIT = 32

/** Lets requests that arrive together all count as in flight before any runs. */
const nextTurn = async (): Promise<void> => await new Promise(resolve => setImmediate(resolve))

export function createMegatestService (options: MegatestServiceOptions): MegatestService {
  const loadLimit = options.loadLimit ?? DEFAULT_LOAD_LIMIT
  if (!Number.isSafeInteger(loadLimit) || loadLimit < 1) throw new EvalMeshError('BAD_MESSAGE', `loadLimit must be a positive integer, got ${String(options.loadLimit)}`)
  const served = new Map<string, { area: MegatestArea, lastAccessAt: number }>()
  let inFlight = 0
  let lastAccess = Date.now()
  let closed = false

  const info = (e: { area: MegatestArea, lastAccessAt: number }): AreaInfo => ({
    name: e.area.name,
    dir: e.area.dir,
    readOnly: e.area.readOnly,
    signature: e.area.signature,
    keys: e.area.keys.map(k => k.name),
    lastAccessAt: e.lastAccessAt
  })

  function addArea (init: AreaInit): AreaInfo {
    if (served.has(init.name)) throw new EvalMeshError('BAD_MESSAGE', `area ${init.name} is already served`)
    const area = openArea(init)
    // kill-server stops serving this one area, after its reply has gone out.
    area.onKill = (name) => {
      setImmediate(() => {
        if (served.get(name)?.area !== area) return
        served.delete(name)
        area.close()
        options.onKillServer?.(name)
      })
    }
    const entry = { area, lastAccessAt: Date.now() }
    served.set(area.name, entry)
    return info(entry)
  }

  try {
    for (const a of options.areas) addArea(a)
  } catch (err) {
    for (const e of served.values()) e.area.close()
    throw err
  }

  /** The one path both call forms share: a result, or an EvalMeshError. */
  async function run (areaName: string, command: string, params: readonly unknown[]): Promise<{ result: unknown, meta: Record<string, unknown> }> {
    inFlight++
    try {
      const now = Date.now()
      lastAccess = now
      if (closed) throw new EvalMeshError('SHUTTING_DOWN', 'Megatest service is closed')
      const entry = served.get(areaName)
      if (entry === undefined) {
        throw new EvalMeshError('UNKNOWN_AREA', `this node does not serve Megatest area "${String(areaName)}" (serves: ${[...served.keys()].join(', ') || 'none'})`, { area: areaName })
      }
      entry.lastAccessAt = now
      const wait = Math.max(0, inFlight - loadLimit)
      // ping is answered even when busy, as in api:tcp-dispatch-request-make-handler.
      if (command === 'ping') return { result: entry.area.exec('ping', params), meta: { sstate: 'running' } }
      if (wait > 0) {
        throw new EvalMeshError('MEGATEST_BUSY', `Megatest server for area ${areaName} is overloaded: ${inFlight} requests in flight (limit ${loadLimit}); call back in ${wait} s`, { wait, inFlight, area: areaName })
      }
      await nextTurn()
      return { result: entry.area.exec(command, params), meta: { wait } }
    } finally {
      inFlight--
    }
  }

  return {
    async call (area, command, params = []) {
      try {
        const { result, meta } = await run(area, command, params)
        return { status: 'ok', errmsg: '', result: result ?? null, meta }
      } catch (err) {
        const e = err instanceof EvalMeshError ? err : new EvalMeshError('MEGATEST_ERROR', scrubPaths(err instanceof Error ? err.message : String(err)))
        if (e.code === 'MEGATEST_BUSY') {
          return { status: 'busy', errmsg: e.message, result: e.data.wait, meta: { wait: e.data.wait, code: e.code, wire: e.wire } }
        }
        return { status: 'error', errmsg: e.message, result: null, meta: { code: e.code, wire: e.wire, data: e.data } }
      }
    },

    async callOrThrow (area, command, params = []) {
      try {
        return (await run(area, command, params)).result ?? null
      } catch (err) {
        if (err instanceof EvalMeshError) throw err
        throw new EvalMeshError('MEGATEST_ERROR' satisfies ErrorCode, scrubPaths(err instanceof Error ? err.message : String(err)), {}, { cause: err })
      }
    },

    commands: () => [...COMMANDS.values()].map(c => ({ name: c.name, mode: c.mode, params: [...c.params], operator: OPERATOR_COMMANDS.has(c.name) })),
    areas: () => [...served.values()].map(info),
    addArea,
    removeArea (name) {
      const e = served.get(name)
      if (e === undefined) return false
      served.delete(name)
      e.area.close()
      return true
    },
    inFlight: () => inFlight,
    lastAccessAt: () => lastAccess,
    idleSeconds: (nowMs = Date.now()) => Math.max(0, (nowMs - lastAccess) / 1000),
    close () {
      if (closed) return
      closed = true
      for (const e of served.values()) e.area.close()
      served.clear()
    }
  }
}
