"""A minimal Celery app for ccworker's CLI integration tests: `ccworker.add` as a real Python
task, broker and MongoDB result backend from CCW_BROKER / CCW_BACKEND."""
import os

from celery import Celery

app = Celery('ccworker_cli_test')
app.conf.update(
    broker_url=os.environ['CCW_BROKER'],
    result_backend=os.environ['CCW_BACKEND'],
    task_serializer='json',
    result_serializer='json',
    accept_content=['json'],
    broker_connection_retry_on_startup=False,
    worker_hijack_root_logger=False,
)


@app.task(name='ccworker.add')
def add(x, y):
    return x + y
