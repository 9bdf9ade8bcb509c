/**
 * Every command of Megatest's api.scm (the tt-era dispatcher: api:read-only-queries,
 * api:write-queries and the cases of api:dispatch-request), and why the ones this
 * server does not serve are left out. docs/megatest.md lists the same, and a test
 * keeps the three (this list, the served commands and the document) in step.
 */

/** api.scm's 121 command names: its two lists, then the dispatcher's other cases, in source order. */
export const API_SCM_COMMANDS: readonly string[] = [
  // api:read-only-queries
  'get-key-val-pairs', 'get-var', 'get-keys', 'get-key-vals', 'test-toplevel-num-items', 'get-test-info-by-id',
  'get-test-state-status-by-id', 'get-steps-info-by-id', 'get-data-info-by-id', 'test-get-rundir-from-test-id',
  'get-count-tests-running-for-testname', 'get-count-tests-running', 'get-count-tests-running-in-jobgroup',
  'get-previous-test-run-record', 'get-matching-previous-test-run-records', 'test-get-logfile-info',
  'test-get-records-for-index-file', 'get-testinfo-state-status', 'test-get-top-process-pid',
  'test-get-paths-matching-keynames-target-new', 'get-prereqs-not-met', 'get-count-tests-running-for-run-id',
  'get-run-info', 'get-run-status', 'get-run-state', 'get-run-stats', 'get-run-times', 'get-target', 'get-targets',
  'get-tests-tags', 'get-test-times', 'get-tests-for-run', 'get-tests-for-run-state-status', 'get-test-id',
  'get-tests-for-runs-mindata', 'get-tests-for-run-mindata', 'get-run-name-from-id', 'get-runs', 'simple-get-runs',
  'get-num-runs', 'get-runs-cnt-by-patt', 'get-all-run-ids', 'get-prev-run-ids', 'get-run-ids-matching-target',
  'get-runs-by-patt', 'get-steps-data', 'get-steps-for-test', 'read-test-data', 'read-test-data-varpatt', 'login',
  'tasks-get-last', 'testmeta-get-record', 'have-incompletes?', 'get-changed-record-ids', 'get-all-runids',
  'get-changed-record-test-ids', 'get-changed-record-run-ids', 'get-run-record-ids', 'get-not-completed-cnt',
  // api:write-queries
  'get-keys-write', 'test-set-state-status-by-id', 'delete-test-records', 'delete-old-deleted-test-records',
  'test-set-state-status', 'test-set-top-process-pid', 'set-state-status-and-roll-up-items', 'update-pass-fail-counts',
  'top-test-set-per-pf-counts', 'register-run', 'set-tests-state-status', 'delete-run', 'lock/unlock-run',
  'update-run-event_time', 'mark-incomplete', 'set-state-status-and-roll-up-run', 'teststep-set-status!',
  'delete-steps-for-test', 'test-data-rollup', 'csv->test-data', 'sync-cachedb->db', 'drop-all-triggers',
  'create-all-triggers', 'update-tesdata-on-repilcate-db', 'testmeta-add-record', 'testmeta-update-field', 'tasks-add',
  'tasks-set-state-given-param-key',
  // the other cases of api:dispatch-request
  'start-server', 'kill-server', 'test-set-archive-block-id', 'insert-test', 'update-run-stats', 'set-var', 'inc-var',
  'dec-var', 'del-var', 'add-var', 'insert-run', 'delete-steps-for-test!', 'get-toplevels-and-incompletes',
  'no-sync-set', 'no-sync-get/default', 'no-sync-del!', 'no-sync-get-lock', 'register-process', 'set-process-done',
  'set-process-status', 'get-process-options', 'archive-register-disk', 'archive-register-block-name',
  'test-get-archive-block-info', 'get-raw-run-stats', 'get-run-state-status', 'set-run-status', 'set-run-state-status',
  'get-main-run-stats', 'get-latest-host-load', 'general-call', 'sdb-qry', 'ping', 'find-task-queue-records'
]

/** api:read-only-queries: Megatest's reads. Every other command is a write. */
export const API_SCM_READS: ReadonlySet<string> = new Set(API_SCM_COMMANDS.slice(0, API_SCM_COMMANDS.indexOf('get-keys-write')))

const ARCHIVE = 'archiving (bup or tar of run directories to archive disks) is not part of this server'
const TRIGGERS = 'the last_update triggers are part of the schema here: get-changed-record-ids and dashboards polling with last-update rely on them'
const SYNC = 'an area is one database file written in place: there is no /tmp cache or replica to sync'
const NEWER = 'it comes from a Megatest newer than v1.65, whose db.scm this server follows, and its semantics are not in that source'

/**
 * The api.scm commands this server answers with MEGATEST_NOT_SERVED, and why. A
 * command is in exactly one of this map and the served commands (COMMANDS).
 */
export const NOT_SERVED: ReadonlyMap<string, string> = new Map([
  ['archive-register-disk', ARCHIVE],
  ['archive-register-block-name', ARCHIVE],
  ['test-set-archive-block-id', ARCHIVE],
  ['test-get-archive-block-info', ARCHIVE],
  ['create-all-triggers', TRIGGERS],
  ['drop-all-triggers', TRIGGERS],
  ['sync-cachedb->db', SYNC],
  ['update-tesdata-on-repilcate-db', SYNC],
  ['sdb-qry', 'the string database (sdb) is not used: paths and names are stored as text'],
  ['get-keys-write', 'it is a dummy write that forces a server to start; the node already is the server, so call get-keys'],
  ['start-server', 'servers are started by `evalmesh serve` or findOrStartAreaServer, never through the API (Megatest runs server:kind-run with the caller\'s params)'],
  ['update-pass-fail-counts', 'Megatest lists it as a write but does not dispatch it: it is the general-call statement update-pass-fail-counts'],
  ['delete-steps-for-test', 'Megatest lists it as a write but does not dispatch it (its dispatcher has delete-steps-for-test!): use general-call delete-test-step-records'],
  ['get-previous-test-run-record', 'it is commented out of Megatest\'s dispatcher: use get-matching-previous-test-run-records'],
  ['get-tests-for-runs-mindata', 'it is commented out of Megatest\'s dispatcher (rmt.scm calls get-tests-for-run-mindata once per run): call that'],
  ['top-test-set-per-pf-counts', 'Megatest marks it NOT USED and broken (it ignores run-id); set-state-status-and-roll-up-items computes the toplevel from its items'],
  ['get-test-state-status-by-id', NEWER],
  ['read-test-data-varpatt', NEWER],
  ['get-runs-cnt-by-patt', NEWER],
  ['get-all-runids', NEWER + '; get-all-run-ids is served'],
  ['get-changed-record-test-ids', NEWER + '; get-changed-record-ids is served'],
  ['get-changed-record-run-ids', NEWER + '; get-changed-record-ids is served'],
  ['get-run-record-ids', NEWER + '; get-changed-record-ids is served'],
  ['insert-run', NEWER + '; register-run is served'],
  ['delete-steps-for-test!', NEWER + '; general-call delete-test-step-records is served'],
  ['get-toplevels-and-incompletes', NEWER + '; have-incompletes? and mark-incomplete are served'],
  ['find-task-queue-records', NEWER + '; tasks-get-last is served']
])
