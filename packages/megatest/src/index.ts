/**
 * @packageDocumentation
 * The Megatest database API on SQLite, with the tt transport's semantics.
 *
 * An area is a directory with a `megatest.config` ([fields] = run keys), a
 * `megatest.db` holding every Megatest table, and a `no-sync.db`. The service
 * runs Megatest commands by their Megatest names with positional params:
 *
 * ```ts
 * const svc = createMegatestService({ areas: [{ name: 'ci', dir: '/srv/ci', keys: ['RELEASE', 'PLATFORM'] }] })
 * const runId = await svc.callOrThrow('ci', 'register-run', [[['RELEASE', 'v1'], ['PLATFORM', 'x86']], 'nightly', 'new', 'n/a', 'me', ''])
 * ```
 *
 * docs/megatest.md is the command reference.
 */
export { openArea, areaSignature, MegatestArea, MAIN_DB_FILE, NO_SYNC_DB_FILE } from './area.js'
export type { AreaInit } from './area.js'
export type { KeyField } from './config.js'
export { CONFIG_FILE, parseFields } from './config.js'
export { readConfig, parseConfig, configLookup, configSection, expandEnvVars } from './configf.js'
export type { ConfigData, ReadConfigOptions } from './configf.js'
export { testPattMatch, globLikeMatch } from './patterns.js'
export { GENERAL_CALL_STATEMENTS } from './commands/index.js'
export { API_SCM_COMMANDS, API_SCM_READS, NOT_SERVED } from './coverage.js'
export type { CommandMode } from './commands/index.js'
export { rollUpGroups } from './rollup.js'
export type { ItemRollUpResult, StateStatus } from './rollup.js'
export { createMegatestService, OPERATOR_COMMANDS } from './service.js'
export { scrubPaths } from '@evalmesh/protocol'
export { AREA_DIR_MODE, AREA_FILE_MODE } from './files.js'
export type { MegatestResponse, MegatestService, MegatestServiceOptions, CommandInfo, AreaInfo } from './service.js'
export {
  SERVINFO_DIR, SERVINFO_DBFNAME, DEFAULT_STALE_MS, HEARTBEAT_MS, MIN_RESTART_MS,
  servinfoDir, servinfoFileName, formatServinfoLine, parseServinfoLine,
  registerServer, touchServer, unregisterServer, listServers, cleanStaleServers, isPrimaryServer,
  shouldStartServer, explainStartDecision, startHeartbeat
} from './servinfo.js'
export type { ServerRegistration, RegisterOptions, StalenessOptions, StartDecisionOptions, StartDecision, PrimaryWatch } from './servinfo.js'
export { MEGATEST_VERSION, STATE_RANK, STATUS_RANK, TEST_RECORD_FIELDS } from './constants.js'
