// The CDP peer's inspected process: `node --inspect=127.0.0.1:0 cdp-target.mjs`.
// It offers the realistic form's host function as a global, and stays alive until
// its parent goes away (stdin closes) or it is killed.
globalThis.fns = { total: async (xs) => xs.reduce((a, b) => a + b, 0) }
process.stdin.on('end', () => process.exit(0))
process.stdin.on('data', () => {})
process.stdin.resume()
