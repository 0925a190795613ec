"""Celery app for the production configuration (VISUALSEARCH_TASK_RUNNER=celery): `celery -A project worker`."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["visualsearch"], related_name="celery_tasks")
