#!/usr/bin/python3
"""Celery client for ccworker's demo and interop tests (run with Debian's /usr/bin/python3:
Celery 5.2.6, kombu 5.2.4, pymongo 3.11).

It builds a Celery app in code from the flags (no celeryconfig module) and sends tasks by name, so it
works the same against ccworker and against a real `celery worker`.

usage:
  celery_client.py [app flags] call TASK [--args JSON] [--kwargs JSON] [--timeout S] [--countdown S] [--expires S]
                                         [--expect-exc NAME]
  celery_client.py [app flags] load --task ccworker.noop|ccworker.sleep|ccworker.add --n N [--args JSON]
                                    [--ignore-result] [--publish-only] [--ids-file F] [--timeout S]
  celery_client.py [app flags] wait --ids-file F [--timeout S]

app flags: --broker URL (amqp://guest:guest@127.0.0.1:5672//)  --backend URL (mongodb://127.0.0.1:27017/)
           --database NAME  --collection NAME   (mongodb_backend_settings; Celery's defaults: the URL's
           database or 'celery', collection 'celery_taskmeta')  --queue NAME (remote)
           --serializer json|msgpack|yaml  --protocol 1|2  --result-extended  --compression zlib|bzip2|...

call   sends one task (app.send_task(TASK, args, kwargs, queue=...)) and waits with AsyncResult.get().
       Prints ONE JSON line {"id", "state", "result", "exc_type", "exc_module", "exc_message",
       "traceback"} (result on success; exc_* = the raised exception's class __name__, __module__ and
       args on failure). Exit 0 when the task completed (success or a task exception; with
       --expect-exc NAME: only when it failed with exception class NAME, else 1), 2 on timeout or any
       other error.

load   publishes N tasks over one producer/connection, then waits until all are done:
       - results on: every 0.2 s one find_one by _id (cheap on FerretDB, which scans the whole
         collection for an $in query) on the most recently published pending id; once that one is
         final, all pending ids are checked with find({'_id': {'$in': <=1000 ids}, 'status': {'$in':
         [SUCCESS, FAILURE, REVOKED]}}); repeat until none is pending. Then 20 random ids are checked
         with a real AsyncResult(id).get(timeout=10), and every stored status must be SUCCESS.
         The end time is the newest stored date_done (when the worker stored the last result).
       - --ignore-result (Celery's per-message ignore_result header; protocol 2 only, protocol 1
         messages cannot carry it): polls queue_declare(passive=True).message_count every 0.05 s
         until 0, then `scripts/rmq.sh -q list_queues name messages_unacknowledged` until the
         queue's unacked count is 0 (rabbitmqctl is a ~1 s Erlang start-up per call, so done_per_s is
         conservative by up to ~1 s; queue_empty_s, when the last message was handed out, is printed
         too).
       Prints one JSON summary line {"task", "n", "published_per_s", "done_per_s", "elapsed_s",
       "all_done", "sample_ok", ...}; done_per_s = N / (time from the first publish to the last result
       stored / queue drained). Exit 1 if not all done within --timeout (default 300 s) or a stored
       status is not SUCCESS or the sample check failed.

wait   waits for the ids in --ids-file (one per line) like `load` does with results on; prints the
       summary.
"""
import argparse
import datetime
import json
import os
import random
import subprocess
import sys
import time

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeoutError

FINAL_STATES = ['SUCCESS', 'FAILURE', 'REVOKED']
CHUNK = 1000
POLL_S = 0.2
SAMPLE = 20
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARGS = {'ccworker.noop': [], 'ccworker.add': [1, 2], 'ccworker.sleep': [0.01]}


def make_app(a):
    """The Celery app, configured from the command-line flags."""
    app = Celery('ccworker_client')
    settings = {}
    if a.database:
        settings['database'] = a.database
    if a.collection:
        settings['taskmeta_collection'] = a.collection
    conf = dict(
        broker_url=a.broker,
        result_backend=a.backend,
        task_serializer=a.serializer,
        result_serializer=a.result_serializer,
        accept_content=['json', 'msgpack', 'yaml'],
        result_accept_content=['json', 'msgpack', 'yaml'],
        task_protocol=a.protocol,
        result_extended=a.result_extended,
        task_default_queue=a.queue,
        broker_connection_retry_on_startup=False,
    )
    if settings:
        conf['mongodb_backend_settings'] = settings
    if a.compression:
        conf['task_compression'] = a.compression
    app.conf.update(conf)
    return app


def emit(obj):
    print(json.dumps(obj, default=repr), flush=True)


# ------------------------------------------------------------------ call
def cmd_call(app, a):
    out = {'id': None, 'state': None, 'result': None, 'exc_type': None, 'exc_module': None,
           'exc_message': None, 'traceback': None}
    try:
        r = app.send_task(a.task, args=json.loads(a.args), kwargs=json.loads(a.kwargs),
                          queue=a.queue, countdown=a.countdown, expires=a.expires,
                          time_limit=a.time_limit, soft_time_limit=a.soft_time_limit,
                          headers=json.loads(a.headers) if a.headers else None)
        out['id'] = r.id
        try:
            out['result'] = r.get(timeout=a.timeout, propagate=True)
            out['state'] = r.state
        except CeleryTimeoutError:
            out['state'] = r.state
            out['error'] = f'timeout after {a.timeout} s'
            emit(out)
            return 2
        except Exception as e:  # the task's exception, rebuilt by Celery from the stored document
            state = r.state
            if state not in ('FAILURE', 'REVOKED'):
                raise
            out.update(state=state, exc_type=type(e).__name__, exc_module=type(e).__module__,
                       exc_message=list(e.args), traceback=r.traceback)
    except Exception as e:  # broker/backend/usage errors
        out['error'] = f'{type(e).__name__}: {e}'
        emit(out)
        return 2
    emit(out)
    if a.expect_exc:
        return 0 if out['exc_type'] == a.expect_exc else 1
    return 0


# ------------------------------------------------------------------ waiting for results
def parse_date_done(v):
    """date_done as epoch seconds (Celery 5.2.6 stores a naive-UTC ISO string; datetimes accepted)."""
    try:
        d = v if isinstance(v, datetime.datetime) else datetime.datetime.fromisoformat(str(v).replace('Z', '+00:00'))
    except (TypeError, ValueError):
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    return d.timestamp()


class Progress:
    """A progress line on stderr for long waits: a bar with rate and ETA redrawn in place on a
    terminal, a plain line every 2 s otherwise (log files, CI). Silent with --quiet."""

    def __init__(self, total, t0, enabled=True):
        self.total, self.t0, self.enabled = total, t0, enabled and total >= 100
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def update(self, done, final=False):
        if not self.enabled:
            return
        now = time.time()
        if not final and now - self.last < (0.2 if self.tty else 2.0):
            return
        self.last = now
        elapsed = max(now - self.t0, 1e-6)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else float('inf')
        frac = min(done / self.total, 1.0)
        text = (f'{done:,}/{self.total:,} ({frac:4.0%})  {rate:,.0f} tasks/s  '
                f'elapsed {elapsed:.1f}s  ETA {eta:.1f}s' if eta != float('inf') else
                f'{done:,}/{self.total:,} ({frac:4.0%})  elapsed {elapsed:.1f}s')
        if self.tty:
            bar = '#' * int(frac * 30)
            sys.stderr.write(f'\r[{bar:<30}] {text}\033[K' + ('\n' if final else ''))
        else:
            sys.stderr.write(text + '\n')
        sys.stderr.flush()


def wait_results(app, ids, deadline, progress=None):
    """Poll MongoDB until every id has a final document or the deadline passes.

    Each poll is one cheap find_one by _id (FerretDB serves _id equality from its index, while an
    $in query scans the whole collection: ~0.2 s at 1 500 documents) on the most recently published
    pending id; only when that one is final are all pending ids checked with $in queries of <= 1000
    ids. Returns (t_done or None, t_seen or None, statuses {id: status} of the ids seen final), where t_done is the
    newest date_done of the documents (the worker's clock: when the last result was stored) or, if
    date_done cannot be parsed, the time the last document was seen."""
    col = app.backend.collection
    pending = list(ids)
    statuses = {}
    newest = None
    while True:
        if progress:
            progress.update(min(col.estimated_document_count(), len(ids)))
        if col.find_one({'_id': pending[-1], 'status': {'$in': FINAL_STATES}}, {'_id': 1}) is not None:
            for i in range(0, len(pending), CHUNK):
                chunk = pending[i:i + CHUNK]
                for doc in col.find({'_id': {'$in': chunk}, 'status': {'$in': FINAL_STATES}},
                                    {'status': 1, 'date_done': 1}):
                    statuses[doc['_id']] = doc['status']
                    t = parse_date_done(doc.get('date_done'))
                    if t is not None and (newest is None or t > newest):
                        newest = t
            pending = [i for i in pending if i not in statuses]
            if not pending:
                seen = time.time()
                if progress:
                    progress.update(len(ids), final=True)
                return (newest if newest is not None and newest <= seen + 1 else seen), seen, statuses
        if time.time() > deadline:
            return None, None, statuses
        time.sleep(POLL_S)


def sample_check(app, ids):
    """AsyncResult(id).get() on a random sample: the documents must decode as Celery results."""
    ok = True
    for i in random.sample(ids, min(SAMPLE, len(ids))):
        try:
            app.AsyncResult(i).get(timeout=10, propagate=True)
        except Exception as e:
            print(f'celery_client: sample {i}: {type(e).__name__}: {e}', file=sys.stderr)
            ok = False
    return ok


def unacked(queue):
    """messages_unacknowledged of queue via rabbitmqctl (None if it cannot be read)."""
    try:
        out = subprocess.run([os.path.join(HERE, 'rmq.sh'), '-q', 'list_queues', 'name',
                              'messages_unacknowledged'], capture_output=True, text=True, timeout=60).stdout
    except Exception:
        return None
    for line in out.splitlines():
        f = line.split('\t')
        if len(f) == 2 and f[0] == queue and f[1].strip().isdigit():
            return int(f[1])
    return None


def wait_drained(app, queue, deadline, progress=None):
    """--ignore-result: wait until the queue has no ready and no unacked messages."""
    t_empty = None
    with app.connection_for_write() as conn:
        ch = conn.default_channel
        while time.time() < deadline:
            left = ch.queue_declare(queue=queue, passive=True).message_count
            if progress:
                progress.update(max(progress.total - left, 0), final=left == 0)
            if left == 0:
                t_empty = time.time()
                break
            time.sleep(0.05)
    if t_empty is None:
        return None, None
    while time.time() < deadline:
        if unacked(queue) == 0:
            return t_empty, time.time()
        time.sleep(0.1)
    return t_empty, None


def summary(task, n, t0, t_pub, t_done, all_done, sample_ok, **extra):
    s = {'task': task, 'n': n,
         'published_per_s': round(n / (t_pub - t0), 1) if t_pub and t_pub > t0 else None,
         'done_per_s': round(n / (t_done - t0), 1) if t_done else None,
         'elapsed_s': round((t_done or time.time()) - t0, 3),
         'all_done': all_done, 'sample_ok': sample_ok}
    s.update(extra)
    return s


# ------------------------------------------------------------------ load / wait
def cmd_load(app, a):
    args = json.loads(a.args) if a.args is not None else DEFAULT_ARGS.get(a.task, [])
    options = {'ignore_result': True} if a.ignore_result else {}
    ids = []
    t0 = time.time()
    with app.producer_or_acquire() as producer:
        for _ in range(a.n):
            ids.append(app.send_task(a.task, args=args, queue=a.queue, producer=producer, **options).id)
        # A synchronous round trip on the publishing channel: the broker answers it only
        # after the publishes before it. Without it the last messages could still be in
        # the sockets when the process exits, and closing a socket with unread data
        # resets it: the broker then drops them (77-104 of a load were seen missing).
        producer.channel.queue_declare(queue=a.queue, passive=True)
    t_pub = time.time()
    if a.ids_file:
        with open(a.ids_file, 'w') as f:
            f.write('\n'.join(ids) + '\n')
    if a.publish_only:
        emit(summary(a.task, a.n, t0, t_pub, None, None, None, published_s=round(t_pub - t0, 3)))
        return 0
    deadline = t0 + a.timeout
    if a.ignore_result:
        t_empty, t_done = wait_drained(app, a.queue, deadline)
        emit(summary(a.task, a.n, t0, t_pub, t_done, t_done is not None, None, results=False,
                     queue_empty_s=round(t_empty - t0, 3) if t_empty else None))
        return 0 if t_done else 1
    return finish_results(app, a.task, ids, t0, t_pub, deadline)


def finish_results(app, task, ids, t0, t_pub, deadline, progress=None):
    t_done, t_seen, statuses = wait_results(app, ids, deadline, progress)
    all_done = t_done is not None
    bad = {s: 0 for s in FINAL_STATES if s != 'SUCCESS'}
    for s in statuses.values():
        if s != 'SUCCESS':
            bad[s] = bad.get(s, 0) + 1
    sample_ok = sample_check(app, ids) if all_done else False
    emit(summary(task, len(ids), t0, t_pub, t_done, all_done, sample_ok, results=True,
                 seen_s=round(t_seen - t0, 3) if t_seen else None,
                 missing=len(ids) - len(statuses), not_success=sum(bad.values())))
    return 0 if all_done and sample_ok and not sum(bad.values()) else 1


def cmd_drain(app, a):
    """Wait until --queue has no ready and no unacked messages (tasks published earlier with
    ignore_result); the rate is --n over the time from this call to the queue being empty."""
    # The end is when RabbitMQ confirms no message is unacked any more, not when the queue
    # is empty: a worker with a large prefetch empties the queue long before it has run
    # the tasks. rabbitmqctl answers in ~0.3-1 s, so the end is late by up to that much.
    t0 = a.t0 or time.time()
    t_empty, t_done = wait_drained(app, a.queue, t0 + a.timeout, Progress(a.n, t0, not a.quiet))
    emit(summary(a.task, a.n, t0, None, t_done, t_done is not None, None, results=False,
                 queue_empty_s=round(t_empty - t0, 3) if t_empty else None))
    return 0 if t_done else 1


def cmd_wait(app, a):
    with open(a.ids_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    t0 = a.t0 or time.time()
    return finish_results(app, None, ids, t0, None, t0 + a.timeout, Progress(len(ids), t0, not a.quiet))


# ------------------------------------------------------------------ main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--broker', default='amqp://guest:guest@127.0.0.1:5672//')
    p.add_argument('--backend', default='mongodb://127.0.0.1:27017/')
    p.add_argument('--database', help="mongodb_backend_settings['database']")
    p.add_argument('--collection', help="mongodb_backend_settings['taskmeta_collection']")
    p.add_argument('--queue', default='remote')
    p.add_argument('--serializer', default='json', choices=['json', 'msgpack', 'yaml'])
    p.add_argument('--result-serializer', default='json', choices=['json', 'msgpack', 'yaml'],
                   help='how results are stored (must match the worker; Celery default json)')
    p.add_argument('--protocol', type=int, default=2, choices=[1, 2])
    p.add_argument('--result-extended', action='store_true')
    p.add_argument('--compression', help='task_compression: zlib, bzip2, ...')
    sub = p.add_subparsers(dest='cmd', required=True)

    c = sub.add_parser('call', help='send one task and wait for its result')
    c.add_argument('task')
    c.add_argument('--args', default='[]')
    c.add_argument('--kwargs', default='{}')
    c.add_argument('--timeout', type=float, default=30)
    c.add_argument('--countdown', type=float)
    c.add_argument('--expires', type=float, help='seconds from now')
    c.add_argument('--time-limit', type=lambda v: int(v) if v.isdigit() else float(v), help='hard time limit (s), sent in the message')
    c.add_argument('--headers', help='JSON object of extra message headers (apply_async(headers=...))')
    c.add_argument('--soft-time-limit', type=float, help='soft time limit (s), sent in the message')
    c.add_argument('--expect-exc', help='exit 0 only if the task raised this exception class')

    ld = sub.add_parser('load', help='publish N tasks and wait until all are done')
    ld.add_argument('--task', required=True)
    ld.add_argument('--n', type=int, required=True)
    ld.add_argument('--args', help='JSON list (default: [] noop, [1, 2] add, [0.01] sleep)')
    ld.add_argument('--ignore-result', action='store_true')
    ld.add_argument('--publish-only', action='store_true')
    ld.add_argument('--ids-file')
    ld.add_argument('--timeout', type=float, default=300)

    dr = sub.add_parser('drain', help='wait until the queue is empty and nothing is unacked')
    dr.add_argument('--n', type=int, required=True, help='how many tasks were published (for the rate)')
    dr.add_argument('--task', default=None)
    dr.add_argument('--timeout', type=float, default=300)
    dr.add_argument('--t0', type=float, help='epoch seconds the clock starts at (default: now)')
    dr.add_argument('--quiet', action='store_true', help='no progress line on stderr')

    w = sub.add_parser('wait', help='wait for the final documents of the ids in --ids-file')
    w.add_argument('--ids-file', required=True)
    w.add_argument('--timeout', type=float, default=300)
    w.add_argument('--t0', type=float, help='epoch seconds the clock starts at (default: now)')
    w.add_argument('--quiet', action='store_true', help='no progress line on stderr')

    a = p.parse_args(argv)
    app = make_app(a)
    return {'call': cmd_call, 'load': cmd_load, 'wait': cmd_wait, 'drain': cmd_drain}[a.cmd](app, a)


if __name__ == '__main__':
    sys.exit(main())
