// Package config holds the Celery settings ccworker uses (Config) and reads them as a Celery
// worker does: celeryconfig.py, read by config/pyliteral when it holds only literals or
// imported by a Python interpreter when it needs more, then the CELERY_BROKER_URL and
// CELERY_RESULT_BACKEND overrides. It translates the broker and MongoDB backend settings
// (kombu's and pymongo's rules) into what the Go clients take, and redacts secrets for logs.
package config
