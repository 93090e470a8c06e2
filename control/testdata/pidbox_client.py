#!/usr/bin/python3
"""Drive ccworker's pidbox with Debian's real Celery client (5.2.6).

usage: pidbox_client.py BROKER NODE OP [OP ...]
Runs each OP against NODE and prints one JSON object {op: reply}. OPs:
  ping stats active reserved scheduled revoked registered registered_doc active_queues
  conf clock report query_task:ID revoke:ID revoke_cast:ID terminate:ID add_consumer:Q
  cancel_consumer:Q enable_events disable_events unknown pattern_ping:GLOB shutdown
  time_limit:TASK rate_limit:TASK:RATE pool_grow hello
"""
import json
import sys
import time

from celery import Celery

broker, node, ops = sys.argv[1], sys.argv[2], sys.argv[3:]
app = Celery('ccworker_control_test', broker=broker)
app.conf.broker_connection_retry_on_startup = False
ctl = app.control
out = {}
with app.connection() as conn:
    insp = ctl.inspect(destination=[node], timeout=1, connection=conn)
    for op in ops:
        name, _, arg = op.partition(':')
        if name in ('ping', 'stats', 'active', 'reserved', 'scheduled', 'revoked',
                    'registered', 'active_queues', 'conf', 'clock', 'report'):
            r = getattr(insp, name)()
        elif name == 'registered_doc':
            r = insp.registered('__doc__')
        elif name == 'query_task':
            r = insp.query_task(arg)
        elif name == 'revoke':
            r = ctl.revoke(arg, destination=[node], reply=True, timeout=1, connection=conn)
        elif name == 'revoke_cast':
            r = ctl.revoke(arg, destination=[node], connection=conn)
        elif name == 'terminate':
            r = ctl.revoke(arg, destination=[node], terminate=True, signal='KILL', reply=True,
                           timeout=1, connection=conn)
        elif name == 'add_consumer':
            r = ctl.add_consumer(arg, destination=[node], reply=True, timeout=1, connection=conn)
        elif name == 'cancel_consumer':
            r = ctl.cancel_consumer(arg, destination=[node], reply=True, timeout=1, connection=conn)
        elif name == 'enable_events':
            r = ctl.enable_events(destination=[node], reply=True, timeout=1, connection=conn)
        elif name == 'disable_events':
            r = ctl.disable_events(destination=[node], reply=True, timeout=1, connection=conn)
        elif name == 'time_limit':
            r = ctl.time_limit(arg, soft=10, hard=20, destination=[node], reply=True, timeout=1,
                               connection=conn)
        elif name == 'rate_limit':
            task, _, rate = arg.partition(':')
            r = ctl.rate_limit(task, rate, destination=[node], reply=True, timeout=1, connection=conn)
        elif name == 'pool_grow':
            r = ctl.pool_grow(2, destination=[node], reply=True, timeout=1, connection=conn)
        elif name == 'unknown':
            r = ctl.broadcast('xyz', destination=[node], reply=True, timeout=1, connection=conn)
        elif name == 'pattern_ping':
            r = ctl.broadcast('ping', pattern=arg, matcher='glob', reply=True, timeout=1,
                              connection=conn)
        elif name == 'hello':
            r = ctl.broadcast('hello', arguments={'from_node': 'other@peer',
                                                  # LimitedSet stamps ids with time.monotonic(): a
                                                  # fixed stamp expires (3 h) once the machine has
                                                  # been up longer than that.
                                                  'revoked': {'peer-rev': [time.monotonic() - 5, 'peer-rev']}},
                              destination=[node], reply=True, timeout=1, connection=conn)
        elif name == 'shutdown':
            r = ctl.shutdown(destination=[node], connection=conn)
        else:
            raise SystemExit('unknown op ' + op)
        out[op] = r
print(json.dumps(out))
