"""Test tasks written the way cybercomq task libraries are."""
import os
import time

from celery import shared_task
from celery.utils.log import get_task_logger

logger = get_task_logger(__name__)


@shared_task
def add(x, y):
    """Add two numbers."""
    return x + y


@shared_task
def fail():
    raise ValueError('bad')


@shared_task(bind=True)
def retrying(self):
    """Retry twice, then return how many retries it took."""
    if self.request.retries < 2:
        raise self.retry(countdown=0.1)
    return self.request.retries


_attempts = {}


@shared_task(bind=True, autoretry_for=(KeyError,), max_retries=2, default_retry_delay=0.1)
def autoretrying(self, key):
    raise KeyError(key)


@shared_task
def slow(seconds):
    time.sleep(seconds)
    return 'finished'


@shared_task(bind=True)
def chatty(self, text):
    print('printed:', text)
    logger.warning('logged: %s', text)
    return self.request.id


@shared_task
def crash():
    os._exit(1)


@shared_task
def pid():
    return os.getpid()


@shared_task(bind=True)
def request_info(self, *args, **kwargs):
    return {'id': self.request.id, 'retries': self.request.retries,
            'args': list(self.request.args), 'kwargs': self.request.kwargs,
            'hostname': self.request.hostname}


@shared_task(ignore_result=True)
def quiet():
    pass


@shared_task
def grow(kib):
    """Hold on to kib KiB for the life of the process."""
    _attempts.setdefault('ballast', []).append(b'\x01' * (kib * 1024))
    return os.getpid()


@shared_task
def execute(source):
    exec(source)


@shared_task(bind=True)
def request_headers(self):
    """What a task sees of its message: custom headers, properties, delivery info."""
    return {'authenticated_user': getattr(self.request, 'authenticated_user', None),
            'properties': self.request.properties, 'headers': self.request.headers,
            'delivery_info': self.request.delivery_info, 'lang': getattr(self.request, 'lang', None)}


@shared_task(acks_late=False, track_started=True, reject_on_worker_lost=True)
def early():
    """Acked at start, STARTED stored, requeued if its child dies: its decorator says so."""
    return 'early'


@shared_task(soft_time_limit=1, time_limit=5, rate_limit='10/m')
def limited(seconds):
    """Sleep, unless the soft time limit of its decorator interrupts it."""
    time.sleep(seconds)
    return 'not interrupted'


@shared_task
def returns_result(task_id):
    from celery.result import AsyncResult
    return AsyncResult(task_id)


@shared_task(bind=True)
def replaced(self, x):
    """Replace itself with add(x, 1), as Celery's Task.replace idiom."""
    raise self.replace(add.s(x, 1))


@shared_task(bind=True)
def replaced_chain(self, x):
    """Replace itself with a chain: (x + 1) + 10."""
    raise self.replace(add.s(x, 1) | add.s(10))


@shared_task(bind=True)
def replaced_group(self, x):
    """Replace itself with a group: [x + 1, x + 2]."""
    from celery import group
    raise self.replace(group(add.s(x, 1), add.s(x, 2)))


@shared_task(bind=True)
def broker_conf(self):
    """The broker this task would publish to (Task.replace, apply_async)."""
    conf = self.app.conf
    return {'broker_url': conf.broker_url, 'broker_use_ssl': conf.broker_use_ssl,
            'broker_failover_strategy': conf.broker_failover_strategy}
