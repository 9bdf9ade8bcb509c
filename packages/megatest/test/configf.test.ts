/**
 * Megatest's config format as configf.scm reads it: the parts a real area's
 * megatest.config, runconfigs.config and testconfigs use, on real files.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { configLookup, configSection, globLikeMatch, parseConfig, readConfig, testPattMatch } from '../src/index.js'

const dir = mkdtempSync(join(tmpdir(), 'evalmesh-configf-'))
const file = (name: string, text: string): string => { const p = join(dir, name); writeFileSync(p, text); return p }

test('sections, key value (first whitespace separates), a key alone, comments, lines before any section', () => {
  const cfg = parseConfig('top 1\n# a comment\n[setup]\nlinktree  /a/b c\nflag\n  # not a comment: continues nothing\n[fields]\nSYSTEM TEXT\n', join(dir, 'x'))
  assert.equal(configLookup(cfg, 'default', 'top'), '1')
  assert.equal(configLookup(cfg, 'setup', 'linktree'), '/a/b c')
  assert.equal(configLookup(cfg, 'setup', 'flag'), '')
  assert.deepEqual(configSection(cfg, 'fields'), [['SYSTEM', 'TEXT']])
})

test('an indented line continues the value; a trailing backslash joins lines', () => {
  const cfg = parseConfig('[s]\ndesc first\n   second\n     third\nlong a \\\nb\n', join(dir, 'x'))
  assert.equal(configLookup(cfg, 's', 'desc'), 'first\nsecond\n  third')
  assert.equal(configLookup(cfg, 's', 'long'), 'a b')
})

test('[include] relative to the including file; a missing include is skipped', () => {
  file('inc.config', '[inc]\nfrom included\n')
  const cfg = readConfig(file('main.config', '[a]\nx 1\n[include inc.config]\n[include nosuch.config]\ny 2\n'))
  assert.equal(configLookup(cfg, 'inc', 'from'), 'included')
  assert.equal(configLookup(cfg, 'inc', 'y'), '2', 'the included file\'s last section goes on')
})

test('#{get}, #{getenv}, #{shell}, #{system}, #{mtrah}, key [system]; $VAR only in env sections', () => {
  const cfg = parseConfig([
    '[a]', 'x 7', 'y #{get a x}-#{g a x}', 'h #{getenv HOMEISH}', 'sh #{shell printf "p\\nq"}', 'code #{system exit 3}', 'top #{mtrah}', 'lt #{mtrah lt}',
    'out [system echo one; echo two]', 'v $HOMEISH',
    '[env]', 'A $HOMEISH/x', 'B ${A}y'
  ].join('\n'), join(dir, 'x'), { env: { HOMEISH: '/h' }, toppath: '/area', envSections: { test: s => s === 'env' } })
  assert.equal(configLookup(cfg, 'a', 'y'), '7-7')
  assert.equal(configLookup(cfg, 'a', 'h'), '/h')
  assert.equal(configLookup(cfg, 'a', 'sh'), 'p q')
  assert.equal(configLookup(cfg, 'a', 'code'), '3')
  assert.equal(configLookup(cfg, 'a', 'top'), '/area')
  assert.equal(configLookup(cfg, 'a', 'lt'), '/area/lt')
  assert.equal(configLookup(cfg, 'a', 'out'), 'one two')
  assert.equal(configLookup(cfg, 'a', 'v'), '$HOMEISH', 'not an env section: left for the shell')
  assert.equal(configLookup(cfg, 'env', 'B'), '/h/xy')
})

test('what evalmesh does not run is refused with the line named', () => {
  assert.throws(() => parseConfig('[a]\nx #{scheme (+ 1 2)}\n', join(dir, 'bad.config')), /bad\.config:2: #\{scheme \.\.\.\} is not supported/)
  assert.throws(() => parseConfig('[scriptinc ./gen.sh]\n', join(dir, 'bad.config')), /bad\.config:1: .*scriptinc.* is not supported/)
})

test('testpatt as tests:match: %, test/ for the toplevel, item patterns, ~ negation', () => {
  assert.ok(testPattMatch('%', 'a', 'x/y'))
  assert.ok(testPattMatch('a', 'a', 'x/y'), 'a test name alone selects its items')
  assert.ok(testPattMatch('a/', 'a', ''))
  assert.ok(!testPattMatch('a/', 'a', 'x'))
  assert.ok(testPattMatch('b,a/x%', 'a', 'x/y'))
  assert.ok(!testPattMatch('a/x', 'a', 'x/y'), 'an item pattern matches the whole path')
  assert.ok(testPattMatch('~b%', 'a', null))
  assert.ok(!testPattMatch('~a%', 'a', null))
  assert.ok(!testPattMatch('', 'a', ''), 'an empty pattern selects nothing')
})

test('glob and like matching: * and % match anything, % ignores case, other characters match themselves', () => {
  const cases: Array<[string, string, boolean]> = [
    ['*', '', true], ['a*', 'abc', true], ['*c', 'abc', true], ['a*c', 'ac', true], ['a*b*c', 'aXbYc', true], ['a*b*c', 'acb', false],
    ['ab*ba', 'aba', false], ['ab*ba', 'abba', true], ['A%', 'abc', true], ['a*', 'Abc', false], ['a.c', 'abc', false], ['a.c', 'a.c', true],
    ['%x%', 'xx', true], ['%x%x%', 'x', false], ['~a*', 'abc', false], ['~a*', 'bcd', true], ['a[b]*', 'a[b]c', true], ['abc', 'abc', true], ['abc', 'abcd', false]
  ]
  for (const [patt, str, want] of cases) assert.equal(globLikeMatch(patt, str), want, `${patt} ~ ${str}`)
  // A near miss with many wildcards is decided at once (a backtracking regexp took seconds).
  assert.equal(globLikeMatch('%a'.repeat(30) + '%b', 'a'.repeat(200)), false)
  assert.equal(testPattMatch('%a%a%a%a%a%a%a%a%a%a%a%a%b/%', 'a'.repeat(100), 'x'), false)
})
