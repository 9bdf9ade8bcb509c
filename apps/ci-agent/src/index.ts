/**
 * @packageDocumentation
 * The CI agent: runs a job (a Megatest run of tests, items and steps) on the mesh,
 * recording it through the Megatest API of the node that serves the area, and
 * finds or starts that node the way Megatest's tt transport does.
 *
 * ```ts
 * const { host } = await findOrStartAreaServer('/srv/ci', { stateDir })
 * const summary = await runJob(readJobFile('job.json'), { client, broadcast, areaHost: host })
 * ```
 *
 * docs/ci-agent.md describes the job file and the outcomes.
 */
export { findOrStartAreaServer, DEFAULT_IDLE_TIMEOUT_SECONDS, type AreaServer, type AreaServerOptions } from './area-server.js'
export { parseJob, readJobFile, JobError, type JobSpec, type TestSpec, type StepSpec, type WorkAreaSpec } from './job.js'
export { readAreaJob, itemsOf, hmsToSeconds, type AreaJob, type AreaSelection } from './area-job.js'
export { createWorkArea, bestDisk, type WorkDirs } from './work-area.js'
export { ezstep, type EzstepRequest, type EzstepResult } from './ezstep.js'
export {
  runJob, interpretStepValue, dataToCsv, rerunDecision, PASSING_STATUSES,
  type RunJobOptions, type RerunPolicy, type RunSummary, type UnitSummary, type StepSummary, type CiEvent, type UnitRef
} from './runner.js'
export { Claimer, type Claimed } from './claim.js'
export { readRuns, type RunReport, type TestReport, type StepRecord, type DataRecord } from './status.js'
