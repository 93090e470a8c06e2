# ccworker's Python bridge: one persistent child of ccworker's Python task pool.
#
# Run as `<interpreter> -u -c <this source> MODULE...` with two extra pipes: fd 3 carries
# requests from ccworker, fd 4 carries replies, one JSON object per line each. The task's
# own stdout and stderr stay free for prints and logging (ccworker forwards them to its
# log), so nothing a task writes can corrupt the protocol.
#
#   start:   -> {"ready": true, "pid": P, "tasks": [{"name", "doc", "ignore_result",
#                "time_limit", "soft_time_limit", "rate_limit", "acks_late",
#                "track_started", "reject_on_worker_lost"}, ...]}
#            or {"ready": false, "error": "<traceback>"} when an import fails
#   request: <- {"id", "task", "args", "kwargs", "retries", "eta", "expires", "root_id",
#                "parent_id", "group", "group_index", "hostname", "delivery_info",
#                "reply_to", "correlation_id", "origin", "timelimit", "ignore_result",
#                "fields" (a protocol 2 message's headers), "headers", "properties",
#                "callbacks", "errbacks", "chain", "chord"}
#   reply:   -> {"id", "rss", "ok": <result, kombu JSON>}
#            |  {"id", "rss", "retry": {"countdown"|"eta", "exc": {...}|null}, "traceback"}
#            |  {"id", "rss", "error": {"exc_type", "exc_message", "exc_module"}, "traceback"}
#            |  {"id", "rss", "ignored": true}  (celery.exceptions.Ignore: self.replace())
#
# rss is ru_maxrss in KiB (what Celery's --max-memory-per-child compares). SIGUSR1 raises
# billiard's SoftTimeLimitExceeded inside the running task, as Celery's prefork pool does.
import json
import logging
import os
import resource
import signal
import sys
import traceback


def main():
    modules = sys.argv[1:]
    requests = os.fdopen(3, 'r', encoding='utf-8')
    replies = os.fdopen(4, 'w', encoding='utf-8')

    def send(obj):
        replies.write(json.dumps(obj) + '\n')
        replies.flush()

    try:
        app, tasks = load(modules)
    except BaseException:
        send({'ready': False, 'error': traceback.format_exc()})
        return 1

    from celery.result import ResultBase
    from billiard.exceptions import SoftTimeLimitExceeded
    from celery.app.task import Context
    from celery.exceptions import Ignore, Retry
    from celery.utils.serialization import ensure_serializable
    from celery._state import _task_stack
    from celery.app.trace import task_has_custom
    from kombu.utils.json import dumps

    running = [False]

    def on_soft_limit(signum, frame):
        if running[0]:
            running[0] = False
            raise SoftTimeLimitExceeded()

    publish_replacements()
    signal.signal(signal.SIGUSR1, on_soft_limit)
    # A warm shutdown of ccworker must not interrupt a task: ccworker stops the children
    # itself once the worker has drained.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def exception(exc):
        # Backend.prepare_exception for the json serializer, as Celery stores it.
        exctype = type(exc)
        return {'exc_type': getattr(exctype, '__qualname__', exctype.__name__),
                'exc_message': ensure_serializable(exc.args, dumps),
                'exc_module': exctype.__module__}

    send({'ready': True, 'pid': os.getpid(), 'tasks': [
        # The task's own options (decorator, then task_annotations, as Celery binds them):
        # ccworker applies the limits as Celery's pool does.
        dict({'name': name, 'doc': task.__doc__, 'ignore_result': bool(task.ignore_result),
              'time_limit': task.time_limit, 'soft_time_limit': task.soft_time_limit,
              'rate_limit': task.rate_limit, 'attrs': task_attrs(task)}, **own_options(task))
        for name, task in sorted(tasks.items())]})

    for line in requests:
        if not line.strip():
            continue
        req = json.loads(line)
        head = '{"id": %s, ' % json.dumps(req.get('id'))
        try:
            out = run(req, app, tasks, Context, _task_stack, task_has_custom, running)
        except Ignore:
            # raise self.replace(sig) published the replacement: nothing to store.
            running[0] = False
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            replies.write(head + '"rss": %d, "ignored": true}\n' % rss)
            replies.flush()
            continue
        except Retry as r:
            running[0] = False
            retry = {'exc': exception(r.exc) if isinstance(r.exc, BaseException) else None}
            when = r.when
            if hasattr(when, 'isoformat'):
                retry['eta'] = when.isoformat()
            elif when is not None:
                retry['countdown'] = float(when)
            body = {'retry': retry, 'traceback': task_traceback(r)}
        except BaseException as exc:
            running[0] = False
            body = {'error': exception(exc), 'traceback': task_traceback(exc)}
        else:
            try:
                if isinstance(out, ResultBase):
                    out = out.as_tuple()  # as Celery's backend stores a returned result
                payload = dumps(out)
            except Exception as exc:  # noqa: BLE001 - reported to the client, as Celery does
                body = {'error': {'exc_type': 'EncodeError', 'exc_module': 'kombu.exceptions',
                                  'exc_message': [str(exc)]}, 'traceback': traceback.format_exc()}
            else:
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                replies.write(head + '"rss": %d, "ok": %s}\n' % (rss, payload))
                replies.flush()
                continue
        body['rss'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        replies.write(head + json.dumps(body)[1:] + '\n')
        replies.flush()
    return 0


# The options a task takes from the worker's config unless it sets its own. Celery's
# bind() writes the app's value into the task class, so the task's own value is taken
# from its decorator (recorded by record_task_options) and the app's task_annotations.
OWN_OPTIONS = ('acks_late', 'track_started', 'reject_on_worker_lost')
_decorator_options = {}


def record_task_options():
    from celery import Celery
    task_from_fun = Celery._task_from_fun

    def recording(self, fun, name=None, *args, **options):
        task = task_from_fun(self, fun, name, *args, **options)
        own = {k: options[k] for k in OWN_OPTIONS if options.get(k) is not None}
        if own:
            _decorator_options[task.name] = own
        return task
    Celery._task_from_fun = recording


def own_options(task):
    own = dict(_decorator_options.get(task.name, {}))
    try:
        from celery.app.annotations import resolve_all
        for d in resolve_all(task.app.annotations, task):
            own.update({k: d[k] for k in OWN_OPTIONS if d.get(k) is not None})
    except Exception:  # noqa: BLE001 - an annotation Celery itself would refuse
        pass
    return {k: bool(own[k]) if k in own else None for k in OWN_OPTIONS}


def task_attrs(task):
    # The task's plain attributes as str() writes them, which `inspect registered` shows
    # (Celery: '{name} [{attr}={str(value)} ...]'); None, methods and properties left out.
    import inspect
    attrs = {}
    for name in dir(task):
        if name.startswith('_'):
            continue
        try:
            static = inspect.getattr_static(task, name)
            if callable(static) or isinstance(static, (property, classmethod, staticmethod)):
                continue
            value = getattr(task, name)
        except Exception:  # noqa: BLE001 - an attribute that cannot be read is not shown
            continue
        if isinstance(value, (str, int, float, bool, tuple, list, dict)):
            attrs[name] = str(value)
    return attrs


def worker_broker(app):
    # The worker's broker settings, whatever file or flag gave them: a task publishes
    # (Task.replace, apply_async) where the worker consumes. CELERY_BROKER_URL is read by
    # Celery itself.
    ssl = os.environ.get('CCWORKER_BROKER_USE_SSL')
    if ssl:
        app.conf.broker_use_ssl = json.loads(ssl)
    strategy = os.environ.get('CCWORKER_BROKER_FAILOVER_STRATEGY')
    if strategy:
        app.conf.broker_failover_strategy = strategy


def publish_replacements():
    # Tasks run with is_eager=True so that self.retry() raises instead of publishing (ccworker
    # re-sends the task). Task.replace must publish its replacement as in a worker, then
    # raise Ignore: it sees is_eager=False.
    from celery.app.task import Task
    replace = Task.replace

    def worker_replace(self, sig):
        req = self.request
        eager, req.is_eager = req.is_eager, False
        try:
            return replace(self, sig)
        finally:
            req.is_eager = eager
    Task.replace = worker_replace


def task_traceback(exc):
    # The traceback from the task's own frames on, without the bridge's (<string>), so
    # it reads like Celery's.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == '<string>':
        tb = tb.tb_next
    return ''.join(traceback.format_exception(type(exc), exc, tb))


def run(req, app, tasks, Context, task_stack, task_has_custom, running):
    task = tasks[req['task']]
    args, kwargs = req.get('args') or [], req.get('kwargs') or {}
    hard, soft = (req.get('timelimit') or [None, None])
    # As Celery's Request: every header of a protocol 2 message becomes an attribute of
    # the request (self.request.authenticated_user), then the fields the worker sets.
    fields = dict(req.get('fields') or {})
    fields.update(
        id=req.get('id'), task=task.name, args=args, kwargs=kwargs,
        retries=req.get('retries') or 0, eta=req.get('eta'), expires=req.get('expires'),
        root_id=req.get('root_id'), parent_id=req.get('parent_id'), group=req.get('group'),
        group_index=req.get('group_index'), hostname=req.get('hostname'),
        delivery_info=req.get('delivery_info') or {}, reply_to=req.get('reply_to'),
        correlation_id=req.get('correlation_id') or req.get('id'), origin=req.get('origin'),
        timelimit=(hard, soft), ignore_result=req.get('ignore_result', False),
        properties=req.get('properties') or {}, headers=req.get('headers'),
        callbacks=req.get('callbacks'), errbacks=req.get('errbacks'), chain=req.get('chain'),
        chord=req.get('chord'),
        # Eager: self.retry() raises Retry instead of publishing; ccworker re-sends it.
        is_eager=True, called_directly=False,
    )
    task.push_request(**fields)
    task_stack.push(task)
    try:
        # As celery.app.trace: the task's own __call__ if it has one, else run (which
        # carries bind=True and the autoretry_for wrapper).
        fun = task if task_has_custom(task, '__call__') else task.run
        running[0] = True
        try:
            return fun(*args, **kwargs)
        finally:
            running[0] = False
    finally:
        task_stack.pop()
        task.pop_request()


def load(modules):
    import multiprocessing
    from celery import Celery, current_app
    from celery.app.log import TaskFormatter
    from celery.utils.log import get_logger

    multiprocessing.current_process().name = 'ForkPoolWorker-%d' % os.getpid()
    if '' not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())

    # Build the app `celery worker` would have: ./celeryconfig.py (on the path) read when
    # it exists. A module imported below may create (and make current) an app of its own.
    record_task_options()
    app = Celery('ccworker', set_as_current=True)
    import importlib.util
    try:
        if importlib.util.find_spec('celeryconfig') is not None:
            app.config_from_object('celeryconfig')
    except ImportError:
        pass
    import importlib
    for name in modules:
        importlib.import_module(name)
    # A module may have created (and made current) an app of its own; shared tasks bind
    # to whichever app is current, and every app's registry is searched below.
    app = current_app._get_current_object()
    app.loader.import_default_modules()
    app.finalize(auto=True)

    level = getattr(logging, os.environ.get('CCWORKER_PYTHON_LOGLEVEL', 'WARNING').upper(), logging.WARNING)
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(app.conf.worker_log_format))
    root.handlers[:] = [handler]
    root.setLevel(level)
    task_logger = get_logger('celery.task')
    task_handler = logging.StreamHandler(sys.stderr)
    # No colour: these lines go through ccworker's log, which colours by level only on a
    # terminal (Celery's TaskFormatter colours by default, even into files).
    task_handler.setFormatter(TaskFormatter(app.conf.worker_task_log_format, use_color=False))
    task_logger.handlers[:] = [task_handler]
    task_logger.propagate = False
    task_logger.setLevel(level)

    tasks = {}
    from celery._state import _apps
    apps = [app] + [a for a in list(_apps) if a is not app]
    for a in apps:
        try:
            a.finalize(auto=True)
        except Exception:  # noqa: BLE001 - a half-configured app has no tasks to offer
            continue
        worker_broker(a)
        for name, task in a.tasks.items():
            if name.startswith('celery.') or name in tasks:
                continue
            tasks[name] = task
    return app, tasks


if __name__ == '__main__':
    sys.exit(main())
