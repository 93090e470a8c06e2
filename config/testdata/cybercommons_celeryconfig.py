# celeryconfig.py for a cyberCommons remote worker
# (docs/pages/files/celeryconfig.py with the placeholders filled in).
import ssl

broker_url = 'amqp://ccuser:s3cret@cybercom.example.org:5671/cybercom'
broker_use_ssl = {
    'keyfile': 'ssl/key.pem',
    'certfile': 'ssl/cert.pem',
    'ca_certs': 'ssl/cacert.pem',
    'cert_reqs': ssl.CERT_REQUIRED
}

worker_send_task_events = True
result_expires = None
accept_content = ['json']

result_backend = "mongodb://mongouser:mongopass@cybercom.example.org:27017/?ssl=true&tlsCAFile=ssl/cacert.pem&tlsCertificateKeyFile=ssl/mongodb.pem"
mongodb_backend_settings = {
    "database": "cybercom",
    "taskmeta_collection": "tombstone"
}

imports = ("cybercomq", "cybercomq.tasks.tasks",)
