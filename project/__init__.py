import os

# TensorFlow's C++ start-up banners (CPU features, oneDNN) are noise in every command's output; warnings stay.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The Celery app is loaded with Django so that @shared_task binds to it (Celery's documented Django layout).
from .celery import app as celery_app  # noqa: E402

__all__ = ("celery_app",)
