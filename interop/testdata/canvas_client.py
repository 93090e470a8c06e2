#!/usr/bin/python3
"""Canvas scenarios (chain, link, link_error, group, chord, retry) sent by Celery 5.2.6 to
ccworker; run with /usr/bin/python3. Prints one JSON line; exit 0 unless the scenario itself
crashed (the Go test judges the values).

usage: canvas_client.py APP-FLAGS SCENARIO
"""
import sys
import time
import uuid

from celery import chain, chord, group

from ccapp import emit, exc_info, make_app, parser

TIMEOUT = 20


def outcome(res, timeout=TIMEOUT):
    """res.get(): {"result": ...} or the raised exception, plus the state."""
    try:
        out = {'result': res.get(timeout=timeout)}
    except Exception as e:
        out = exc_info(e)
    out['state'] = getattr(res, 'state', None)  # a GroupResult has none
    out['id'] = res.id
    return out


def scenarios(app):
    t = app.t
    q = app.conf.task_default_queue
    # Messages the worker sends (chain steps, callbacks, errbacks, the chord body) are routed
    # by the worker's configuration, not by this app's task_routes: name the queue in each
    # signature, as Celery users must.
    add, echo, fail, flaky = t['add'], t['echo'], t['fail'], t['flaky']

    def s(task, *args):
        return task.s(*args).set(queue=q)

    def chain_add():
        r = chain(s(add, 1, 2), s(add, 3)).apply_async()
        out = outcome(r)
        out['parent'] = r.parent.id if r.parent else None
        return out

    def pipe_echo():
        return outcome((s(add, 1, 2) | s(echo)).apply_async())

    def link():
        cb = str(uuid.uuid4())
        r = add.apply_async((2, 2), link=s(echo).set(task_id=cb))
        out = {'parent': outcome(r), 'callback': outcome(app.AsyncResult(cb))}
        return out

    def chain_fail():
        r = chain(s(fail, 'x'), s(add, 1)).apply_async()
        out = outcome(r)
        out['parent'] = r.parent.id if r.parent else None
        out['parent_outcome'] = outcome(r.parent) if r.parent else None
        return out

    def link_error():
        eb = str(uuid.uuid4())
        r = fail.apply_async(('x',), link_error=s(echo).set(task_id=eb))
        return {'task': outcome(r), 'errback': outcome(app.AsyncResult(eb))}

    def group_add():
        r = group(s(add, i, i) for i in range(5)).apply_async()
        try:
            return {'result': r.get(timeout=TIMEOUT), 'ids': [c.id for c in r.results]}
        except Exception as e:
            return exc_info(e)

    def chord_echo():
        r = chord([s(add, i, i) for i in range(4)], s(echo)).apply_async()
        return outcome(r, timeout=30)

    def retry():
        start = time.monotonic()
        out = outcome(flaky.apply_async((2,), {'countdown': 1}), timeout=15)
        out['elapsed'] = time.monotonic() - start
        return out

    def chain_default_queue():
        # The second step names no queue: the worker routes it to its task_default_queue.
        r = chain(s(add, 1, 2), add.s(3)).apply_async()
        return {'id': r.id, 'parent': outcome(r.parent)}

    def chain_chord():
        # A chord inside a chain: the worker applies the chord when the first step ends. The
        # chord's body is a chain (echo | echo): its celery.chord_unlock goes to the chord's
        # queue, else the worker's default one (as with Celery).
        r = chain(s(add, 1, 1), chord([s(add, 1), s(add, 2)], s(echo)).set(queue=q), s(echo)).apply_async()
        return outcome(r, timeout=30)

    def chain_chord_group():
        # add.si | group | task | group: the group and the task become a chord, the chain
        # ends in a group after it.
        r = (add.si(1, 1).set(queue=q) | group(s(add, 1), s(add, 2)) | s(echo) |
             group(s(echo), s(echo))).apply_async()
        return outcome(r, timeout=30)

    return {f.__name__: f for f in (chain_default_queue, chain_add, pipe_echo, link, chain_fail, link_error, group_add,
                                     chord_echo, retry, chain_chord, chain_chord_group)}


def main():
    p = parser(__doc__)
    p.add_argument('scenario')
    a = p.parse_args()
    app = make_app(a)
    emit(scenarios(app)[a.scenario]())
    return 0


if __name__ == '__main__':
    sys.exit(main())
