#!/usr/bin/python3
"""A real deployment's view of ccworker running the mylib Python task library: run with
Debian's Celery 5.2.6 or, with its site first on PYTHONPATH, Celery 5.6. Prints one JSON
line (the Go test judges the values).

usage: realdeploy_client.py APP-FLAGS --node NODE
"""
import time

import celery

from ccapp import emit, exc_info, make_app, parser


def outcome(res, timeout=30):
    t0 = time.time()
    try:
        out = {'result': res.get(timeout=timeout, propagate=True)}
    except Exception as e:
        out = exc_info(e)
    out['seconds'] = time.time() - t0
    out['state'] = res.state
    out['traceback'] = res.traceback
    return out


def node_reply(replies, node):
    return (replies or {}).get(node)


def main():
    p = parser(__doc__)
    p.add_argument('--node', required=True)
    a = p.parse_args()
    app = make_app(a)
    send = app.send_task
    out = {'celery': celery.__version__}

    # Both children busy: add(expires=1.5) is taken only after it expired.
    busy = [send('mylib.tasks.slow', args=[5]) for _ in range(2)]
    # Send add only once both slow tasks are running: sent together, any of the three may
    # reach a free child first.
    deadline = time.time() + 20
    while time.time() < deadline:
        active = node_reply(app.control.inspect([a.node], timeout=1).active(), a.node) or []
        if {b.id for b in busy} <= {t.get('id') for t in active}:
            break
    time.sleep(0.3)
    out['expired_behind_busy'] = outcome(send('mylib.tasks.add', args=[1, 1], expires=1.5))
    for b in busy:
        b.get(timeout=30)

    # cyberCommons' send_task: the logged-in user travels as a header.
    out['headers'] = outcome(send('mylib.tasks.request_headers',
                                  headers={'authenticated_user': {'username': 'admin'}}))
    out['soft_limit_from_decorator'] = outcome(send('mylib.tasks.limited', args=[10]))
    out['returns_async_result'] = outcome(send('mylib.tasks.returns_result', args=['other-id']))
    out['fail'] = outcome(send('mylib.tasks.fail'))
    out['replace'] = outcome(send('mylib.tasks.replaced', args=[2]))
    out['replace_chain'] = outcome(send('mylib.tasks.replaced_chain', args=[2]))
    out['replace_group'] = outcome(send('mylib.tasks.replaced_group', args=[2]))
    out['hard_limit'] = outcome(send('mylib.tasks.slow', args=[10], time_limit=1))
    # task.map / task.starmap: Celery's built-in celery.map and celery.starmap, in a chain.
    add = app.signature('mylib.tasks.add')
    out['starmap'] = outcome(celery.chain(
        app.signature('mylib.tasks.add', args=(1, 1), immutable=True),
        celery.canvas.xstarmap(add, [(1, 2), (3, 4)]),
        app.signature('mylib.tasks.add', args=(2, 2), immutable=True)).apply_async(), timeout=20)
    chunks = celery.canvas.chunks(add, [(1, 2), (3, 4), (5, 6)], 2).apply_async()  # a GroupResult
    try:
        out['chunks'] = {'result': chunks.get(timeout=20), 'state': 'SUCCESS' if chunks.successful() else 'FAILURE'}
    except Exception as e:
        out['chunks'] = dict(exc_info(e), state='FAILURE')
    out['map'] = outcome(celery.canvas.xmap(app.signature('mylib.tasks.slow'), [0, 0]).apply_async(),
                         timeout=20)


    i = app.control.inspect(timeout=2, destination=[a.node])
    out['registered'] = node_reply(i.registered(), a.node)
    out['registered_doc'] = node_reply(i.registered('__doc__'), a.node)
    out['registered_name'] = node_reply(i.registered('name'), a.node)
    out['registered_attrs'] = node_reply(i.registered('rate_limit', 'max_retries', 'acks_late'), a.node)
    conf = node_reply(i.conf(with_defaults=True), a.node) or {}
    out['conf_with_defaults_has_hijack'] = 'worker_hijack_root_logger' in conf
    emit(out)


if __name__ == '__main__':
    main()
