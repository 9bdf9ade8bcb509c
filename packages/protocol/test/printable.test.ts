import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isPrintable, printable } from '../src/printable.js'

test('terminal escapes, newlines and carriage returns become visible escapes', () => {
  assert.equal(printable('\x1b[2Jgot root\nok'), '\\x1b[2Jgot root\\nok')
  assert.equal(printable('a\r\tb\x00\x07\x7f'), 'a\\r\\tb\\x00\\x07\\x7f')
  assert.equal(printable('\x1b]52;c;ZXZpbA==\x07'), '\\x1b]52;c;ZXZpbA==\\x07', 'OSC 52 (clipboard) does nothing')
  assert.equal(printable('\u009b2J'), '\\x9b2J', 'C1 CSI')
  assert.ok(!printable('mallory\nalice 12:00 served').includes('\n'))
})

test('bidi overrides, invisible characters, separators and lone surrogates are shown', () => {
  assert.equal(printable('abc\u202Etxt.exe'), 'abc\\u202etxt.exe')
  assert.equal(printable('\u2066x\u2069\u200b\u200d\ufeff\u00ad'), '\\u2066x\\u2069\\u200b\\u200d\\ufeff\\xad')
  assert.equal(printable('a\u2028b\u2029c'), 'a\\u2028b\\u2029c')
  assert.equal(printable('x\ud800y'), 'x\\ud800y')
  assert.equal(printable('tag\u{e0041}'), 'tag\\u{e0041}')
})

test('ordinary text, backslashes and non-ASCII letters pass as they are', () => {
  for (const s of ['fib(30)', 'const s = "a\\nb"', 'Zoë 東京 🙂', 'x => x * 2', '']) {
    assert.equal(printable(s), s)
    assert.equal(isPrintable(s), true)
  }
  assert.equal(isPrintable('a\nb'), false)
})

test('cut to max characters with an ellipsis, never inside an escape or a surrogate pair', () => {
  assert.equal(printable('abcdef', 6), 'abcdef')
  assert.equal(printable('abcdefg', 6), 'abcde…')
  assert.equal(printable('abcd\x1bxyz', 7), 'abcd…')
  assert.equal(printable('ab\x1b', 6), 'ab\\x1b')
  assert.equal(printable('🙂🙂🙂', 2), '🙂…')
  assert.equal(printable('x'.repeat(5000)).length, 1024)
  assert.equal(printable('abc', 1), '…')
  assert.equal(printable('abc', Infinity), 'abc')
})

test('non-strings are converted, not trusted', () => {
  assert.equal(printable(undefined as unknown as string), 'undefined')
  assert.equal(printable({ toString: () => 'a\nb' } as unknown as string), 'a\\nb')
})
