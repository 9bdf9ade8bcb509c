// The raw NATS baseline: a responder that answers every request on `bench.echo` with
// its own payload. A process of its own, like a node.
import { NatsCarrier } from '../../packages/nats/dist/src/index.js'

const { nc } = await NatsCarrier.connect({ servers: [process.argv[2]] })
nc.subscribe('bench.echo', { callback: (err, msg) => { if (err === null) msg.respond(msg.data) } })
await nc.flush()
process.send?.('ready')
process.on('disconnect', () => { void nc.close().then(() => process.exit(0)) })
