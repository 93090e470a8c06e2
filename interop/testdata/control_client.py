#!/usr/bin/python3
"""Remote control, inspect and events against ccworker with Celery 5.2.6's Python API; run
with /usr/bin/python3. Each sub-command prints JSON lines (the Go test judges the values).

usage: control_client.py APP-FLAGS --node NODE inspect|busy|revoke|control|events [--queue2 Q2]

inspect  the static inspect replies of NODE: ping, registered, registered('__doc__'),
         active_queues, stats, conf, revoked.
busy     runs ccworker.sleep(5) and sends ccworker.add(1, 1) with countdown=5; prints active,
         reserved, scheduled and query_task while they wait.
revoke   revoke-then-send (REVOKED 'revoked') and revoke(terminate=True) of a running
         ccworker.sleep(30).
control  add_consumer/cancel_consumer (--queue2), rate_limit, time_limit + a sleep(5) that hits
         the new soft limit, then shutdown (no reply).
events   captures events while sending add, fail and a revoked task; prints the state after
         the tasks ("phase": 1), then keeps capturing until NODE is no longer alive or 10 s pass
         ("phase": 2): the Go test sends SIGTERM between the two lines.
"""
import sys
import threading
import time
import uuid

from ccapp import emit, exc_info, make_app, parser


def outcome(res, timeout=20):
    try:
        out = {'result': res.get(timeout=timeout)}
    except Exception as e:
        out = exc_info(e)
    out['state'] = res.state
    out['id'] = res.id
    return out


def node_reply(replies, node):
    """The node's part of a broadcast's replies ([{node: reply}, ...]); None if it did not answer."""
    for r in replies or []:
        if node in r:
            return r[node]
    return None


def wait_active(app, node, task_id, timeout=10):
    i = app.control.inspect(timeout=1, destination=[node])
    deadline = time.time() + timeout
    while time.time() < deadline:
        active = (i.active() or {}).get(node) or []
        if any(t.get('id') == task_id for t in active):
            return active
        time.sleep(0.1)
    return None


def cmd_inspect(app, a):
    i = app.control.inspect(timeout=1, destination=[a.node])
    out = {}
    for name, call in [('ping', i.ping), ('registered', i.registered),
                       ('registered_doc', lambda: i.registered('__doc__')),
                       ('active_queues', i.active_queues), ('stats', i.stats), ('conf', i.conf),
                       ('revoked', i.revoked)]:
        out[name] = (call() or {}).get(a.node)
    emit(out)


def cmd_busy(app, a):
    sleep, add = app.t['sleep'], app.t['add']
    running = sleep.apply_async((5,))
    held = add.apply_async((1, 1), countdown=5)
    i = app.control.inspect(timeout=1, destination=[a.node])
    out = {'running': running.id, 'held': held.id, 'active': wait_active(app, a.node, running.id)}
    out['reserved'] = (i.reserved() or {}).get(a.node)
    out['scheduled'] = (i.scheduled() or {}).get(a.node)
    out['query_task'] = (i.query_task([running.id, held.id]) or {}).get(a.node)
    emit(out)


def cmd_revoke(app, a):
    sleep, add = app.t['sleep'], app.t['add']
    out = {}
    rid = str(uuid.uuid4())
    app.control.revoke(rid, destination=[a.node])
    time.sleep(0.5)  # revoke is a cast: give the worker time to record it
    out['revoked'] = outcome(add.apply_async((1, 1), task_id=rid))

    r = sleep.apply_async((30,))
    out['active'] = wait_active(app, a.node, r.id) is not None
    start = time.monotonic()
    app.control.revoke(r.id, terminate=True, destination=[a.node])
    out['terminated'] = outcome(r, timeout=15)
    out['terminate_s'] = time.monotonic() - start
    emit(out)


def cmd_control(app, a):
    c = app.control
    d = [a.node]
    add, sleep = app.t['add'], app.t['sleep']
    out = {}
    out['add_consumer'] = node_reply(c.add_consumer(a.queue2, reply=True, destination=d), a.node)
    out['queue2_task'] = outcome(add.apply_async((5, 5), queue=a.queue2))
    i = c.inspect(timeout=1, destination=d)
    out['queues_after_add'] = [q['name'] for q in (i.active_queues() or {}).get(a.node) or []]
    out['cancel_consumer'] = node_reply(c.cancel_consumer(a.queue2, reply=True, destination=d), a.node)
    out['queues_after_cancel'] = [q['name'] for q in (i.active_queues() or {}).get(a.node) or []]
    out['rate_limit'] = node_reply(c.rate_limit('ccworker.noop', '1/s', reply=True, destination=d), a.node)
    out['time_limit'] = node_reply(c.time_limit('ccworker.sleep', soft=0.5, reply=True, destination=d), a.node)
    start = time.monotonic()
    out['soft_limited'] = outcome(sleep.apply_async((5,)), timeout=15)
    out['soft_limited_s'] = time.monotonic() - start
    emit(out)
    c.shutdown(destination=d)


def cmd_events(app, a):
    state = app.events.State()
    seen = []

    def on_event(event):
        if event.get('hostname') == a.node:  # other workers may share the broker
            seen.append(event.get('type'))
        state.event(event)

    add, fail = app.t['add'], app.t['fail']
    with app.connection_for_read() as conn:
        recv = app.events.Receiver(conn, handlers={'*': on_event})
        th = threading.Thread(target=recv.capture, kwargs={'limit': None, 'timeout': None, 'wakeup': True},
                              daemon=True)
        th.start()
        time.sleep(1)  # the receiver's queue is bound before the tasks are sent
        ids = {'add': add.apply_async((2, 2)).id, 'fail': fail.apply_async(('boom',)).id}
        rid = str(uuid.uuid4())
        app.control.revoke(rid, destination=[a.node])
        time.sleep(0.5)
        ids['revoked'] = add.apply_async((1, 1), task_id=rid).id

        def snapshot(phase):
            tasks = {k: (state.tasks.get(v).state if state.tasks.get(v) else None) for k, v in ids.items()}
            return {'phase': phase, 'alive': sorted(w.hostname for w in state.alive_workers()),
                    'workers': sorted(state.workers.keys()), 'tasks': tasks,
                    'types': sorted(set(t for t in seen if t))}

        deadline = time.time() + 3
        while time.time() < deadline:
            s = snapshot(1)
            if all(s['tasks'].values()) and s['tasks'] == {'add': 'SUCCESS', 'fail': 'FAILURE',
                                                            'revoked': 'REVOKED'} and a.node in s['alive']:
                break
            time.sleep(0.1)
        emit(snapshot(1))
        deadline = time.time() + 10
        while time.time() < deadline:
            if a.node not in snapshot(2)['alive'] and 'worker-offline' in seen:
                break
            time.sleep(0.1)
        emit(snapshot(2))
        recv.should_stop = True
        th.join(3)


def main():
    p = parser(__doc__)
    p.add_argument('--node', required=True)
    p.add_argument('--queue2')
    p.add_argument('cmd', choices=['inspect', 'busy', 'revoke', 'control', 'events'])
    a = p.parse_args()
    app = make_app(a)
    globals()['cmd_' + a.cmd](app, a)
    return 0


if __name__ == '__main__':
    sys.exit(main())
