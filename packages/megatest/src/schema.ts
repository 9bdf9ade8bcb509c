import type { KeyField } from './config.js'

const NOW = "(strftime('%s','now'))"

/** Quote an identifier that has already passed validateKeys. */
export function ident (name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

/** Tables whose last_update a trigger keeps current (sync and get-changed-record-ids rely on it). */
export const TRIGGERED_TABLES = ['runs', 'run_stats', 'tests', 'test_steps', 'test_data'] as const

/**
 * The whole Megatest schema in one file: db:initialize-main-db plus the
 * per-run tables, as v1.65 did ("every file gets every table"). The archive
 * defaults use '%s' where upstream has the typo '%'.
 */
export function mainSchema (keys: readonly KeyField[]): string {
  const keyCols = keys.map(k => `${ident(k.name)} ${k.type}`).join(', ')
  const keyList = keys.map(k => ident(k.name)).join(', ')
  const runsKeyCols = keyCols === '' ? '' : keyCols + ', '
  const runsKeyList = keyList === '' ? '' : ', ' + keyList
  const stmts = [
    `CREATE TABLE IF NOT EXISTS keys (id INTEGER PRIMARY KEY, fieldname TEXT, fieldtype TEXT,
      CONSTRAINT keyconstraint UNIQUE (fieldname))`,
    `CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, ${runsKeyCols}runname TEXT DEFAULT 'norun',
      contour TEXT DEFAULT '', state TEXT DEFAULT '', status TEXT DEFAULT '', owner TEXT DEFAULT '',
      event_time TIMESTAMP DEFAULT ${NOW}, comment TEXT DEFAULT '', fail_count INTEGER DEFAULT 0,
      pass_count INTEGER DEFAULT 0, last_update INTEGER DEFAULT ${NOW},
      CONSTRAINT runsconstraint UNIQUE (runname${runsKeyList}))`,
    `CREATE INDEX IF NOT EXISTS runs_index ON runs (runname${runsKeyList})`,
    `CREATE TABLE IF NOT EXISTS run_stats (id INTEGER PRIMARY KEY, run_id INTEGER, state TEXT, status TEXT,
      count INTEGER, last_update INTEGER DEFAULT ${NOW})`,
    `CREATE INDEX IF NOT EXISTS run_stats_index ON run_stats (run_id, state, status)`,
    `CREATE TABLE IF NOT EXISTS test_meta (id INTEGER PRIMARY KEY, testname TEXT DEFAULT '', author TEXT DEFAULT '',
      owner TEXT DEFAULT '', description TEXT DEFAULT '', reviewed TIMESTAMP, iterated TEXT DEFAULT '',
      avg_runtime REAL, avg_disk REAL, tags TEXT DEFAULT '', jobgroup TEXT DEFAULT 'default',
      CONSTRAINT test_meta_constraint UNIQUE (testname))`,
    `CREATE TABLE IF NOT EXISTS tasks_queue (id INTEGER PRIMARY KEY, action TEXT DEFAULT '', owner TEXT,
      state TEXT DEFAULT 'new', target TEXT DEFAULT '', name TEXT DEFAULT '', testpatt TEXT DEFAULT '',
      keylock TEXT, params TEXT, creation_time TIMESTAMP DEFAULT ${NOW}, execution_time TIMESTAMP)`,
    `CREATE TABLE IF NOT EXISTS archive_disks (id INTEGER PRIMARY KEY, archive_area_name TEXT, disk_path TEXT,
      last_df INTEGER DEFAULT -1, last_df_time TIMESTAMP DEFAULT ${NOW}, creation_time TIMESTAMP DEFAULT ${NOW})`,
    `CREATE TABLE IF NOT EXISTS archive_blocks (id INTEGER PRIMARY KEY, archive_disk_id INTEGER, disk_path TEXT,
      last_du INTEGER DEFAULT -1, last_du_time TIMESTAMP DEFAULT ${NOW}, creation_time TIMESTAMP DEFAULT ${NOW})`,
    `CREATE TABLE IF NOT EXISTS archive_allocations (id INTEGER PRIMARY KEY, archive_block_id INTEGER,
      testname TEXT, item_path TEXT, creation_time TIMESTAMP DEFAULT ${NOW})`,
    'CREATE TABLE IF NOT EXISTS extradat (id INTEGER PRIMARY KEY, run_id INTEGER, key TEXT, val TEXT)',
    `CREATE TABLE IF NOT EXISTS metadat (id INTEGER PRIMARY KEY, var TEXT, val TEXT,
      CONSTRAINT metadat_constraint UNIQUE (var))`,
    'CREATE TABLE IF NOT EXISTS access_log (id INTEGER PRIMARY KEY, user TEXT, accessed TIMESTAMP, args TEXT)',
    // Per-run tables (v1.65 db:initialize-run-id-db).
    `CREATE TABLE IF NOT EXISTS tests (id INTEGER PRIMARY KEY, run_id INTEGER DEFAULT -1, testname TEXT DEFAULT 'noname',
      host TEXT DEFAULT 'n/a', cpuload REAL DEFAULT -1, diskfree INTEGER DEFAULT -1, uname TEXT DEFAULT 'n/a',
      rundir TEXT DEFAULT '/tmp/badname', shortdir TEXT DEFAULT '/tmp/badname', item_path TEXT DEFAULT '',
      state TEXT DEFAULT 'NOT_STARTED', status TEXT DEFAULT 'FAIL', attemptnum INTEGER DEFAULT 0,
      final_logf TEXT DEFAULT 'logs/final.log', logdat TEXT DEFAULT '', run_duration INTEGER DEFAULT 0,
      comment TEXT DEFAULT '', event_time TIMESTAMP DEFAULT ${NOW}, fail_count INTEGER DEFAULT 0,
      pass_count INTEGER DEFAULT 0, archived INTEGER DEFAULT 0, last_update INTEGER DEFAULT ${NOW},
      CONSTRAINT testsconstraint UNIQUE (run_id, testname, item_path))`,
    'CREATE INDEX IF NOT EXISTS tests_index ON tests (run_id, testname, item_path, uname)',
    'CREATE INDEX IF NOT EXISTS tests_state_index ON tests (state, run_id)',
    `CREATE TABLE IF NOT EXISTS test_steps (id INTEGER PRIMARY KEY, test_id INTEGER, stepname TEXT,
      state TEXT DEFAULT 'NOT_STARTED', status TEXT DEFAULT 'n/a', event_time TIMESTAMP, comment TEXT DEFAULT '',
      logfile TEXT DEFAULT '', last_update INTEGER DEFAULT ${NOW},
      CONSTRAINT test_steps_constraint UNIQUE (test_id, stepname, state))`,
    `CREATE TABLE IF NOT EXISTS test_data (id INTEGER PRIMARY KEY, test_id INTEGER, category TEXT DEFAULT '',
      variable TEXT, value REAL, expected REAL, tol REAL, units TEXT, comment TEXT DEFAULT '',
      status TEXT DEFAULT 'n/a', type TEXT DEFAULT '', last_update INTEGER DEFAULT ${NOW},
      CONSTRAINT test_data_constraint UNIQUE (test_id, category, variable))`,
    'CREATE INDEX IF NOT EXISTS test_data_index ON test_data (test_id)',
    `CREATE TABLE IF NOT EXISTS test_rundat (id INTEGER PRIMARY KEY, test_id INTEGER, update_time TIMESTAMP,
      cpuload INTEGER DEFAULT -1, diskfree INTEGER DEFAULT -1, diskusage INTGER DEFAULT -1,
      run_duration INTEGER DEFAULT 0)`,
    `CREATE TABLE IF NOT EXISTS archives (id INTEGER PRIMARY KEY, test_id INTEGER, state TEXT DEFAULT 'new',
      status TEXT DEFAULT 'n/a', archive_type TEXT DEFAULT 'bup', du INTEGER, archive_path TEXT)`,
    ...TRIGGERED_TABLES.map(t => `CREATE TRIGGER IF NOT EXISTS update_${t}_trigger AFTER UPDATE ON ${t} FOR EACH ROW
      BEGIN UPDATE ${t} SET last_update=${NOW} WHERE id=old.id; END`)
  ]
  return stmts.join(';\n') + ';'
}

/** The no-sync db: never synced in Megatest, shared by servers for locks and process registration. */
export const NO_SYNC_SCHEMA = `
CREATE TABLE IF NOT EXISTS no_sync_metadat (var TEXT, val TEXT, CONSTRAINT no_sync_metadat_constraint UNIQUE (var));
CREATE TABLE IF NOT EXISTS processes (id INTEGER PRIMARY KEY, host TEXT, pid INTEGER,
  starttime INTEGER DEFAULT ${NOW}, endtime INTEGER, status TEXT DEFAULT 'running', purpose TEXT DEFAULT '',
  dbname TEXT DEFAULT '', mtversion TEXT DEFAULT '', CONSTRAINT processes_constraint UNIQUE (host, pid));
`
