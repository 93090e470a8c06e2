#!/usr/bin/python3
"""Side-by-side: Debian's Celery worker and ccworker over identical pre-published loads, on this
machine, with the same RabbitMQ and result store (FerretDB over PostgreSQL). `make bench-compare`.

For each repetition, load and worker: purge the queue, publish the worker's load with Celery's own
client (no worker running), start the worker, and measure:

- the clock (scripts/queue_monitor.sh, a read-only loop inside the RabbitMQ node polling the queue
  every ~10 ms): from the first message leaving the queue to the last ack (ready = 0 and
  unacked = 0). Results on, the end is the newest stored date_done when that is later (Celery acks
  before it runs a task by default). The monitor reports how late its end can be (the last poll
  interval: "end late ≤ ms"). Start-up (process start to first message taken) is reported
  apart and is not in tasks/s or CPU.
- CPU seconds per 1,000 tasks over that window, from /proc/<pid>/stat (utime+stime, plus
  cutime+cstime for children already reaped), sampled every 0.1 s and interpolated at the window's
  ends, for three groups: the worker's whole process tree (Celery's master and pool children),
  RabbitMQ (the beam.smp serving 127.0.0.1:5672 and its children) and the store (the ferretdb
  serving :27017 and the PostgreSQL postmaster serving :5432, with their children). The broker and the store are shared: other work on the machine is counted too.
- peak RSS: the highest sum of VmRSS over the worker's process tree (sampled every 0.1 s; pages
  shared between Celery's processes count once per process).

Loads are sized per worker (each figure from at least MIN_WINDOW_S of the worker's own work; rows
under it are flagged) and scaled by --size-scale. Figures are medians of --reps repetitions.
Writes a markdown table and an SVG chart into bench/README.md between the markers
<!-- compare:begin --> and <!-- compare:end -->, and the raw rows to bench/out/compare.jsonl.

usage: /usr/bin/python3 scripts/bench_compare.py [--quick] [--reps N] [--size-scale F]
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = '/usr/bin/python3'
CLIENT = os.path.join(ROOT, 'scripts', 'celery_client.py')
MONITOR = os.path.join(ROOT, 'scripts', 'queue_monitor.sh')
BROKER = 'amqp://guest:guest@127.0.0.1:5672//'
MONGO = 'mongodb://127.0.0.1:27017/'
QUEUE = 'ccw_compare'
MIN_WINDOW_S = 15
CLK = os.sysconf('SC_CLK_TCK')
PAGE = os.sysconf('SC_PAGE_SIZE')

WORKERS = [
    ('Celery -P prefork -c 2', 'celery', ['-P', 'prefork', '-c', '2']),
    ('Celery -P gevent -c 512', 'celery', ['-P', 'gevent', '-c', '512']),
    ('ccworker -c 512', 'ccworker', ['-c', '512']),
]

# (label, task, args, results, {worker: n}): n sized for ~20 s of each worker's work on a quiet
# 2-core machine (the tasks/s of the 2026-11-26 run times 20).
LOADS = [
    ('noop, results off', 'ccworker.noop', [], False, [50000, 10000, 250000]),
    ('noop, results on', 'ccworker.noop', [], True, [12000, 3000, 130000]),
    ('sleep(0.01), results off', 'ccworker.sleep', [0.01], False, [4000, 9000, 250000]),
    ('sleep(0.01), results on', 'ccworker.sleep', [0.01], True, [3000, 3000, 120000]),
]
QUICK_DIVISOR = 100


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def client(db, *args):
    out = run([PY, CLIENT, '--broker', BROKER, '--backend', MONGO, '--database', db,
               '--queue', QUEUE, *args]).stdout
    return json.loads(out.strip().splitlines()[-1])


def drop(db):
    run([PY, '-c', 'import sys, pymongo; pymongo.MongoClient(sys.argv[1]).drop_database(sys.argv[2])', MONGO, db])


def purge():
    """Empty the queue if it exists, once no consumer of an earlier run is left on it (a
    worker still consuming would take part of the next load: its tasks would be missing
    from the next worker's results). kombu: no rabbitmqctl start-up per run."""
    import kombu
    deadline = time.time() + 60
    with kombu.Connection(BROKER) as conn:
        ch = conn.default_channel
        try:
            while ch.queue_declare(QUEUE, passive=True).consumer_count > 0:
                if time.time() > deadline:
                    raise RuntimeError('a consumer of an earlier run is still on the queue')
                time.sleep(0.2)
        except RuntimeError:
            raise
        except Exception:  # noqa: BLE001 - not declared yet: nothing to purge
            return
        conn.default_channel.queue_purge(QUEUE)


# ------------------------------------------------------------------ /proc accounting
def proc_stat(pid):
    """(ppid, cpu seconds incl. reaped children, rss bytes) of pid, or None if it is gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            s = f.read()
    except OSError:
        return None
    f = s[s.rindex(')') + 2:].split()
    # fields after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21)
    return int(f[1]), sum(int(x) for x in f[11:15]) / CLK, int(f[21]) * PAGE


def all_pids():
    return [int(p) for p in os.listdir('/proc') if p.isdigit()]


def tree(root, pids):
    """root and its descendants among pids."""
    kids = {}
    for p in pids:
        st = proc_stat(p)
        if st:
            kids.setdefault(st[0], []).append(p)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def listener_pid(port):
    """The pid listening on 127.0.0.1:port (ss -ltnp), or None."""
    out = subprocess.run(['ss', '-ltnpH', f'sport = :{port}'], capture_output=True, text=True).stdout
    for part in out.split('pid=')[1:]:
        return int(part.split(',')[0])
    return None


class Sampler(threading.Thread):
    """Samples cumulative CPU seconds of the worker tree, the broker and the store every 0.1 s,
    and the worker tree's RSS. Group membership is refreshed every second."""

    def __init__(self):
        super().__init__(daemon=True)
        self.worker_pid = None
        self.beam = listener_pid(5672)
        # the store serving this benchmark only (other PostgreSQL or FerretDB instances on the
        # machine come and go with other work)
        self.store = [p for p in (listener_pid(27017), listener_pid(5432)) if p]
        self.samples = []  # (t, worker_cpu, broker_cpu, store_cpu)
        self.peak_rss = 0
        self.stop_ev = threading.Event()
        self.refresh()
        self.sample()  # the baseline, just before the worker starts (its CPU is 0 then)

    def follow(self, worker_pid):
        self.worker_pid = worker_pid
        self.start()

    def refresh(self):
        pids = all_pids()
        store = [q for p in self.store for q in tree(p, pids)]
        self.groups = {'worker': tree(self.worker_pid, pids) if self.worker_pid else [],
                       'broker': tree(self.beam, pids) if self.beam else [], 'store': store}

    def sample(self):
        t = time.time()
        vals, rss = {}, 0
        for g, pids in self.groups.items():
            total = 0.0
            for p in pids:
                st = proc_stat(p)
                if st:
                    total += st[1]
                    if g == 'worker':
                        rss += st[2]
            vals[g] = total
        self.peak_rss = max(self.peak_rss, rss)
        self.samples.append((t, vals['worker'], vals['broker'], vals['store']))

    def run(self):
        last = 0
        while not self.stop_ev.is_set():
            if time.time() - last > 1:
                self.refresh()
                last = time.time()
            self.sample()
            self.stop_ev.wait(0.1)

    def stop(self):
        self.stop_ev.set()
        self.join()

    def at(self, t):
        """Cumulative CPU of each group at time t (linear between the samples around it).
        A group whose membership changed between two samples can step; the window's ends are
        far from the moments the tree changes (start-up, shutdown)."""
        s = self.samples
        for a, b in zip(s, s[1:]):
            if a[0] <= t <= b[0]:
                w = (t - a[0]) / (b[0] - a[0]) if b[0] > a[0] else 0
                return [a[i] + w * (b[i] - a[i]) for i in (1, 2, 3)]
        return list((s[-1] if t > s[-1][0] else s[0])[1:])


# ------------------------------------------------------------------ one run
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
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


MONITOR_READY = f'/tmp/ccw_compare_monitor_{os.getpid()}'


def start_monitor(timeout):
    if os.path.exists(MONITOR_READY):
        os.unlink(MONITOR_READY)
    return subprocess.Popen([MONITOR, QUEUE, MONITOR_READY, str(int(timeout))], stdout=subprocess.PIPE, text=True)


def wait_ready(m):
    ready = MONITOR_READY
    deadline = time.time() + 60
    while not os.path.exists(ready):
        if m.poll() is not None or time.time() > deadline:
            raise RuntimeError('queue monitor did not start')
        time.sleep(0.02)
    os.unlink(ready)
    return m


def read_monitor(m):
    out = m.communicate(timeout=60)[0].split()
    if not out or out[0] != 'done':
        raise RuntimeError(f'queue monitor: {out}')
    _, _, started, end, polls, gap, bound = out
    return int(started) / 1e6, int(end) / 1e6, int(bound) / 1e3


def results_end(db, n, deadline):
    """Wait until n documents are stored; return (newest date_done, not-SUCCESS count)."""
    import pymongo
    sys.path.insert(0, os.path.join(ROOT, 'scripts'))
    from celery_client import parse_date_done
    col = pymongo.MongoClient(MONGO)[db]['celery_taskmeta']
    while col.estimated_document_count() < n:
        if time.time() > deadline:
            return None, None
        time.sleep(0.2)
    newest, bad, count = None, 0, 0
    for d in col.find({}, {'status': 1, 'date_done': 1}):
        count += 1
        bad += d.get('status') != 'SUCCESS'
        t = parse_date_done(d.get('date_done'))
        if t is not None and (newest is None or t > newest):
            newest = t
    return newest, bad + max(n - count, 0)


def measure(rep, label, task, args, n, results, wname, kind, flags):
    db = f'ccw_compare_{int(time.time())}'
    purge()
    ids = f'/tmp/ccw_compare_ids_{os.getpid()}'
    extra = [] if results else ['--ignore-result']
    timeout = 120 + n // 20  # a worker slower than 20 tasks/s is broken
    # boots (1-4 s) while the load is published; its clock includes the publishing
    mon = start_monitor(600 + n // 20 + timeout)
    client(db, 'load', '--task', task, '--args', json.dumps(args), '--n', str(n), '--publish-only',
           '--ids-file', ids, *extra)
    wait_ready(mon)
    row = {'rep': rep, 'load': label, 'worker': wname, 'n': n, 'all_done': False}
    with open(f'/tmp/ccw_compare_{kind}.log', 'w') as log:
        sampler = Sampler()
        t_proc = time.time()
        p = start_worker(kind, flags, db, results, log)
        sampler.follow(p.pid)
        try:
            mon.wait(timeout=timeout + 60)
            started, end, gap = read_monitor(mon)
            bad = 0
            if results:
                # Every message is acked here; ccworker acks after the result is durable,
                # Celery before it runs the task: its last results follow within seconds.
                newest, bad = results_end(db, n, time.time() + 180)
                if newest is None:
                    keep = f'/tmp/ccw_compare_missing_{db}.ids'
                    shutil.copy(ids, keep)
                    raise RuntimeError(f'results missing (ids in {keep}, database {db} kept)')
                end = max(end, newest)
            time.sleep(0.15)  # one more CPU sample after the end
        except Exception as e:  # noqa: BLE001 - recorded in the row, the run goes on
            row['error'] = str(e)
            sampler.stop()
            stop_worker(p)
            mon.kill()
            print(json.dumps(row), flush=True)
            return row
        sampler.stop()
        stop_worker(p)
    drop(db)
    c0, c1 = sampler.at(started), sampler.at(end)
    window = end - started
    k = 1000 / n
    row.update(all_done=not bad, lost_or_failed=bad, startup_s=round(started - t_proc, 3),
               window_s=round(window, 3), tasks_per_s=round(n / window, 1), end_late_max_ms=gap,
               cpu_worker_per_1k=round((c1[0] - c0[0]) * k, 4), cpu_broker_per_1k=round((c1[1] - c0[1]) * k, 4),
               cpu_store_per_1k=round((c1[2] - c0[2]) * k, 4), peak_rss_mib=round(sampler.peak_rss / 2**20, 1),
               short=window < MIN_WINDOW_S)
    print(json.dumps(row), flush=True)
    return row


# ------------------------------------------------------------------ report
METRICS = ['tasks_per_s', 'cpu_worker_per_1k', 'cpu_broker_per_1k', 'cpu_store_per_1k', 'peak_rss_mib',
           'window_s', 'startup_s', 'end_late_max_ms']


def medians(rows):
    """{(load, worker): {metric: median, 'n': n, 'reps': k, 'short': any}}."""
    out = {}
    for r in rows:
        if 'error' in r:
            continue
        out.setdefault((r['load'], r['worker']), []).append(r)
    med = {}
    for key, rs in out.items():
        m = {x: statistics.median(r[x] for r in rs) for x in METRICS}
        m.update(n=rs[0]['n'], reps=len(rs), short=any(r['short'] for r in rs),
                 ok=all(r['all_done'] for r in rs))
        med[key] = m
    return med


def svg_chart(med):
    """Three panels per load: tasks/s (log scale), worker CPU s per 1,000 tasks (log scale, the
    broker's and the store's share as thin bars), peak RSS MiB."""
    import math
    loads = [l[0] for l in LOADS]
    workers = [w[0] for w in WORKERS]
    colors = ['#9aa5b1', '#c9a227', '#2b7a78']
    bar, gap, left, pw, pgap = 14, 14, 170, 250, 60
    top = 46
    panels = [('tasks/s (log), higher is better', 'tasks_per_s', True),
              ('worker CPU s / 1k tasks (log), lower is better', 'cpu_worker_per_1k', True),
              ('peak RSS MiB, lower is better', 'peak_rss_mib', False)]
    h = top + len(loads) * (len(workers) * bar + gap) + 40
    wtotal = left + len(panels) * (pw + pgap) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{wtotal}" height="{h}" '
           f'font-family="sans-serif" font-size="11">']
    for pi, (title, key, logscale) in enumerate(panels):
        x0 = left + pi * (pw + pgap)
        vals = [m[key] for m in med.values() if m.get(key)]
        vmax = max(vals or [1])
        vmin = min(vals or [1])
        if logscale:
            lo = math.log10(vmin / 3)
            scale = lambda v, lo=lo, vmax=vmax: pw * (math.log10(max(v, 1e-9)) - lo) / (math.log10(vmax * 1.5) - lo)
        else:
            scale = lambda v, vmax=vmax: pw * v / (vmax * 1.15)
        out.append(f'<text x="{x0}" y="20" font-weight="bold">{title}</text>')
        y = top
        for load in loads:
            if pi == 0:
                out.append(f'<text x="{left - 8}" y="{y + bar * len(workers) / 2 + 4}" text-anchor="end">{load}</text>')
            for i, w in enumerate(workers):
                m = med.get((load, w), {})
                v = m.get(key) or 0
                wd = max(scale(v), 0) if v else 0
                out.append(f'<rect x="{x0}" y="{y}" width="{wd:.1f}" height="{bar - 2}" fill="{colors[i]}"/>')
                label = f'{v:,.0f}' if key != 'cpu_worker_per_1k' else f'{v:.3g}'
                out.append(f'<text x="{x0 + wd + 3:.1f}" y="{y + bar - 4}">{label}</text>')
                y += bar
            y += gap
    for i, w in enumerate(workers):
        out.append(f'<rect x="{left + i * 200}" y="{h - 24}" width="12" height="12" fill="{colors[i]}"/>'
                   f'<text x="{left + i * 200 + 16}" y="{h - 14}">{w}</text>')
    out.append('</svg>')
    return '\n'.join(out)


def table(med):
    workers = [w[0] for w in WORKERS]
    lines = ['| load | worker | tasks | tasks/s | vs best Celery | worker CPU s / 1k | RabbitMQ CPU s / 1k '
             '| store CPU s / 1k | peak RSS MiB | window s | start-up s | end late ≤ ms |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for load in [l[0] for l in LOADS if any(k[0] == l[0] for k in med)]:
        best = max((med.get((load, w), {}).get('tasks_per_s') or 0) for w in workers if not w.startswith('ccworker')) or 1
        for w in workers:
            m = med.get((load, w))
            if not m:
                lines.append(f'| {load} | {w} | – | failed |  |  |  |  |  |  |  |  |')
                continue
            ratio = f'{m["tasks_per_s"] / best:.1f}x' if w.startswith('ccworker') else ''
            flag = ' (short)' if m['short'] else ''
            flag += '' if m['ok'] else ' (LOST/FAILED)'
            lines.append(f'| {load} | {w} | {m["n"]:,} | {m["tasks_per_s"]:,.0f}{flag} | {ratio} '
                         f'| {m["cpu_worker_per_1k"]:.3f} | {m["cpu_broker_per_1k"]:.3f} | {m["cpu_store_per_1k"]:.3f} '
                         f'| {m["peak_rss_mib"]:.0f} | {m["window_s"]:.1f} | {m["startup_s"]:.2f} | {m["end_late_max_ms"]:.0f} |')
    return lines


def write_readme(med, commands, reps, scale):
    path = os.path.join(ROOT, 'bench', 'README.md')
    with open(path) as f:
        text = f.read()
    with open(os.path.join(ROOT, 'bench', 'compare.svg'), 'w') as f:
        f.write(svg_chart(med))
    lines = ['<!-- compare:begin -->',
             f'Measured {datetime.date.today().isoformat()} on {platform.node()} '
             f'({os.cpu_count()} CPUs, {platform.system()} {platform.release()}) with `make bench-compare` '
             f'(medians of {reps}, --size-scale {scale}).', '']
    lines += table(med)
    lines += ['', '![tasks/s, worker CPU per 1,000 tasks and peak RSS by worker](compare.svg)', '', 'Commands:', '', '```']
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


def commands_text():
    cmds = []
    for wname, kind, flags in WORKERS:
        if kind == 'ccworker':
            cmds.append('bin/ccworker -b $BROKER -Q ccw_compare -l WARNING --without-heartbeat --builtin-tasks '
                        '[--result-backend mongodb://127.0.0.1:27017/$DB] ' + ' '.join(flags))
        else:
            cmds.append('celery -A ccworker_tasks worker -Q ccw_compare -l WARNING --without-gossip '
                        '--without-mingle --without-heartbeat ' + ' '.join(flags))
    cmds.append('# loads: scripts/celery_client.py load --publish-only (Celery 5.2.6 client); '
                'clock: scripts/queue_monitor.sh')
    return cmds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true',
                    help=f'a smoke test: one repetition of the noop loads at 1/{QUICK_DIVISOR} size, README untouched')
    ap.add_argument('--reps', type=int, default=3, help='repetitions (figures are medians)')
    ap.add_argument('--size-scale', type=float, default=1.0, help='multiply every load size')
    ap.add_argument('--only', help='run only the loads whose label contains this')
    ap.add_argument('--write', action='store_true', help='write bench/README.md even with --quick')
    a = ap.parse_args()
    os.makedirs(os.path.join(ROOT, 'bench', 'out'), exist_ok=True)
    loads = LOADS
    reps, scale = a.reps, a.size_scale
    if a.quick:
        loads = [l for l in LOADS if l[1] == 'ccworker.noop']
        reps, scale = 1, scale / QUICK_DIVISOR
    if a.only:
        loads = [l for l in loads if a.only in l[0]]
    rows = []
    for rep in range(reps):
        for label, task, args, results, sizes in loads:
            for (wname, kind, flags), n in zip(WORKERS, sizes):
                rows.append(measure(rep, label, task, args, max(int(n * scale), 100), results, wname, kind, flags))
    with open(os.path.join(ROOT, 'bench', 'out', 'compare.jsonl'), 'a') as f:
        for r in rows:
            f.write(json.dumps(dict(r, date=datetime.datetime.now().isoformat(timespec='seconds'),
                                    quick=a.quick)) + '\n')
    med = medians(rows)
    print('\n'.join(table(med)))
    if not a.quick or a.write:
        write_readme(med, commands_text(), reps, scale)
    return 0 if all(r.get('all_done') for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
