"""The built-in ccworker tasks written as an ordinary Celery app, so a Python Celery worker can run
the same loads as ccworker in the side-by-side comparison (scripts/bench_compare.py).

Settings come from the environment: CCW_BROKER, CCW_BACKEND (empty = no result backend),
CCW_DATABASE (mongodb_backend_settings['database'])."""
import os
import time

from celery import Celery

app = Celery('ccworker_tasks')
app.conf.broker_url = os.environ.get('CCW_BROKER', 'amqp://guest:guest@127.0.0.1:5672//')
if os.environ.get('CCW_BACKEND'):
    app.conf.result_backend = os.environ['CCW_BACKEND']
    app.conf.mongodb_backend_settings = {'database': os.environ.get('CCW_DATABASE', 'celery')}
app.conf.worker_hijack_root_logger = True


@app.task(name='ccworker.noop')
def noop():
    return None


@app.task(name='ccworker.add')
def add(x, y):
    return x + y


@app.task(name='ccworker.sleep')
def sleep(seconds):
    time.sleep(seconds)
    return seconds
