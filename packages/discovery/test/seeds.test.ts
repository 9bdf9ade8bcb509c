import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseSeeds, SeedFileError } from '../src/index.js'

test('line form: name host:port [id], comments and blank lines', () => {
  const text = [
    '# the build farm',
    '',
    'alpha   198.18.0.1:6680   n-alpha   # rack 1',
    '\tbeta beta.lab.example:7000',
    'gamma [fd00::3]:6680',
    '   # trailing comment line'
  ].join('\r\n')
  assert.deepEqual(parseSeeds(text), [
    { name: 'alpha', address: '198.18.0.1', port: 6680, id: 'n-alpha', version: 0, caps: [] },
    { name: 'beta', address: 'beta.lab.example', port: 7000, id: '', version: 0, caps: [] },
    { name: 'gamma', address: 'fd00::3', port: 6680, id: '', version: 0, caps: [] }
  ])
  assert.deepEqual(parseSeeds(''), [])
})

test('JSON form: an array of {name, address, port, id?, version?, caps?}', () => {
  const text = JSON.stringify([
    { name: 'alpha', address: '198.18.0.1', port: 6680, id: 'n-alpha', caps: ['eval', 'megatest'], version: 2 },
    { name: 'beta', address: '198.18.0.2', port: 6680 }
  ])
  assert.deepEqual(parseSeeds('\n  ' + text), [
    { name: 'alpha', address: '198.18.0.1', port: 6680, id: 'n-alpha', version: 2, caps: ['eval', 'megatest'] },
    { name: 'beta', address: '198.18.0.2', port: 6680, id: '', version: 0, caps: [] }
  ])
})

test('bad lines are rejected with the file, line and problem', () => {
  const cases: Array<[string, number, RegExp]> = [
    ['ok 198.18.0.1:1\nalpha 198.18.0.1', 2, /'198\.18\.0\.1' is not host:port/],
    ['alpha 198.18.0.1:0', 1, /port 0 is not an integer from 1 to 65535/],
    ['alpha 198.18.0.1:70000', 1, /port 70000/],
    ['alpha', 1, /expected 'name host:port \[id\]', got 1 field/],
    ['alpha 198.18.0.1:1 id extra', 1, /got 4 field/],
    ['al.pha 198.18.0.1:1', 1, /name 'al\.pha' may hold only letters/],
    ['alpha bad_host!:80', 1, /address "bad_host!" is neither/],
    ['fd00::1:80 x', 1, /is not host:port/],
    ['a 198.18.0.1:1\n\n# c\na 198.18.0.2:1', 4, /peer 'a' is listed twice/],
    [`${'x'.repeat(64)} 198.18.0.1:1`, 1, /longer than 63 bytes/]
  ]
  for (const [text, line, re] of cases) {
    assert.throws(() => parseSeeds(text, 'peers.txt'), (err: unknown) => {
      assert.ok(err instanceof SeedFileError, `${text}: ${String(err)}`)
      assert.equal(err.line, line, text)
      assert.match(err.message, new RegExp(`^peers\\.txt:${line}: `))
      assert.match(err.message, re)
      return true
    })
  }
})

test('bad JSON seeds name the entry and the problem', () => {
  assert.throws(() => parseSeeds('[{"name":"a","address":"198.18.0.1"', 'p.json'), /^SeedFileError: p\.json: not valid JSON/)
  assert.throws(() => parseSeeds('[1]', 'p.json'), /entry 0: must be an object/)
  assert.throws(() => parseSeeds('[{"name":"a","address":"198.18.0.1","port":"80"}]'), /entry 0: port "80" is not an integer/)
  assert.throws(() => parseSeeds('[{"name":"a","address":"198.18.0.1","port":80,"host":"x"}]'), /entry 0: unknown field\(s\) host/)
  assert.throws(() => parseSeeds('[{"name":"a","address":"198.18.0.1","port":80,"caps":"eval"}]'), /entry 0: caps must be an array/)
  assert.throws(() => parseSeeds('[{"name":"a","address":"198.18.0.1","port":80},{"name":"a","address":"198.18.0.1","port":81}]'), /entry 1: peer 'a' is listed twice/)
})

test('a peer that serves TLS: the word tls ends its line, or "tls": true in JSON; either gives it the tls capability', () => {
  assert.deepEqual(parseSeeds('alpha 198.18.0.1:6680 n-alpha tls\nbeta [fd00::3]:6680 tls\ngamma 198.18.0.3:6680'), [
    { name: 'alpha', address: '198.18.0.1', port: 6680, id: 'n-alpha', version: 0, caps: ['tls'] },
    { name: 'beta', address: 'fd00::3', port: 6680, id: '', version: 0, caps: ['tls'] },
    { name: 'gamma', address: '198.18.0.3', port: 6680, id: '', version: 0, caps: [] }
  ])
  assert.deepEqual(parseSeeds(JSON.stringify([{ name: 'alpha', address: '198.18.0.1', port: 6680, tls: true }])),
    [{ name: 'alpha', address: '198.18.0.1', port: 6680, id: '', version: 0, caps: ['tls'] }])
  assert.throws(() => parseSeeds(JSON.stringify([{ name: 'alpha', address: '198.18.0.1', port: 6680, tls: 'yes' }])), /tls must be true or false/)
  assert.throws(() => parseSeeds('alpha 198.18.0.1:6680 id extra tls'), /got 5 field/)
})
