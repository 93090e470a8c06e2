"""A Celery 5.5+ app on a quorum queue with native delayed delivery: ccworker's quorum
interop tests use it as the client and as a Celery worker beside ccworker.

Configured from the environment: QQ_BROKER, QQ_BACKEND, QQ_DB, QQ_COLLECTION, QQ_QUEUE (the
queue, its topic exchange and routing key share the name) and QQ_MARKS (a file to which each
execution of qq.mark appends one line: "<tag> celery").

    python3 quorum_app.py send N MIN MAX     # N qq.mark tasks with countdowns MIN..MAX s
    python3 quorum_app.py chord N            # a chord of N ccworker.add, body ccworker.echo
    python3 quorum_app.py flaky N COUNTDOWN  # ccworker.flaky(N, countdown=COUNTDOWN)
    python3 -m celery -A quorum_app worker ...

Each client command prints one JSON line: the ids sent, or the chord's result.
"""
import json
import os
import sys

from celery import Celery, chord
from kombu import Exchange, Queue

QUEUE = os.environ['QQ_QUEUE']

app = Celery('quorum_app')
app.conf.update(
    broker_url=os.environ['QQ_BROKER'],
    result_backend=os.environ['QQ_BACKEND'],
    mongodb_backend_settings={'database': os.environ['QQ_DB'],
                              'taskmeta_collection': os.environ['QQ_COLLECTION']},
    task_queues=[Queue(QUEUE, Exchange(QUEUE, type='topic'), routing_key=QUEUE,
                       queue_arguments={'x-queue-type': 'quorum'})],
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_exchange_type='topic',
    task_default_routing_key=QUEUE,
    task_serializer='json',
    result_serializer='json',
    accept_content=['json'],
    broker_connection_retry_on_startup=True,
    # Confirmed publishes: without them the last messages of a client that exits at once
    # can be lost (seen with Celery's own worker as with ccworker).
    broker_transport_options={'confirm_publish': True},
    worker_hijack_root_logger=False,
)


@app.task(name='qq.mark')
def mark(tag):
    fd = os.open(os.environ['QQ_MARKS'], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f'{tag} celery\n'.encode())
    finally:
        os.close(fd)
    return 'celery'


@app.task(name='ccworker.add')
def add(x, y):
    return x + y


@app.task(name='ccworker.echo')
def echo(*args, **kwargs):
    return {'args': list(args), 'kwargs': kwargs}


@app.task(name='ccworker.flaky')
def flaky(n, countdown=0):
    raise RuntimeError('runs on ccworker only')


def main():
    cmd = sys.argv[1]
    if cmd == 'send':
        n, lo, hi = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        ids = []
        for i in range(n):
            tag = f'm{i}'
            r = mark.apply_async((tag,), countdown=lo + (i % (hi - lo + 1)))
            ids.append([tag, r.id])
        print(json.dumps(ids))
    elif cmd == 'chord':
        n = int(sys.argv[2])
        r = chord([add.s(i, i) for i in range(n)], echo.s()).apply_async()
        print(json.dumps({'id': r.id, 'result': r.get(timeout=60)}))
    elif cmd == 'flaky':
        r = flaky.apply_async((int(sys.argv[2]),), {'countdown': float(sys.argv[3])})
        print(json.dumps({'id': r.id, 'result': r.get(timeout=60)}))
    else:
        sys.exit(f'unknown command {cmd!r}')


if __name__ == '__main__':
    main()
