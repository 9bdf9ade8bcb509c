import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import Database from 'better-sqlite3'
import { createMegatestService, type AreaInit, type MegatestService } from '../src/index.js'

export function tempDir (t: TestContext, prefix = 'megatest-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export interface Fixture {
  dir: string
  svc: MegatestService
  /** callOrThrow on area 'ci'. */
  c: (command: string, ...params: unknown[]) => Promise<any>
  /** Open megatest.db directly (read-only) to check what is stored. */
  peek: () => Database.Database
}

export function fixture (t: TestContext, extra: Partial<AreaInit> = {}, loadLimit?: number): Fixture {
  const dir = tempDir(t)
  const svc = createMegatestService({
    areas: [{ name: 'ci', dir, keys: ['RELEASE', 'PLATFORM'], ...extra }],
    ...(loadLimit !== undefined ? { loadLimit } : {})
  })
  t.after(() => svc.close())
  const open: Database.Database[] = []
  t.after(() => { for (const d of open) d.close() })
  return {
    dir,
    svc,
    c: async (command, ...params) => await svc.callOrThrow('ci', command, params),
    peek: () => {
      const d = new Database(join(dir, 'megatest.db'), { readonly: true })
      open.push(d)
      return d
    }
  }
}

export const KV = (release: string, platform: string): Array<[string, string]> => [['RELEASE', release], ['PLATFORM', platform]]

/** A run with test `foo` (toplevel + items) and a plain test `bar`; returns ids. */
export async function seedRun (f: Fixture, runname = 'nightly', items = ['a', 'b', 'c']): Promise<{ run: number, top: number, items: Record<string, number>, bar: number }> {
  const run = await f.c('register-run', KV('v1', 'x86'), runname, 'new', 'n/a', 'tester', '')
  await f.c('general-call', 'register-test', run, run, 'foo', '')
  const ids: Record<string, number> = {}
  for (const it of items) {
    await f.c('general-call', 'register-test', run, run, 'foo', it)
    ids[it] = await f.c('get-test-id', run, 'foo', it)
  }
  await f.c('general-call', 'register-test', run, run, 'bar', '')
  return { run, top: await f.c('get-test-id', run, 'foo', ''), items: ids, bar: await f.c('get-test-id', run, 'bar', '') }
}

/** Make a test look like it really ran (uname set), so counts do not treat it as a never-ran parent. */
export async function markRan (f: Fixture, run: number, id: number): Promise<void> {
  await f.c('general-call', 'update-uname-host', run, 'Linux', 'host1', id)
}
