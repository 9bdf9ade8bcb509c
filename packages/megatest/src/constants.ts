/** Megatest's vocabulary of states and statuses (common.scm, v1.65). */

export const MEGATEST_VERSION = '1.65'

/** Higher wins a roll-up. Unlisted states rank 0. */
export const STATE_RANK: Readonly<Record<string, number>> = {
  RUNNING: 8,
  REMOTEHOSTSTART: 7,
  LAUNCHED: 6,
  COMPLETED: 5,
  NOT_STARTED: 4,
  KILLED: 3,
  KILLREQ: 2,
  STUCK: 1,
  ARCHIVED: 0
}

/** Higher is worse. Unlisted statuses rank 0. */
export const STATUS_RANK: Readonly<Record<string, number>> = {
  ABORT: 12,
  PREQ_DISCARDED: 11,
  PREQ_FAIL: 10,
  FAIL: 9,
  DEAD: 8,
  'STUCK/DEAD': 7,
  CHECK: 6,
  WAIVED: 5,
  WARN: 4,
  SKIP: 3,
  PASS: 2,
  'n/a': 1
}

export const RUNNING_STATES: ReadonlySet<string> = new Set(['RUNNING', 'REMOTEHOSTSTART', 'LAUNCHED', 'STARTED'])
export const DONT_ROLL_UP_STATES: ReadonlySet<string> = new Set(['DELETED', 'REMOVING', 'CLEANING', 'ARCHIVE_REMOVING'])
export const NOT_STARTED_OK_STATUSES: ReadonlySet<string> = new Set(['n/a', 'na', 'PASS', 'FAIL', 'WARN', 'CHECK', 'WAIVED', 'DEAD', 'SKIP'])
export const WELL_ENDED_STATUSES: ReadonlySet<string> = new Set(['PASS', 'WARN', 'CHECK', 'WAIVED', 'SKIP'])

/** The states counted by the get-count-tests-running family. */
export const COUNTED_RUNNING_STATES = ['RUNNING', 'LAUNCHED', 'REMOTEHOSTSTART'] as const

/** Megatest exits when a key is named like one of these run columns; so do we (plus id and last_update). */
export const RESERVED_RUN_COLUMNS: ReadonlySet<string> = new Set([
  'id', 'runname', 'state', 'status', 'owner', 'event_time', 'comment',
  'fail_count', 'pass_count', 'contour', 'last_update'
])

/** db:test-record-fields: the 18 fields of a test record, in Megatest's order. */
export const TEST_RECORD_FIELDS = [
  'id', 'run_id', 'testname', 'state', 'status', 'event_time', 'host', 'cpuload', 'diskfree',
  'uname', 'rundir', 'item_path', 'run_duration', 'final_logf', 'comment', 'shortdir',
  'attemptnum', 'archived'
] as const

export const TEST_SHORTLIST_FIELDS = ['id', 'run_id', 'testname', 'item_path', 'state', 'status'] as const

/** Every column of `tests`: the whitelist for qryvals, sort-by and insert-test. */
export const TEST_COLUMNS: ReadonlySet<string> = new Set([
  ...TEST_RECORD_FIELDS, 'logdat', 'fail_count', 'pass_count', 'last_update'
])

export const TEST_META_FIELDS = [
  'id', 'testname', 'author', 'owner', 'description', 'reviewed', 'iterated',
  'avg_runtime', 'avg_disk', 'tags', 'jobgroup'
] as const

export const STEP_FIELDS = ['id', 'test_id', 'stepname', 'state', 'status', 'event_time', 'logfile', 'comment'] as const

export const TEST_DATA_FIELDS = [
  'id', 'test_id', 'category', 'variable', 'value', 'expected', 'tol', 'units', 'comment', 'status', 'type'
] as const

export const TASK_FIELDS = [
  'id', 'action', 'owner', 'state', 'target', 'name', 'testpatt', 'keylock', 'params',
  'creation_time', 'execution_time'
] as const

export function stateRank (state: string): number {
  return STATE_RANK[state] ?? 0
}

export function statusRank (status: string): number {
  return STATUS_RANK[status] ?? 0
}
