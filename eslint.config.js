// ESLint flat config: `npx eslint .` (npm test runs it after the build, see scripts/run-tests.mjs).
// TypeScript is linted with typescript-eslint's recommended rules plus a few type-aware
// rules that catch real bugs (a promise nobody awaits, awaiting a non-promise). The style
// rules (@stylistic) only pin what the code already does, close to ts-standard: no
// semicolons, single quotes, two-space indent, a space before function parentheses.
// Type-aware rules read the packages' declarations in dist/, so run `npm run build` first.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import stylistic from '@stylistic/eslint-plugin'
import globals from 'globals'

const style = {
  '@stylistic/semi': ['error', 'never'],
  '@stylistic/quotes': ['error', 'single', { avoidEscape: true, allowTemplateLiterals: 'always' }],
  '@stylistic/indent': ['error', 2, { SwitchCase: 1, ignoredNodes: ['TemplateLiteral *'] }],
  '@stylistic/space-before-function-paren': ['error', 'always'],
  '@stylistic/comma-dangle': ['error', 'never'],
  '@stylistic/eol-last': 'error',
  '@stylistic/no-trailing-spaces': 'error',
  '@stylistic/no-mixed-spaces-and-tabs': 'error',
  '@stylistic/no-tabs': 'error',
  '@stylistic/keyword-spacing': 'error',
  '@stylistic/space-infix-ops': 'error',
  '@stylistic/brace-style': ['error', '1tbs', { allowSingleLine: true }],
  '@stylistic/object-curly-spacing': ['error', 'always'],
  '@stylistic/array-bracket-spacing': ['error', 'never'],
  '@stylistic/comma-spacing': 'error',
  '@stylistic/key-spacing': 'error',
  '@stylistic/space-before-blocks': 'error',
  '@stylistic/arrow-spacing': 'error',
  '@stylistic/space-in-parens': ['error', 'never'],
  '@stylistic/no-multiple-empty-lines': ['error', { max: 1, maxEOF: 0 }],
  '@stylistic/member-delimiter-style': ['error', { multiline: { delimiter: 'none' }, singleline: { delimiter: 'comma' } }],
  '@stylistic/type-annotation-spacing': 'error',
  '@stylistic/block-spacing': 'error',
  '@stylistic/comma-style': 'error',
  '@stylistic/semi-spacing': 'error',
  '@stylistic/spaced-comment': ['error', 'always', { markers: ['/'] }]
}

const correctness = {
  eqeqeq: ['error', 'always', { null: 'ignore' }],
  'no-var': 'error',
  'prefer-const': ['error', { destructuring: 'all', ignoreReadBeforeAssign: true }],
  'no-empty': ['error', { allowEmptyCatch: true }],
  // Terminal code and its tests match ANSI escapes and control bytes on purpose.
  'no-control-regex': 'off'
}

export default tseslint.config(
  {
    ignores: ['**/dist/**', '**/node_modules/**', 'test/fixtures/**', '.evalmesh-test-*/**', 'bench-results/**']
  },
  {
    files: ['**/*.{js,mjs,cjs}'],
    extends: [js.configs.recommended],
    plugins: { '@stylistic': stylistic },
    languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: { ...globals.node } },
    rules: { ...correctness, ...style, 'no-unused-vars': ['error', { args: 'none', caughtErrors: 'none', ignoreRestSiblings: true, varsIgnorePattern: '^_' }] }
  },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    plugins: { '@stylistic': stylistic },
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname }
    },
    rules: {
      ...correctness,
      ...style,
      // Type-aware rules that catch bugs rather than style.
      '@typescript-eslint/no-floating-promises': ['error', {
        // node:test's test()/describe() return promises the runner itself awaits.
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }]
      }],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: true }],
      '@typescript-eslint/only-throw-error': 'error',
      // The code uses these on purpose; tsc's strict mode already covers what they would.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none', caughtErrors: 'none', ignoreRestSiblings: true, varsIgnorePattern: '^_' }],
      'no-undef': 'off',
      'no-redeclare': 'off'
    }
  }
)
