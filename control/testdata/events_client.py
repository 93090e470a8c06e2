#!/usr/bin/python3
"""Watch ccworker's events the way Flower does (celery.events.state.State fed by an
EventReceiver).

usage: events_client.py BROKER NODE TASKID=STATE [...]
Prints READY once consuming, then RESULT {json} once NODE is alive in State and every task has
the expected state (or after 20 s), then OFFLINE {json} after NODE's worker-offline (or 15 s).
"""
import json
import sys
import time

from celery import Celery

broker, node = sys.argv[1], sys.argv[2]
want = dict(a.split('=', 1) for a in sys.argv[3:])
app = Celery('ccworker_events_test', broker=broker)
state = app.events.State()
seen = {'types': [], 'utcoffset': None, 'heartbeats': 0, 'multi': 0}
phase = ['result']
deadline = [time.time() + 20]


def snapshot():
    w = state.workers.get(node)
    tasks = {}
    for tid in want:
        t = state.tasks.get(tid)
        tasks[tid] = None if t is None else {'state': t.state, 'name': t.name, 'result': t.result,
                                             'exception': t.exception, 'worker': t.worker and t.worker.hostname}
    return {'alive': bool(w and w.alive),
            'alive_workers': [x.hostname for x in state.alive_workers()],
            'worker': None if w is None else {'sw_ident': w.sw_ident, 'freq': w.freq,
                                              'processed': w.processed, 'active': w.active,
                                              'loadavg': w.loadavg},
            'tasks': tasks, 'seen': seen}


def on_event(ev):
    state.event(ev)
    if ev.get('hostname') != node:
        return
    seen['types'].append(ev['type'])
    if ev['type'].startswith('worker-'):
        seen['utcoffset'] = ev.get('utcoffset')
        if ev['type'] == 'worker-heartbeat':
            seen['heartbeats'] += 1
    check()


def check():
    snap = snapshot()
    if phase[0] == 'result':
        done = snap['alive'] and all(
            snap['tasks'][t] and snap['tasks'][t]['state'] == s for t, s in want.items())
        if done or time.time() > deadline[0]:
            print('RESULT ' + json.dumps(snap), flush=True)
            phase[0] = 'offline'
            deadline[0] = time.time() + 15
    elif phase[0] == 'offline':
        if 'worker-offline' in seen['types'] or time.time() > deadline[0]:
            print('OFFLINE ' + json.dumps(snap), flush=True)
            recv.should_stop = True
            phase[0] = 'done'


def on_raw(body, message):
    # count task.multi lists as they arrive
    if isinstance(body, list):
        seen['multi'] += 1
    recv._receive(body, message)


with app.connection() as conn:
    recv = app.events.Receiver(conn, handlers={'*': on_event})
    orig = recv.on_consume_ready

    def ready(connection, channel, consumers, **kw):
        for c in consumers:
            c.callbacks = [on_raw]
        orig(connection, channel, consumers, **kw)
        print('READY', flush=True)
    recv.on_consume_ready = ready
    for _ in recv.itercapture(limit=None, timeout=None, wakeup=True):
        check()
        if phase[0] == 'done':
            break
