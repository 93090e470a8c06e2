"""The Celery client app shared by ccworker's canvas and control interop helpers.

Built in code (no celeryconfig module) from --broker, --backend, --database, --collection and
--queue; stub tasks with ccworker's built-in names are registered so that signatures
(`add.s(1, 2)`) can be built. They never run here: every ccworker.* and celery.* task is routed
to the test's queue, where ccworker consumes it.
"""
import argparse
import json

from celery import Celery


def parser(doc):
    p = argparse.ArgumentParser(description=doc)
    p.add_argument('--broker', required=True)
    p.add_argument('--backend', required=True)
    p.add_argument('--database', required=True)
    p.add_argument('--collection', required=True)
    p.add_argument('--queue', required=True)
    return p


def make_app(a):
    app = Celery('ccworker_interop')
    app.conf.update(
        broker_url=a.broker,
        result_backend=a.backend,
        mongodb_backend_settings={'database': a.database, 'taskmeta_collection': a.collection},
        task_serializer='json',
        result_serializer='json',
        accept_content=['json'],
        result_accept_content=['json'],
        task_default_queue=a.queue,
        task_routes={'ccworker.*': {'queue': a.queue}, 'celery.*': {'queue': a.queue}},
        broker_connection_retry_on_startup=False,
    )

    @app.task(name='ccworker.add')
    def add(x, y):
        return x + y

    @app.task(name='ccworker.echo')
    def echo(*args, **kwargs):
        return {'args': list(args), 'kwargs': kwargs}

    @app.task(name='ccworker.fail')
    def fail(message):
        raise ValueError(message)

    @app.task(name='ccworker.sleep')
    def sleep(seconds):
        return seconds

    @app.task(name='ccworker.noop')
    def noop():
        return None

    @app.task(name='ccworker.flaky')
    def flaky(n, countdown=0):
        return n

    app.t = dict(add=add, echo=echo, fail=fail, sleep=sleep, noop=noop, flaky=flaky)
    return app


def exc_info(e):
    """An exception as JSON: class name, module and args."""
    return {'exc_type': type(e).__name__, 'exc_module': type(e).__module__, 'exc_args': list(e.args)}


def emit(obj):
    print(json.dumps(obj, default=repr), flush=True)
