// Operator functions for the peers benchmark's evalmesh node.
export function noop () { return 1 }
export async function total (xs) { return xs.reduce((a, b) => a + b, 0) }
