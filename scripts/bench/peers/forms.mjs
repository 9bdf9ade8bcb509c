// The workloads of the peers benchmark, one definition for every system.
//   trivial:   1+1
//   realistic: a 1 KB object in (a literal in the form), a 1 KB object out, and one call
//              to a host-registered async function (evalmesh `fns.total`, a global
//              `fns.total` in the CDP target): map, sort, sum, return.
// The same items are generated for the Erlang and Python equivalents so that each
// system moves the same data; see peers.mjs for how those differ.

/** 16 items, deterministic: about 1 KB as JSON. */
export function items () {
  const names = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel',
    'india', 'juliett', 'kilo', 'lima', 'mike', 'november', 'oscar', 'papa']
  return names.map((name, i) => ({ id: i + 1, name, score: (i * 37 + 11) % 100, tags: ['t' + (i % 3), 'k' + (i % 5)] }))
}

export const TRIVIAL = '1+1'

/**
 * The realistic JavaScript form, evaluated as is by evalmesh and by CDP (awaitPromise).
 * With hostCall false the sum is computed in the form instead (the hop table's
 * measure of what the fns call costs).
 */
export function realisticForm ({ hostCall = true } = {}) {
  const input = { run: 'run-1042', items: items() }
  return `(async () => {
  const input = ${JSON.stringify(input)};
  const items = input.items.map(x => ({ ...x, score: (x.score * 3) % 101, tags: [...x.tags].sort() }));
  items.sort((a, b) => a.score - b.score || a.id - b.id);
  const total = ${hostCall ? 'await fns.total(items.map(x => x.score))' : 'items.reduce((a, x) => a + x.score, 0)'};
  return { run: input.run, total, items };
})()`
}

/** What the realistic form returns, to check each system's answer once. */
export function realisticExpected () {
  const out = items().map(x => ({ ...x, score: (x.score * 3) % 101, tags: [...x.tags].sort() }))
  out.sort((a, b) => a.score - b.score || a.id - b.id)
  return { run: 'run-1042', total: out.reduce((a, x) => a + x.score, 0), items: out }
}

/** The realistic Python expression for RPyC classic (json is imported once per connection). */
export function realisticPython () {
  const input = { run: 'run-1042', items: items() }
  return `(lambda input: (lambda items: json.dumps({"run": input["run"], "total": sum(x["score"] for x in items), "items": items}))(sorted([dict(x, score=(x["score"] * 3) % 101, tags=sorted(x["tags"])) for x in input["items"]], key=lambda x: (x["score"], x["id"]))))(json.loads(${JSON.stringify(JSON.stringify(input))}))`
}
