# A cyberCommons stack worker's celeryconfig.py, in the shape of the central config that
# the "Install Remote Workers" page says to copy (dc_config/images/celery/celeryconfig.py):
# every value is computed from the environment by Python the literal reader refuses.
import os
import ssl
from stackhosts import BROKER_HOST, MONGO_HOST
def setBrokerSSL():
    if os.environ.get('BROKER_USE_SSL'):
        return {'keyfile': f'{SSL_PATH}/client/key.pem',
                'certfile': f'{SSL_PATH}/client/cert.pem',
                'ca_certs': f'{SSL_PATH}/testca/cacert.pem',
                'cert_reqs': ssl.CERT_REQUIRED}
    else:
        return None

# SETUP BROKER URI
SSL_PATH = os.environ.get('SSL_PATH', '/ssl')
RABBITMQ_DEFAULT_USER = os.environ['RABBITMQ_DEFAULT_USER']
RABBITMQ_DEFAULT_PASS = os.environ['RABBITMQ_DEFAULT_PASS']
RABBITMQ_DEFAULT_VHOST = os.environ.get('RABBITMQ_DEFAULT_VHOST')
broker_url = f"amqp://{RABBITMQ_DEFAULT_USER}:{RABBITMQ_DEFAULT_PASS}@{BROKER_HOST}:5671/{RABBITMQ_DEFAULT_VHOST}"
broker_use_ssl = setBrokerSSL()
worker_send_task_events = True
result_expires = None
accept_content = ['json']

# SETUP MONGO URI
MONGO_USERNAME = os.environ.get('MONGO_USERNAME')
MONGO_PASSWORD = os.environ.get('MONGO_PASSWORD')
result_backend = f"mongodb://{MONGO_USERNAME}:{MONGO_PASSWORD}@{MONGO_HOST}:27017/?ssl=true&tlsCAFile={SSL_PATH}/testca/cacert.pem&tlsCertificateKeyFile={SSL_PATH}/client/mongodb.pem"

mongodb_backend_settings = {
    "database": os.environ.get('MONGO_DB', "cybercom"),
    "taskmeta_collection": os.environ.get('MONGO_TOMBSTONE_COLLECTION', "tombstone")
}

imports = tuple(os.environ.get('CELERY_IMPORTS').split(','))
