#!/usr/bin/python3
"""revoke(terminate=True) of a running command task; run with /usr/bin/python3.

usage: cmd_client.py APP-FLAGS --node NODE --task NAME --args JSON

Sends the task, waits until NODE lists it as active, revokes it with terminate=True and
prints {"active": bool, "state": ..., "exc_type": ..., "exc_args": [...], "terminate_s": ...}.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ccapp import emit, exc_info, make_app, parser  # noqa: E402


def main():
    p = parser(__doc__)
    p.add_argument('--node', required=True)
    p.add_argument('--task', required=True)
    p.add_argument('--args', default='[]')
    a = p.parse_args()
    app = make_app(a)
    r = app.send_task(a.task, args=json.loads(a.args), queue=a.queue)
    i = app.control.inspect(timeout=1, destination=[a.node])
    active = False
    deadline = time.time() + 15
    while time.time() < deadline and not active:
        active = any(t.get('id') == r.id for t in (i.active() or {}).get(a.node) or [])
        if not active:
            time.sleep(0.1)
    start = time.monotonic()
    app.control.revoke(r.id, terminate=True, destination=[a.node])
    try:
        out = {'result': r.get(timeout=15)}
    except Exception as e:
        out = exc_info(e)
    out.update(active=active, state=r.state, id=r.id, terminate_s=time.monotonic() - start)
    emit(out)


if __name__ == '__main__':
    main()
