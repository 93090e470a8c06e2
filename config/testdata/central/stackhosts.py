# A sibling module of celeryconfig.py: importable because Celery (and ccworker) put the
# config's directory first on sys.path.
import os

BROKER_HOST = os.environ.get('BROKER_HOST', 'cybercom_rabbitmq')
MONGO_HOST = os.environ.get('MONGO_HOST', 'cybercom_mongo')
