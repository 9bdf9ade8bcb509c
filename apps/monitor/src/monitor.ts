import blessed from 'blessed'
import type { Client } from '@evalmesh/client'
import { EvalMeshError, type DescribeReply, type ReplyOf, type RequestBody, type RequestKind, type StreamEvent, type TxnRecord } from '@evalmesh/protocol'
import { parseGagEdit, peerLines, printable, shortTxn, tableLines, traceLine, type ListName } from './format.js'
import { NodeBoard, nodeLines, peerSources, type NodeSource } from './mesh.js'
import { TxnNotes, detailLines, type Ending } from './detail.js'

/** Records fetched per refresh: the window shows a screenful, and a busy node keeps many done records. */
const MAX_ROWS = 500

export interface MonitorOptions {
  /** The client to talk through; the monitor does not close it. */
  client: Client
  /** The node to watch: host:port or a peer name. */
  host: string
  /** Terminal streams (default process.stdin / process.stdout). */
  input?: NodeJS.ReadableStream
  output?: NodeJS.WritableStream
  /** How often to poll the node (default 500 ms). */
  refreshMs?: number
  /** Per-request timeout (default 5000 ms): a node that does not answer shows as disconnected. */
  requestTimeoutMs?: number
  /**
   * Restore the terminal and quit on SIGTERM and SIGHUP, and restore it before an
   * uncaught exception ends the process. Default: when the output is process.stdout.
   */
  handleProcessEvents?: boolean
  /**
   * The mesh view: a nodes pane with every node known (the `nodes` given, the watched
   * node's peer table from discovery and its peers file), each with its lists, load,
   * policy and whether it is up; Enter on a node watches it.
   */
  mesh?: boolean
  /** Nodes the mesh view knows besides the watched node's peers (the CLI's peers file). */
  nodes?: () => NodeSource[]
  /**
   * A line shown under the header for as long as the window is open: `evalmesh start`
   * says there how to reach the node it runs, which its window would otherwise cover.
   */
  banner?: string
  /**
   * What quitting the window stops, when it stops something (`node "x"` for `evalmesh
   * start`): then q and C-c ask first while the node has running or queued work, and the
   * footer and help say that q stops it.
   */
  quitStops?: string
}

export interface Monitor {
  readonly screen: blessed.Widgets.Screen
  /** Resolves when the user quits (or quit() is called); the terminal is restored by then. */
  readonly closed: Promise<void>
  /** What the screen shows, one string per line. */
  text: () => string[]
  /** Poll the node now and redraw. */
  refresh: () => Promise<void>
  quit: () => void
}

const HELP_TEXT = [
  '{bold}evalmesh monitor{/bold}: the node\'s running, queued (input) and done transactions, its policy, peers and trace.',
  '',
  '  Tab / S-Tab     move between the running, input, done and trace panes',
  '  Up / Down       select a row (a mouse click selects too; the wheel scrolls)',
  '  d / Delete      abort the selected running or queued transaction (asks y/n first)',
  '  t               turn tracing on or off on the node',
  '  c               clear the trace pane',
  '  g               edit gags: "+name" gags, "-name" ungags (also broadcast, self)',
  '  Enter           a transaction\'s detail (form, client, timings, result, output, trace);',
  '                  in the nodes pane (monitor --mesh): watch that node',
  '  /               filter the lists by text (txn, client, form); empty clears',
  '  s               sort the lists: by time, by client, by time taken',
  '  r               refresh now',
  '  ?               this help (any key closes it)',
  '  q / C-c         quit',
  '',
  'The window follows the node\'s event stream; when the node goes away it says so and reconnects by itself.'
].join('\n')

const FOOTER = ' Tab pane  ↑↓ select  Enter detail  / filter  s sort  d abort  t trace  g gags  ? help  q quit'
const FOOTER_STOPS = FOOTER.replace(/q quit$/, 'q stop node')

interface Pane {
  name: ListName
  box: blessed.Widgets.BoxElement
  header: blessed.Widgets.BoxElement
  list: blessed.Widgets.ListElement
  records: TxnRecord[]
}

/**
 * EVALSERVER.STATUS.WINDOW and the trace window, as a blessed screen: create it,
 * drive it with keys and mouse, read it back with text() (tests do).
 */
export function createMonitor (options: MonitorOptions): Monitor {
  const { client } = options
  /** The node watched: the mesh view's Enter changes it. */
  let host = options.host
  const mesh = options.mesh === true
  const refreshMs = Math.max(50, options.refreshMs ?? 500)
  const timeoutMs = options.requestTimeoutMs ?? 5000
  const output = options.output ?? process.stdout
  const input = options.input ?? process.stdin
  const handleProcess = options.handleProcessEvents ?? output === process.stdout
  const quitStops = options.quitStops
  const footerText = quitStops === undefined ? FOOTER : FOOTER_STOPS

  const screen = blessed.screen({
    input: input as any,
    output: output as any,
    // Debian's ncurses-6 terminfo files make blessed fall back badly; its bundled xterm-256color is right.
    terminal: 'xterm-256color',
    smartCSR: true,
    fullUnicode: false,
    warnings: false,
    autoPadding: true,
    title: `evalmesh monitor ${host}`
  })

  // ---- layout: percentages, so the window follows the terminal when resized ----

  const headerBox = blessed.box({ parent: screen, top: 0, left: 0, width: '100%', height: 1, tags: true, style: { fg: 'white', bg: 'blue' } })
  const footer = blessed.box({ parent: screen, bottom: 0, left: 0, width: '100%', height: 1, tags: false, content: footerText, style: { fg: 'black', bg: 'white' } })
  // The banner takes one line under the header, and everything below moves down by it.
  const top = options.banner === undefined ? 1 : 2
  if (options.banner !== undefined) {
    blessed.box({ parent: screen, top: 1, left: 0, width: '100%', height: 1, tags: false, content: ' ' + printable(options.banner, 1000), style: { fg: 'black', bg: 'cyan' } })
  }

  function makePane (name: ListName, top: string, size: { height: string } | { bottom: number }): Pane {
    const box = blessed.box({ parent: screen, top, left: 0, width: '60%', ...size, border: 'line', label: ` ${name} `, tags: false, style: { border: { fg: 'cyan' } } })
    const header = blessed.box({ parent: box, top: 0, left: 0, right: 0, height: 1, style: { bold: true } })
    const list = blessed.list({
      parent: box, top: 1, left: 0, right: 0, bottom: 0,
      keys: true, vi: true, mouse: true, tags: false,
      style: { selected: { bg: 'blue', fg: 'white' }, item: {} }
    })
    return { name, box, header, list, records: [] }
  }
  const panes: Record<ListName, Pane> = {
    running: makePane('running', `0%+${top}`, { height: '30%' }),
    input: makePane('input', `30%+${top}`, { height: '25%' }),
    done: makePane('done', `55%+${top}`, { bottom: 1 })
  }
  const policyBox = blessed.box({ parent: screen, top, left: '60%', width: '40%', height: 5, border: 'line', label: ' policy ', tags: true, style: { border: { fg: 'cyan' } } })
  const peersBox = blessed.box({ parent: screen, top: top + 5, left: '60%', width: '40%', height: '25%', border: 'line', label: ' peers ', tags: false, scrollable: true, style: { border: { fg: 'cyan' } } })
  const tracePane = blessed.log({
    parent: screen, top: `25%+${top + 5}`, left: '60%', width: '40%', bottom: 1, border: 'line', label: ' trace (off) ',
    tags: false, scrollback: 1000, scrollbar: { ch: ' ', style: { bg: 'cyan' } } as any, mouse: true, keys: true, vi: true,
    style: { border: { fg: 'cyan' } }
  })
  const confirmBox = blessed.box({
    parent: screen, top: 'center', left: 'center', width: '60%', height: 6, border: 'line', label: ' confirm ', tags: false, hidden: true,
    style: { border: { fg: 'red' }, bg: 'black' }
  })
  const helpBox = blessed.box({ parent: screen, top: 'center', left: 'center', width: '80%', height: 21, border: 'line', label: ' help ', tags: true, hidden: true, style: { border: { fg: 'yellow' } } })
  helpBox.setContent(quitStops === undefined ? HELP_TEXT : HELP_TEXT.replace('  q / C-c         quit', `  q / C-c         quit, which stops ${blessed.escape(printable(quitStops, 80))} (asks first while it has work)`))
  const promptBox = blessed.box({ parent: screen, top: 'center', left: 'center', width: '60%', height: 6, border: 'line', label: ' gags ', hidden: true, style: { border: { fg: 'yellow' } } })
  const promptText = blessed.box({ parent: promptBox, top: 0, left: 1, right: 1, height: 2 })
  const promptInput = blessed.textbox({ parent: promptBox, top: 2, left: 1, right: 1, height: 1, inputOnFocus: false, style: { bg: 'blue', fg: 'white' } })

  // The mesh view: the nodes pane takes the peers box's place, taller.
  const nodesList = blessed.list({
    parent: screen, top: top + 5, left: '60%', width: '40%', height: '35%', border: 'line', label: ' nodes ', hidden: !mesh,
    keys: true, vi: true, mouse: true, tags: false,
    style: { border: { fg: 'cyan' }, selected: { bg: 'blue', fg: 'white' }, item: {} }
  })
  if (mesh) {
    peersBox.hide()
    tracePane.top = `35%+${top + 5}`
  }
  const detailBox = blessed.box({
    parent: screen, top, left: 'center', width: '90%', bottom: 1, border: 'line', label: ' transaction ', tags: false, hidden: true,
    scrollable: true, alwaysScroll: true, keys: true, vi: true, mouse: true, style: { border: { fg: 'yellow' }, bg: 'black' }
  })

  const focusOrder: Array<blessed.Widgets.BlessedElement> = [...(mesh ? [nodesList] : []), panes.running.list, panes.input.list, panes.done.list, tracePane]
  const paneOfList = (el: unknown): Pane | undefined => Object.values(panes).find(p => p.list === el)

  function styleFocus (): void {
    for (const p of Object.values(panes)) {
      const focused = screen.focused === p.list
      ;(p.list.style as any).selected = focused ? { bg: 'blue', fg: 'white' } : { bg: 'black', fg: 'white', underline: true }
      ;(p.box.style as any).border = { fg: focused ? 'yellow' : 'cyan' }
    }
    ;(tracePane.style as any).border = { fg: screen.focused === tracePane ? 'yellow' : 'cyan' }
  }

  // ---- state -------------------------------------------------------------------

  let connected = false
  let everConnected = false
  let lastError = ''
  let node: Partial<DescribeReply> = {}
  let traceOn = false
  let traceSeq = 0
  let clockOffset = 0 // node clock minus ours, for "waiting" times of a remote node
  let peersKnown: string[] = ['(asking...)']
  let peersUnsupported = false
  let tick = 0
  let message = ''
  let messageUntil = 0
  let modal: 'confirm' | 'help' | 'prompt' | 'detail' | undefined
  /** The lists show only records whose txn, client or form holds this text (case-insensitive). */
  let filter = ''
  let sortKey: 'time' | 'client' | 'took' = 'time'
  /** Output and trace lines per txn, for the detail view. */
  const notes = new TxnNotes()
  /** The transaction the detail view shows, and how it ended once known. */
  let detail: { txn: string, ending?: Ending, asked?: boolean } | undefined
  const board = mesh ? new NodeBoard(client, Math.min(2000, options.requestTimeoutMs ?? 2000)) : undefined
  let boardBusy = false
  let peerEntries: Parameters<typeof peerSources>[0] = []
  /** Bumped when the window switches nodes: answers for the node watched before are dropped. */
  let generation = 0
  let confirmAction: (() => void) | undefined
  /** The confirm box asks whether to quit (a second C-c then quits). */
  let askingQuit = false
  /** The host that could not be resolved to an address (UNKNOWN_HOST): not retried. */
  let unresolved: string | undefined
  let inflight: Promise<void> | undefined
  let closedFlag = false
  let resolveClosed!: () => void
  const closed = new Promise<void>(resolve => { resolveClosed = resolve })

  /**
   * Why a queued record waits, as the node says ("session s1, held by …a1b2:7"), escaped:
   * the held-by txn shortened as the rows show txns.
   */
  function waitingText (r: TxnRecord): string | undefined {
    if (typeof r.waiting !== 'string' || r.waiting === '') return undefined
    const text = typeof r.heldBy === 'string' && r.heldBy !== '' ? r.waiting.split(r.heldBy).join(shortTxn(r.heldBy, 14)) : r.waiting
    return printable(text, 200)
  }

  const request = async <K extends RequestKind>(body: RequestBody & { kind: K }): Promise<ReplyOf<K>> => await client.request<K>(host, body, timeoutMs)

  function say (text: string, ms = 4000): void {
    // Messages quote the node and peers (reasons, errors, names): one escaped line.
    message = printable(text, 300)
    messageUntil = Date.now() + ms
    draw()
  }

  // ---- drawing -----------------------------------------------------------------

  function drawHeader (): void {
    // The header box has tags: what the node sent is escaped (printable) and then tag-escaped.
    const name = printable(typeof node.name === 'string' ? node.name : host, 63)
    const id = typeof node.id === 'string' ? ` (${printable(node.id.slice(0, 8), 8)})` : ''
    const counters: Partial<DescribeReply['counters']> = node.counters ?? {}
    // A supervised node (evalmesh fleet) that keeps coming back says so: "up 12s, restarted 3x".
    const restarts = typeof node.restarts === 'number' && node.restarts > 0 ? `, restarted ${node.restarts}x` : ''
    const uptime = typeof node.uptimeSeconds === 'number' ? `up ${Math.floor(node.uptimeSeconds)}s${restarts}` : ''
    const state = connected
      ? '{green-fg}connected{/green-fg}'
      : unresolved === host
        ? `{red-fg}cannot watch it:{/red-fg} ${blessed.escape(printable(lastError, 300))}`
        : everConnected
          ? `{red-fg}disconnected, retrying...{/red-fg} ${blessed.escape(printable(lastError, 300))}`
          : `{yellow-fg}connecting...{/yellow-fg} ${blessed.escape(printable(lastError, 300))}`
    const stats = connected ? ` ${uptime}  served ${counters.served ?? 0} refused ${counters.refused ?? 0} done ${counters.completed ?? 0} failed ${counters.failed ?? 0} aborted ${counters.aborted ?? 0}` : ''
    const meshNote = board === undefined ? '' : `mesh ${board.nodes.filter(n => n.up === true).length}/${board.nodes.length} up  `
    headerBox.setContent(` evalmesh monitor  ${blessed.escape(meshNote)}node ${blessed.escape(name)}${blessed.escape(id)} at ${blessed.escape(host)}  ${state}${blessed.escape(stats)}`)
  }

  function drawPane (p: Pane): void {
    const width = Math.max(10, (p.box.width as number) - 2)
    const nodeNow = Date.now() + clockOffset
    // A queued row says what it waits for after its form: "hold()  [session s1, held by …:7]".
    const shown = p.name !== 'input'
      ? p.records
      : p.records.map(r => { const w = waitingText(r); return w === undefined ? r : { ...r, summary: `${r.summary}  [${w}]` } })
    const { header, rows } = tableLines(p.name, shown, width, nodeNow)
    const list = p.list as any
    const before: number = list.selected ?? 0
    const selectedTxn = p.records[before]?.txn
    p.header.setContent(header)
    p.list.setItems((rows.length === 0 ? [] : rows) as any)
    if (rows.length === 0) {
      p.list.setItems(['(none)'] as any)
    }
    // Keep the selection on the same transaction as rows come and go.
    const keep = selectedTxn === undefined ? -1 : p.records.findIndex(r => r.txn === selectedTxn)
    if (keep >= 0) p.list.select(keep)
    else if (before >= Math.max(1, rows.length)) p.list.select(Math.max(0, rows.length - 1))
    p.box.setLabel(` ${p.name} (${p.records.length})${filter !== '' ? ` /${printable(filter, 30)}` : ''}${sortKey !== 'time' ? ` by ${sortKey}` : ''} `)
  }

  /** With a queued row selected in the input pane: the footer says what it waits for. */
  function selectedWaiting (): string | undefined {
    if (screen.focused !== panes.input.list) return undefined
    const r = panes.input.records[(panes.input.list as any).selected as number]
    const w = r === undefined ? undefined : waitingText(r)
    return w === undefined ? undefined : ` ${printable(shortTxn(r!.txn, 14), 20)} waits: ${w}   (d abort  Tab pane  ? help)`
  }

  function draw (): void {
    if (closedFlag) return
    drawHeader()
    for (const p of Object.values(panes)) drawPane(p)
    const policy = node.policy ?? { hosts: [], gags: [] }
    policyBox.setContent(connected || everConnected
      ? ` hosts: ${blessed.escape(policy.hosts.map(h => printable(h, 63)).join(', ') || '(none)')}\n gags:  ${blessed.escape(policy.gags.map(g => printable(g, 63)).join(', ') || '(none)')}\n {gray-fg}g edits gags{/gray-fg}`
      : ' (not connected)')
    peersBox.setContent(peersKnown.map(l => ' ' + l).join('\n'))
    if (board !== undefined) drawNodes()
    if (detail !== undefined) drawDetail()
    tracePane.setLabel(` trace (${traceOn ? 'on' : 'off'}) t toggles, c clears `)
    footer.setContent(Date.now() < messageUntil ? ' ' + message : selectedWaiting() ?? footerText)
    styleFocus()
    screen.render()
    // blessed defers its write to setImmediate; flushing here keeps the terminal in step with the model.
    ;(screen as unknown as { program: { flush: () => void } }).program.flush()
  }

  function drawNodes (): void {
    const nodes = board!.nodes
    const list = nodesList as any
    const selected: number = list.selected ?? 0
    const selectedHost = nodes[selected]?.host
    nodesList.setItems(nodeLines(nodes, Math.max(10, (nodesList.width as number) - 2), host) as any)
    const keep = selectedHost === undefined ? -1 : nodes.findIndex(n => n.host === selectedHost)
    if (keep >= 0) nodesList.select(keep)
    const up = nodes.filter(n => n.up === true).length
    nodesList.setLabel(` nodes (${nodes.length}, ${up} up) Enter watches `)
    ;(nodesList.style as any).border = { fg: screen.focused === nodesList ? 'yellow' : 'cyan' }
  }

  function drawDetail (): void {
    const r = byTxn.get(detail!.txn)
    if (r === undefined) { detailBox.setContent(` ${printable(detail!.txn, 120)}: no longer listed by the node`); return }
    if (r.state === 'done' && detail!.ending === undefined && detail!.asked !== true) askEnding(r)
    const width = Math.max(20, (detailBox.width as number) - 4)
    detailBox.setContent(detailLines(r, notes, detail!.ending, width).map(l => ' ' + l).join('\n'))
  }

  /** The outcome of a done transaction, for the detail view: fetched by txn (an operator may). */
  function askEnding (r: TxnRecord): void {
    const shown = detail!
    shown.asked = true
    const gen = generation
    request({ kind: 'result', txn: r.txn }).then(
      outcome => { shown.ending = { kind: 'outcome', outcome } },
      (err: unknown) => {
        const e = err as EvalMeshError & { output?: string }
        shown.ending = r.howStopped === 'completed'
          ? { kind: 'unavailable', why: e.message }
          : { kind: 'error', code: e.code ?? 'ERROR', message: e.message, ...(typeof e.output === 'string' ? { output: e.output } : {}) }
      }
    ).finally(() => { if (gen === generation && !closedFlag) draw() })
  }

  // ---- the node's stream, and a slow poll for counters and peers ------------------

  /**
   * The lists come from the node's `subscribe` stream: one snapshot when the window
   * (re)connects, then each record as it changes list. Only describe (counters, uptime)
   * and the peers are still asked for, every few refreshes.
   */
  const byTxn = new Map<string, TxnRecord>()
  let stream: { close: () => void } | undefined

  function showRecords (): void {
    const running: TxnRecord[] = []
    const waiting: TxnRecord[] = []
    const done: TxnRecord[] = []
    const needle = filter.toLowerCase()
    const shown = (r: TxnRecord): boolean => needle === '' ||
      r.txn.toLowerCase().includes(needle) || r.clientName.toLowerCase().includes(needle) || r.summary.toLowerCase().includes(needle)
    const all: TxnRecord[] = []
    for (const r of byTxn.values()) {
      if (r.state === 'done') all.push(r)
      if (shown(r)) (r.state === 'running' ? running : r.state === 'input' ? waiting : done).push(r)
    }
    // The window keeps the newest MAX_ROWS done records, whatever the filter shows.
    all.sort((a, b) => (b.endedAt ?? 0) - (a.endedAt ?? 0))
    for (const old of all.slice(MAX_ROWS)) byTxn.delete(old.txn)
    done.sort((a, b) => (b.endedAt ?? 0) - (a.endedAt ?? 0))
    done.splice(MAX_ROWS)
    running.sort((a, b) => (a.startedAt ?? 0) - (b.startedAt ?? 0))
    waiting.sort((a, b) => a.queuedAt - b.queuedAt)
    if (sortKey !== 'time') {
      const by = sortKey === 'client'
        ? (a: TxnRecord, b: TxnRecord) => a.clientName.localeCompare(b.clientName)
        : (a: TxnRecord, b: TxnRecord) => (b.seconds ?? 0) - (a.seconds ?? 0)
      for (const list of [running, waiting, done]) list.sort(by) // stable: time order within a client
    }
    panes.running.records = running
    panes.input.records = waiting
    panes.done.records = done
  }

  function onEvents (events: StreamEvent[]): void {
    for (const e of events) {
      if (e.type === 'txn') byTxn.set(e.record.txn, e.record)
      else if (e.type === 'policy') node = { ...node, policy: e.policy }
      else if (e.type === 'output') notes.output(e.txn, e.text)
      else if (e.type === 'trace' && e.event.seq > traceSeq) {
        notes.trace(e.event)
        tracePane.log(traceLine(e.event))
        traceSeq = e.event.seq
      }
    }
    showRecords()
    if (!closedFlag) draw()
  }

  async function openStream (): Promise<void> {
    const [records, trace] = await Promise.all([
      request({ kind: 'status', which: 'all', limit: MAX_ROWS }),
      request({ kind: 'trace', since: traceSeq })
    ])
    traceOn = trace.on
    if (trace.lastSeq < traceSeq) {
      // The node restarted: its trace sequence began again.
      tracePane.log('--- node restarted; trace sequence reset ---')
      traceSeq = 0
    }
    for (const e of trace.events) {
      if (e.seq <= traceSeq) continue
      notes.trace(e)
      tracePane.log(traceLine(e))
      traceSeq = e.seq
    }
    byTxn.clear()
    for (const r of records) byTxn.set(r.txn, r)
    showRecords()
    stream = await client.subscribe(host, onEvents, { since: traceSeq, onClose: () => { stream = undefined; connected = false } })
  }

  async function poll (): Promise<void> {
    const gen = generation
    if (board !== undefined && tick % 4 === 0 && !boardBusy) {
      boardBusy = true
      const sources: NodeSource[] = [{ name: host, host, source: 'watched' }, ...(options.nodes?.() ?? []), ...peerSources(peerEntries)]
      void board.refresh(sources).finally(() => { boardBusy = false; if (!closedFlag) draw() })
    }
    // A host that names no node stays so: asking again every tick would only repeat the error.
    if (unresolved === host) { tick++; draw(); return }
    try {
      const wasConnected = connected && stream !== undefined
      const t0 = Date.now()
      if (wasConnected && tick % 4 !== 0) {
        tick++
        draw() // running clocks move; the lists themselves come from the stream
        return
      }
      const describe = await request({ kind: 'describe' })
      const t1 = Date.now()
      if (!wasConnected) {
        // Once per (re)connection: a ping pins the node's clock against ours.
        const ping = await request({ kind: 'ping' })
        clockOffset = ping.time - (t1 + Date.now()) / 2
        if (everConnected) tracePane.log('--- reconnected ---')
        await openStream()
      }
      if (gen !== generation) return
      void t0
      node = describe
      traceOn = describe.trace
      connected = true
      everConnected = true
      lastError = ''
      if (!peersUnsupported ? tick % 8 === 0 : tick % 80 === 0) await pollPeers()
    } catch (err) {
      if (gen !== generation) return
      if (connected) tracePane.log(`--- lost the node: ${printable((err as Error).message, 300)} ---`)
      connected = false
      lastError = (err as Error).message ?? String(err)
      if (err instanceof EvalMeshError && err.code === 'UNKNOWN_HOST') {
        unresolved = host
        say(`${host} names no node this client knows; ${board === undefined ? 'q quits' : 'pick a node in the nodes pane'}`, 60_000)
      }
    }
    tick++
    draw()
  }

  async function pollPeers (): Promise<void> {
    try {
      peerEntries = await request({ kind: 'peers' })
      peersKnown = peerLines(peerEntries)
      peersUnsupported = false
    } catch (err) {
      if (err instanceof EvalMeshError && err.code === 'UNKNOWN_KIND') {
        peersUnsupported = true
        peersKnown = ['(discovery not enabled)']
      } else {
        throw err
      }
    }
  }

  async function refresh (): Promise<void> {
    if (closedFlag) return
    inflight ??= poll().finally(() => { inflight = undefined })
    await inflight
  }

  const timer = setInterval(() => { if (inflight === undefined) void refresh() }, refreshMs)

  // ---- actions -----------------------------------------------------------------

  function askAbort (): void {
    const pane = paneOfList(screen.focused)
    if (pane === undefined || pane.name === 'done') {
      say(pane?.name === 'done' ? 'done transactions cannot be aborted; select a running or input row' : 'select a running or input row first (Tab moves between panes)')
      return
    }
    const index = (pane.list as any).selected as number
    const record = pane.records[index]
    if (record === undefined) { say(`no ${pane.name} transaction selected`); return }
    confirmBox.setContent(`\n Abort ${pane.name === 'running' ? 'running' : 'queued'} ${printable(record.txn, 120)}\n   ${printable(record.summary, 60)}\n   from ${printable(record.clientName, 63)}?  y = abort, n = keep it`)
    modal = 'confirm'
    confirmBox.show()
    confirmBox.setFront()
    confirmAction = () => {
      say(`aborting ${record.txn}...`)
      client.remoteAbort(record.txn, host, { reason: `aborted from the status window by ${client.identity.name}` }).then(
        r => { say(r.aborted ? `aborted ${r.txn}` : `not aborted: ${r.reason}`); void refresh() },
        err => say(`abort failed: ${(err as Error).message}`)
      )
    }
    draw()
  }

  /** Watch another node (the mesh view's Enter): its lists, policy and trace replace these. */
  function switchTo (next: string): void {
    if (next === host) { say(`already watching ${next}`); return }
    generation++
    stream?.close()
    stream = undefined
    connected = false
    everConnected = false
    lastError = ''
    node = {}
    host = next
    byTxn.clear()
    notes.clear()
    traceSeq = 0
    tracePane.setContent('')
    peersKnown = ['(asking...)']
    showRecords()
    say(`watching ${next}`)
    tick = 0
    void refresh()
  }

  function openDetail (): void {
    const pane = paneOfList(screen.focused)
    if (pane === undefined) { say('select a transaction first (Tab moves between panes)'); return }
    const record = pane.records[(pane.list as any).selected as number]
    if (record === undefined) { say(`no ${pane.name} transaction selected`); return }
    detail = { txn: record.txn }
    modal = 'detail'
    detailBox.setLabel(` transaction ${printable(shortTxn(record.txn, 40), 40)} `)
    detailBox.show()
    detailBox.setFront()
    detailBox.focus()
    detailBox.setScroll(0)
    draw()
  }

  /** Ask for one line in the prompt box; `answer` gets it, or undefined on Esc. */
  function askLine (label: string, text: string, answer: (value: string | undefined) => void): void {
    modal = 'prompt'
    promptBox.setLabel(` ${label} `)
    promptText.setContent(text)
    promptBox.show()
    promptBox.setFront()
    promptInput.clearValue()
    promptInput.focus()
    draw()
    promptInput.readInput((_err: unknown, value: string | undefined) => {
      promptInput.cancel?.()
      modal = undefined
      promptBox.hide()
      panes.running.list.focus()
      draw()
      answer(value === null ? undefined : value)
    })
  }

  function editFilter (): void {
    askLine('filter', `filter now: ${filter === '' ? '(none)' : printable(filter, 60)}\nshow rows whose txn, client or form holds this text; empty clears; Esc cancels`, value => {
      if (value === undefined) return
      filter = value.trim()
      showRecords()
      say(filter === '' ? 'filter cleared' : `showing rows with "${filter}"`)
    })
  }

  function cycleSort (): void {
    sortKey = sortKey === 'time' ? 'client' : sortKey === 'client' ? 'took' : 'time'
    showRecords()
    say(`sorted by ${sortKey === 'time' ? 'time' : sortKey === 'client' ? 'client' : 'time taken (longest first)'}`)
  }

  /**
   * q: quit, but when quitting stops the node (evalmesh start) and the node has work
   * running or queued, ask first, saying what would be lost.
   */
  function askQuit (): void {
    if (quitStops === undefined) { quit(); return }
    const records = [...byTxn.values()]
    const running = records.filter(r => r.state === 'running').length
    const queued = records.filter(r => r.state === 'input').length
    if (!connected || running + queued === 0) { quit(); return }
    closeModal()
    confirmBox.setContent(`\n Quitting stops ${printable(quitStops, 80)}, which has ${running} running and ${queued} queued\n transaction(s); they would be aborted.\n   y = stop the node, n = keep watching`)
    modal = 'confirm'
    askingQuit = true
    confirmBox.show()
    confirmBox.setFront()
    confirmAction = () => quit()
    draw()
  }

  function closeModal (): void {
    askingQuit = false
    if (modal === 'detail') {
      detail = undefined
      detailBox.hide()
      panes.running.list.focus()
    }
    modal = undefined
    confirmAction = undefined
    confirmBox.hide()
    helpBox.hide()
    promptBox.hide()
    draw()
  }

  function toggleTrace (): void {
    const want = !traceOn
    request({ kind: 'trace', on: want, since: traceSeq }).then(
      r => { traceOn = r.on; say(`trace ${r.on ? 'on' : 'off'} on ${String(node.name ?? host)}`); void refresh() },
      err => say(`cannot change tracing: ${(err as Error).message}`)
    )
  }

  function editGags (): void {
    const gags = node.policy?.gags ?? []
    askLine('gags', `gags now: ${gags.map(g => printable(g, 63)).join(', ') || '(none)'}\n+name gags, -name ungags (also broadcast, self); Enter applies, Esc cancels`, value => {
      if (value === undefined) { say('gags unchanged'); return }
      const change = parseGagEdit(value)
      if (change.gag.length === 0 && change.ungag.length === 0) { say('gags unchanged'); return }
      const body: RequestBody<'policy'> = { kind: 'policy' }
      if (change.gag.length > 0) body.gag = change.gag
      if (change.ungag.length > 0) body.ungag = change.ungag
      request(body).then(
        p => { say(`gags: ${p.gags.join(', ') || '(none)'}`); void refresh() },
        err => say(`cannot change gags: ${(err as Error).message}`)
      )
    })
  }

  function cycleFocus (step: number): void {
    const i = focusOrder.indexOf(screen.focused as blessed.Widgets.BlessedElement)
    const next = focusOrder[(i + step + focusOrder.length) % focusOrder.length]!
    next.focus()
    draw()
  }

  function onKey (ch: string | undefined, key: { full?: string, name?: string } | undefined): void {
    const full = key?.full ?? key?.name ?? ch ?? ''
    if (full === 'C-c') {
      // A second C-c while asking leaves: the way out never needs more than two keys.
      if (quitStops === undefined || askingQuit) quit()
      else if (modal !== 'prompt') askQuit() // Escape ends the prompt first
      return
    }
    if (modal === 'prompt') return // the text box has the keys
    if (modal === 'help') { closeModal(); return }
    if (modal === 'detail') {
      // blessed reports Enter twice (return, then enter): only one of them closes.
      if (['escape', 'enter', 'q'].includes(full)) closeModal()
      return // Up/Down scroll the detail box
    }
    if (modal === 'confirm') {
      if (full === 'y' || full === 'Y') { const act = confirmAction; closeModal(); act?.() } else if (['n', 'N', 'escape', 'q'].includes(full)) { const kept = askingQuit ? 'the node keeps running' : 'kept'; closeModal(); say(kept) }
      return
    }
    switch (full) {
      case 'q': askQuit(); return
      case 'tab': cycleFocus(1); return
      case 'S-tab': cycleFocus(-1); return
      case 'd': case 'delete': askAbort(); return
      case 't': toggleTrace(); return
      case 'c': tracePane.setContent(''); say('trace pane cleared'); return
      case 'g': editGags(); return
      case '/': editFilter(); return
      case 's': cycleSort(); return
      case 'enter':
        if (screen.focused === nodesList) {
          const n = board?.nodes[(nodesList as any).selected as number]
          if (n !== undefined) switchTo(n.host)
        } else {
          openDetail()
        }
        return
      case 'r': unresolved = undefined; void refresh(); return // r retries a host that named no node, too
      case '?': modal = 'help'; helpBox.show(); helpBox.setFront(); draw()
    }
  }

  screen.on('keypress', (ch: string | undefined, key: { full?: string, name?: string } | undefined) => {
    try {
      onKey(ch, key)
    } catch (err) {
      say(`error: ${(err as Error).message}`)
    }
  })
  screen.on('resize', () => draw())
  for (const p of Object.values(panes)) {
    p.list.on('focus', () => draw())
    // A click on an empty pane still focuses it, so Delete goes where the user looked.
    p.box.on('click', () => { p.list.focus(); draw() })
  }
  nodesList.on('focus', () => draw())

  // ---- leaving -----------------------------------------------------------------

  const onSignal = (): void => quit()
  const onCrash = (err: unknown): void => {
    restore()
    process.stderr.write(`evalmesh monitor: ${(err as Error)?.stack ?? String(err)}\n`)
    process.exit(1)
  }
  const onExit = (): void => restore()
  if (handleProcess) {
    process.on('SIGTERM', onSignal)
    process.on('SIGHUP', onSignal)
    process.on('uncaughtException', onCrash)
    process.on('exit', onExit)
  }

  let restored = false
  function restore (): void {
    if (restored) return
    restored = true
    clearInterval(timer)
    stream?.close()
    try { screen.destroy() } catch { /* already gone */ }
    // blessed's destroy leaves the input in flowing mode on a real terminal.
    try { (input as NodeJS.ReadStream).setRawMode?.(false) } catch { }
    if (input === process.stdin) process.stdin.pause()
  }

  function quit (): void {
    if (closedFlag) return
    closedFlag = true
    restore()
    if (handleProcess) {
      process.off('SIGTERM', onSignal)
      process.off('SIGHUP', onSignal)
      process.off('uncaughtException', onCrash)
      process.off('exit', onExit)
    }
    resolveClosed()
  }

  panes.running.list.focus()
  draw()
  void refresh()

  return {
    screen,
    closed,
    text: () => (screen as any).lines.map((line: Array<[unknown, string]>) => line.map(c => c[1]).join('')),
    refresh,
    quit
  }
}

/** Open the status window on `host` and resolve when the user quits. */
export async function runMonitor (options: MonitorOptions): Promise<void> {
  await createMonitor(options).closed
}
