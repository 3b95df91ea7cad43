"""The Celery app under test: `celery -A lab.app.celery_app worker`.

Contract: configured only from environment variables (lab.app.config), so one
code base runs unchanged on every Celery version in the matrix; every
lifecycle signal and every task execution is journaled (lab.app.signals,
lab.app.tasks) to the file named by LAB_JOURNAL.
"""
