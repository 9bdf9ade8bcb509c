# A client process of the peers benchmark for RPyC classic.
#   python3 rpyc_client.py PORT lat|tp trivial|realistic WARMUP COUNT_OR_INFLIGHT MAX_MS_OR_MS
# trivial: conn.eval("1+1"); realistic: conn.eval(<the expression of forms.mjs's
# realisticPython(), passed in the environment as RPYC_REALISTIC>), which returns a JSON
# string. Throughput keeps INFLIGHT async calls (rpyc.async_) outstanding on one connection.
# Connects, checks one answer, warms up, prints "ready", waits for a line on stdin,
# measures, prints one JSON line.
import json
import os
import sys
import time

import rpyc

port, mode, work, warmup, n, ms = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
conn = rpyc.classic.connect('127.0.0.1', int(port))
conn.execute('import json')
form = '1+1' if work == 'trivial' else os.environ['RPYC_REALISTIC']
first = conn.eval(form)
if work == 'trivial':
    assert first == 2, first
else:
    assert len(json.loads(first)['items']) == 16, first


def closed_loop(inflight, seconds_until):
    """Keep `inflight` async evals outstanding until the deadline; returns how many finished."""
    aeval = rpyc.async_(conn.root.eval)
    state = {'done': 0, 'pending': 0}

    def issue():
        state['pending'] += 1
        aeval(form).add_callback(finished)

    def finished(res):
        state['pending'] -= 1
        res.value  # raises if the eval failed
        state['done'] += 1
        if time.monotonic() < seconds_until:
            issue()

    for _ in range(inflight):
        issue()
    while state['pending'] > 0:
        conn.serve(0.1)
    return state['done']


if mode == 'lat':
    for _ in range(warmup):
        conn.eval(form)
else:
    closed_loop(n, time.monotonic() + 0.5)
print('ready', flush=True)
sys.stdin.readline()
if mode == 'lat':
    samples = []
    stop = time.monotonic() + ms / 1000
    for _ in range(n):
        if time.monotonic() >= stop:
            break
        t = time.perf_counter_ns()
        conn.eval(form)
        samples.append((time.perf_counter_ns() - t) / 1000)
    samples.sort()

    def pct(p):
        return samples[min(len(samples) - 1, int(p / 100 * len(samples)))]

    print(json.dumps({'n': len(samples), 'p50': pct(50), 'p99': pct(99)}), flush=True)
else:
    t = time.perf_counter()
    done = closed_loop(n, time.monotonic() + ms / 1000)
    print(json.dumps({'n': done, 'seconds': time.perf_counter() - t}), flush=True)
conn.close()
