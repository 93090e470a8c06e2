"""Regenerate the canvas golden files with Debian's Celery 5.2.6.

    /usr/bin/python3 canvas/testdata/gen.py   (from the module root)

Each scenario publishes a real canvas with apply_async on kombu's memory
transport ("input"), runs Celery's own worker tracer (celery.app.trace) on
that message, and records every message the tracer published ("outputs"), the
result document of the traced task ("meta") and the FAILURE documents written
for other task ids ("failed"). Chord scenarios need MongoDB (FerretDB) on
127.0.0.1:27017.
"""
import json
import os
import queue
import sys

from celery import Celery, chain, chord, group, signature
from celery.app.trace import build_tracer

HERE = os.path.dirname(os.path.abspath(__file__))
QUEUES = ('celery', 'other', 'q2')
HOST = 'w1@host'


def make_app(backend='cache+memory://', **conf):
    app = Celery('gen', broker='memory://', backend=backend)
    app.conf.update(conf)

    @app.task(name='ccworker.add')
    def add(x, y):
        return x + y

    @app.task(name='ccworker.fail')
    def fail(*args):
        raise ValueError('boom')

    app.finalize()
    return app


def drain(app):
    out = []
    with app.connection_for_read() as conn:
        for name in QUEUES:
            q = conn.SimpleQueue(name)
            while True:
                try:
                    m = q.get(timeout=0.05)
                except queue.Empty:
                    break
                m.ack()
                props = dict(m.properties)
                di = props.pop('delivery_info', {})
                for k in ('body_encoding', 'delivery_tag', 'reply_to'):
                    props.pop(k, None)
                out.append({
                    'exchange': di.get('exchange'),
                    'routing_key': di.get('routing_key'),
                    'content_type': m.content_type,
                    'content_encoding': m.content_encoding,
                    'properties': props,
                    'headers': m.headers,
                    'body': m.body.decode(),
                })
            q.close()
    return out


def trace(app, msg, hostname=HOST):
    headers = msg['headers']
    args, kwargs, embed = json.loads(msg['body'])
    task = app.tasks[headers['task']]
    tracer = build_tracer(task.name, task, eager=False, propagate=False,
                          app=app, hostname=hostname)
    request = dict(headers)
    request.update({
        'args': args, 'kwargs': kwargs, 'hostname': hostname,
        'is_eager': False,
        'delivery_info': {'exchange': msg['exchange'],
                          'routing_key': msg['routing_key'],
                          'priority': msg['properties'].get('priority'),
                          'redelivered': False},
    }, **(embed or {}))
    tracer(headers['id'], args, kwargs, request)


def meta(app, task_id):
    m = app.backend.get_task_meta(task_id, cache=False)
    doc = {k: m.get(k) for k in ('status', 'result', 'children')}
    if isinstance(doc['result'], BaseException):
        doc['result'] = app.backend.prepare_exception(doc['result'])
    return doc


def chain_ids(msg):
    _, _, embed = json.loads(msg['body'])
    return [s['options'].get('task_id') for s in (embed or {}).get('chain') or []]


def scenario(name, build, **conf):
    app = make_app(**conf)
    drain(app)
    build(app).apply_async()
    inputs = drain(app)
    assert len(inputs) == 1, inputs
    msg = inputs[0]
    ids = chain_ids(msg)
    trace(app, msg)
    doc = {
        'input': msg,
        'outputs': drain(app),
        'meta': meta(app, msg['headers']['id']),
        'failed': {i: meta(app, i) for i in ids},
    }
    save(name, doc)


def save(name, doc):
    with open(os.path.join(HERE, name + '.json'), 'w') as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write('\n')


def S(app, name, *args, **opts):
    return app.signature(name, args, **opts)


SCENARIOS = {
    'link': lambda app: S(app, 'ccworker.add', 1, 2).set(
        link=[S(app, 'tasks.mul', 10)]),
    'link_multi': lambda app: S(app, 'ccworker.add', 1, 2).set(link=[
        S(app, 'tasks.mul', 10),
        app.signature('tasks.log', ('x',), immutable=True),
    ]),
    'link_group': lambda app: S(app, 'ccworker.add', 1, 2).set(link=[
        group(S(app, 'tasks.mul', 1), S(app, 'tasks.mul', 2))]),
    'link_chain': lambda app: S(app, 'ccworker.add', 1, 2).set(link=[
        chain(S(app, 'tasks.mul', 2), S(app, 'tasks.mul', 3), S(app, 'tasks.mul', 4))]),
    'chain': lambda app: chain(S(app, 'ccworker.add', 1, 2),
                               S(app, 'tasks.mul', 3, queue='q2', priority=5),
                               S(app, 'tasks.mul', 4)),
    'chain_immutable': lambda app: chain(
        S(app, 'ccworker.add', 1, 2),
        app.signature('tasks.log', ('x',), {'level': 1}, immutable=True),
        S(app, 'tasks.mul', 4)),
    'chain_group': lambda app: chain(
        S(app, 'ccworker.add', 1, 2),
        group(S(app, 'tasks.mul', 1), S(app, 'tasks.mul', 2))),
    'routes': lambda app: S(app, 'ccworker.add', 1, 2).set(link=[
        S(app, 'tasks.mul', 10), S(app, 'other.task', 1)]),
    'fail_chain': lambda app: chain(
        S(app, 'ccworker.fail', 1).on_error(S(app, 'tasks.on_err', 'e')),
        S(app, 'tasks.mul', 3), S(app, 'tasks.mul', 4)),
    'fail_errbacks': lambda app: S(app, 'ccworker.fail').on_error(
        S(app, 'tasks.on_err')).on_error(
        app.signature('tasks.on_err2', immutable=True)),
}


def chord_scenarios():
    url = 'mongodb://127.0.0.1:27017/ccworker_canvas_gen'
    app = make_app(backend=url)
    drain(app)
    c = chord([S(app, 'ccworker.add', 1, 1), S(app, 'ccworker.add', 2, 2)],
              S(app, 'tasks.tsum', 100, queue='other'))
    res = c.apply_async()
    msgs = drain(app)
    unlock = [m for m in msgs if m['headers']['task'] == 'celery.chord_unlock']
    header = [m for m in msgs if m['headers']['task'] != 'celery.chord_unlock']
    assert len(unlock) == 1, msgs
    unlock = unlock[0]
    hid = [m['headers']['id'] for m in header]
    ordered = [r[0][0] for r in json.loads(unlock['body'])[1]['result']]
    cb_id = res.id

    def run(states):
        for tid in ordered:
            app.backend.forget(tid)
        app.backend.forget(cb_id)
        for tid, (st, val) in zip(ordered, states):
            if st == 'SUCCESS':
                app.backend.store_result(tid, val, st)
            elif st == 'FAILURE':
                app.backend.store_result(tid, ValueError(val), st)
        trace(app, unlock)
        return {'outputs': drain(app), 'callback': meta(app, cb_id)}

    doc = {
        'input': unlock,
        'header': header,
        'callback_id': cb_id,
        'not_ready': run([('SUCCESS', 2), (None, None)]),
        'ready': run([('SUCCESS', 2), ('SUCCESS', 4)]),
        'failed': run([('SUCCESS', 2), ('FAILURE', 'bad')]),
    }
    assert sorted(hid) == sorted(ordered)
    save('chord', doc)


def main():
    for name, build in SCENARIOS.items():
        conf = {}
        if name == 'routes':
            conf['task_routes'] = {'tasks.*': {'queue': 'other', 'priority': 3}}
        scenario(name, build, **conf)
    if '--no-chord' not in sys.argv:
        chord_scenarios()


if __name__ == '__main__':
    main()
