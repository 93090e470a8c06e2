#!/usr/bin/python3
"""Side-by-side: Debian's Celery worker and ccworker over identical pre-published loads, on this
machine, with the same RabbitMQ and result store (FerretDB over PostgreSQL). `make bench-compare`.

For each load and each worker: purge the queue, publish N tasks with Celery's own client (no worker
running), start the worker, and time from its process start to the last result stored (results on:
the newest date_done) or, results off, to RabbitMQ reporting the queue empty with nothing unacked
(polled with rabbitmqctl: up to ~1 s late, which favours the slower workers). Each worker gets a
fresh database.
Writes a markdown table and an SVG bar chart into bench/README.md between the markers
<!-- compare:begin --> and <!-- compare:end -->, and the raw rows to bench/out/compare.jsonl.

usage: /usr/bin/python3 scripts/bench_compare.py [--quick]
"""
import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = '/usr/bin/python3'
CLIENT = os.path.join(ROOT, 'scripts', 'celery_client.py')
BROKER = 'amqp://guest:guest@127.0.0.1:5672//'
MONGO = 'mongodb://127.0.0.1:27017/'
QUEUE = 'ccw_compare'

# (label, task, args, n, results)
LOADS = [
    ('noop, results off', 'ccworker.noop', [], 20000, False),
    ('noop, results on', 'ccworker.noop', [], 3000, True),
    ('sleep(0.01), results off', 'ccworker.sleep', [0.01], 5000, False),
    ('sleep(0.01), results on', 'ccworker.sleep', [0.01], 3000, True),
]

WORKERS = [
    ('Celery -P prefork -c 2', 'celery', ['-P', 'prefork', '-c', '2']),
    ('Celery -P gevent -c 512', 'celery', ['-P', 'gevent', '-c', '512']),
    ('ccworker -c 512', 'ccworker', ['-c', '512']),
]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def client(db, *args):
    out = run([PY, CLIENT, '--broker', BROKER, '--backend', MONGO, '--database', db,
               '--queue', QUEUE, *args]).stdout
    return json.loads(out.strip().splitlines()[-1])


def drop(db):
    run([PY, '-c', 'import sys, pymongo; pymongo.MongoClient(sys.argv[1]).drop_database(sys.argv[2])', MONGO, db])


def start_worker(kind, flags, db, results, log):
    if kind == 'ccworker':
        cmd = [os.path.join(ROOT, 'bin', 'ccworker'), '-b', BROKER, '-Q', QUEUE, '-l', 'WARNING',
               '-n', 'compare@%h', '--without-heartbeat', '--builtin-tasks', *flags]
        if results:
            cmd += ['--result-backend', MONGO + db]
        env = os.environ.copy()
    else:
        cmd = [PY, '-m', 'celery', '-A', 'ccworker_tasks', 'worker', '-Q', QUEUE, '-l', 'WARNING',
               '-n', 'compare@%h', '--without-gossip', '--without-mingle', '--without-heartbeat', *flags]
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'scripts', 'celeryapp'), CCW_BROKER=BROKER,
                   CCW_BACKEND=MONGO if results else '', CCW_DATABASE=db)
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)


def stop_worker(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def measure(label, task, args, n, results, wname, kind, flags):
    db = f'ccw_compare_{int(time.time())}'
    subprocess.run([os.path.join(ROOT, 'scripts', 'rmq.sh'), '-q', 'purge_queue', QUEUE], capture_output=True)
    ids = f'/tmp/ccw_compare_ids_{os.getpid()}'
    extra = [] if results else ['--ignore-result']
    client(db, 'load', '--task', task, '--args', json.dumps(args), '--n', str(n), '--publish-only',
           '--ids-file', ids, *extra)
    with open(f'/tmp/ccw_compare_{kind}.log', 'w') as log:
        t0 = time.time()
        p = start_worker(kind, flags, db, results, log)
        try:
            waiter = ['wait', '--ids-file', ids, '--quiet'] if results else ['drain', '--n', str(n), '--quiet']
            s = client(db, *waiter, '--t0', str(t0), '--timeout', '900')
        finally:
            stop_worker(p)
    drop(db)
    row = {'load': label, 'worker': wname, 'n': n, 'tasks_per_s': s.get('done_per_s'),
           'elapsed_s': s.get('elapsed_s'), 'all_done': s.get('all_done')}
    print(json.dumps(row), flush=True)
    return row


def svg_chart(rows):
    """A grouped horizontal bar chart, log-scaled (the workers differ by orders of magnitude)."""
    import math
    loads = [l[0] for l in LOADS]
    workers = [w[0] for w in WORKERS]
    colors = ['#9aa5b1', '#c9a227', '#2b7a78']
    bar, gap, left, width = 14, 12, 190, 520
    top = 40
    vmax = max((r['tasks_per_s'] or 1) for r in rows)
    scale = lambda v: width * math.log10(max(v, 1)) / math.log10(vmax * 1.5)
    h = top + len(loads) * (len(workers) * bar + gap) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<text x="{left}" y="20" font-weight="bold">tasks/s (log scale), higher is better</text>']
    y = top
    for load in loads:
        out.append(f'<text x="{left - 8}" y="{y + bar * len(workers) / 2 + 4}" text-anchor="end">{load}</text>')
        for i, w in enumerate(workers):
            r = next((r for r in rows if r['load'] == load and r['worker'] == w), None)
            v = (r or {}).get('tasks_per_s') or 0
            out.append(f'<rect x="{left}" y="{y}" width="{scale(v):.1f}" height="{bar - 2}" fill="{colors[i]}"/>')
            out.append(f'<text x="{left + scale(v) + 4:.1f}" y="{y + bar - 4}">{v:,.0f}</text>')
            y += bar
        y += gap
    for i, w in enumerate(workers):
        out.append(f'<rect x="{left + i * 180}" y="{h - 24}" width="12" height="12" fill="{colors[i]}"/>'
                   f'<text x="{left + i * 180 + 16}" y="{h - 14}">{w}</text>')
    out.append('</svg>')
    return '\n'.join(out)


def write_readme(rows, commands):
    path = os.path.join(ROOT, 'bench', 'README.md')
    with open(path) as f:
        text = f.read()
    svg_path = os.path.join(ROOT, 'bench', 'compare.svg')
    with open(svg_path, 'w') as f:
        f.write(svg_chart(rows))
    workers = [w[0] for w in WORKERS]
    lines = ['<!-- compare:begin -->',
             f'Measured {datetime.date.today().isoformat()} on {platform.node()} '
             f'({os.cpu_count()} CPUs, {platform.system()} {platform.release()}) with `make bench-compare`.',
             '', '| load | ' + ' | '.join(workers) + ' | ccworker vs best Celery |',
             '|---|' + '---|' * (len(workers) + 1)]
    for load in [l[0] for l in LOADS]:
        vals = []
        for w in workers:
            r = next((r for r in rows if r['load'] == load and r['worker'] == w), None)
            vals.append((r or {}).get('tasks_per_s') or 0)
        n = next(r['n'] for r in rows if r['load'] == load)
        best = max(vals[:-1]) or 1
        lines.append(f'| {n:,} x {load} | ' + ' | '.join(f'{v:,.0f}' for v in vals) + f' | {vals[-1] / best:.1f}x |')
    lines += ['', '![tasks/s by worker](compare.svg)', '', 'Commands:', '', '```']
    lines += commands + ['```', '<!-- compare:end -->']
    block = '\n'.join(lines)
    if '<!-- compare:begin -->' in text:
        a = text.index('<!-- compare:begin -->')
        b = text.index('<!-- compare:end -->') + len('<!-- compare:end -->')
        text = text[:a] + block + text[b:]
    else:
        text += '\n## Side by side with Celery\n\n' + block + '\n'
    with open(path, 'w') as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='a tenth of the loads (a smoke test)')
    a = ap.parse_args()
    os.makedirs(os.path.join(ROOT, 'bench', 'out'), exist_ok=True)
    rows, commands = [], []
    for label, task, args, n, results in LOADS:
        if a.quick:
            n = max(n // 10, 100)
        for wname, kind, flags in WORKERS:
            rows.append(measure(label, task, args, n, results, wname, kind, flags))
    for wname, kind, flags in WORKERS:
        if kind == 'ccworker':
            commands.append('bin/ccworker -b $BROKER -Q ccw_compare -l WARNING --without-heartbeat --builtin-tasks '
                            '[--result-backend mongodb://127.0.0.1:27017/$DB] ' + ' '.join(flags))
        else:
            commands.append('celery -A ccworker_tasks worker -Q ccw_compare -l WARNING --without-gossip '
                            '--without-mingle --without-heartbeat ' + ' '.join(flags))
    commands.append('# loads: scripts/celery_client.py load --publish-only (Celery 5.2.6 client), then wait/drain')
    with open(os.path.join(ROOT, 'bench', 'out', 'compare.jsonl'), 'a') as f:
        for r in rows:
            f.write(json.dumps(r) + '\n')
    if not a.quick:
        write_readme(rows, commands)
    return 0 if all(r['all_done'] for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
