#!/usr/bin/env -S node --no-node-snapshot
// The evalmesh command. isolated-vm on Node 20 needs --no-node-snapshot: the shebang and
// `npm start` pass it, and the sandbox children that run forms (packages/sandbox) are
// always forked with it, so a plain `node bin/evalmesh.js` works too (the node then
// sends pure forms such as `1+1` to a child as well, instead of its own isolate). We deliberately do not re-execute ourselves with the flag: the pid a user starts
// (`evalmesh serve & kill $!`) must be the node itself, not a wrapper that signals miss.
const { main } = await import('../dist/src/main.js')
process.exitCode = await main(process.argv.slice(2))
// The command is over. A handle left open by a library (a terminal stream after a
// signal, a socket still closing) must not keep the process alive: if the event loop
// has not drained a second from now, leave anyway. (stdout and stderr are synchronous
// on Linux for files, pipes and terminals, so nothing written is lost.)
setTimeout(() => process.exit(), 1000).unref()
