import { cpSync, existsSync, lstatSync, mkdirSync, statfsSync, statSync, symlinkSync, unlinkSync, accessSync, constants } from 'node:fs'
import { dirname, isAbsolute, join } from 'node:path'
import { EvalMeshError } from '@evalmesh/client'
import type { WorkAreaSpec } from './job.js'

/**
 * A test's run directory, laid out as launch.scm's create-work-area lays it out:
 *
 *   <disk>/<target>/<runname>/<testname>[/<itempath>]        the real directory
 *   <linktree>/<target>/<runname>/<testname>  ->  <disk>/<target>/<runname>/<testname>
 *
 * so `<linktree>/<target>/<runname>/<testname>/<itempath>` reaches every item's
 * directory. The test's source directory (tests/<testname>) is copied in, as
 * Megatest's rsync does.
 */

export interface WorkDirs {
  /** `<linktree>/<target>/<runname>/<testname>[/<itempath>]`: recorded as the test's rundir. */
  rundir: string
  /** The real directory on the disk: recorded as shortdir, MT_TEST_RUN_DIR. */
  testPath: string
  /** `<linktree>/<target>/<runname>/<testname>`: the toplevel's rundir. */
  lnkpath: string
}

/** get-best-disk: the usable disk (an absolute, writable directory) with the most free space. */
export function bestDisk (disks: readonly string[]): string {
  let best: string | undefined
  let bestFree = -1
  for (const d of disks) {
    try {
      if (!isAbsolute(d) || !statSync(d).isDirectory()) continue
      accessSync(d, constants.W_OK)
      const s = statfsSync(d)
      const free = s.bavail * s.bsize
      if (free > bestFree) { best = d; bestFree = free }
    } catch { /* not usable: skipped, as Megatest skips it */ }
  }
  if (best === undefined) {
    throw new EvalMeshError('BAD_MESSAGE', `no usable disk in megatest.config's [disks] (${disks.join(', ') || 'none given'}): each must be an existing, writable, absolute directory`)
  }
  return best
}

/** Create (or reuse) a test's run directory and its link; returns the paths Megatest records. */
export function createWorkArea (spec: WorkAreaSpec, disk: string, target: string, runname: string, testname: string, itemPath: string, source?: string): WorkDirs {
  const base = join(target, runname, testname)
  const toptestPath = join(disk, base)
  const testPath = itemPath === '' ? toptestPath : join(toptestPath, itemPath)
  const lnkpath = join(spec.linktree, base)
  const rundir = itemPath === '' ? lnkpath : join(lnkpath, itemPath)
  mkdirSync(testPath, { recursive: true })
  mkdirSync(dirname(lnkpath), { recursive: true })
  let linked = false
  try { linked = lstatSync(lnkpath).isSymbolicLink() } catch { /* absent */ }
  if (linked) unlinkSync(lnkpath)
  if (!existsSync(lnkpath)) symlinkSync(toptestPath, lnkpath)
  if (source !== undefined) cpSync(source, testPath, { recursive: true, force: true })
  return { rundir, testPath, lnkpath }
}
