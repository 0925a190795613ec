"""System checks: configuration mistakes surface at start-up with an id, not as stack traces at request time."""
from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.compatibility)
def check_visualsearch_settings(app_configs=None, **kwargs) -> list[Error]:
    errors = []
    for name in ("VISUALSEARCH_EXTRACTORS", "VISUALSEARCH_INDEXES"):
        configs = getattr(settings, name, None)
        if not isinstance(configs, dict) or "default" not in configs:
            errors.append(Error(f"{name} must be a dict with a 'default' alias.", id="visualsearch.E001"))
        elif "BACKEND" not in configs["default"]:
            errors.append(Error(f"{name}['default'] has no BACKEND.", id="visualsearch.E002"))
    threshold = settings.VISUALSEARCH.get("SEARCH_THRESHOLD")
    if not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0:
        errors.append(
            Error("VISUALSEARCH['SEARCH_THRESHOLD'] must be a cosine similarity in [-1, 1].", id="visualsearch.E003")
        )
    if settings.VISUALSEARCH.get("TASK_RUNNER") not in ("inline", "celery"):
        errors.append(Error("VISUALSEARCH['TASK_RUNNER'] must be 'inline' or 'celery'.", id="visualsearch.E004"))
    errors.extend(_check_celery_broker())
    return errors


def _check_celery_broker() -> list[Error]:
    """An in-memory broker lives inside the publishing process: no worker ever receives the work, silently."""
    uses_workers = settings.VISUALSEARCH.get("TASK_RUNNER") == "celery"
    eager = getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False)  # tasks run in the caller: no broker involved
    broker = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
    if uses_workers and not eager and broker.startswith("memory:"):
        return [Error(
            "VISUALSEARCH_TASK_RUNNER=celery needs a real broker: CELERY_BROKER_URL is the in-memory one, so "
            "index work would be published into this process and lost.",
            hint="Set CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/0), or use VISUALSEARCH_TASK_RUNNER=inline.",
            id="visualsearch.E005",
        )]  # fmt: skip
    return []


@register(Tags.compatibility, deploy=True)
def check_extractor_loads(app_configs=None, **kwargs) -> list[Error]:
    """Deploy check (`check --deploy`): the extractor and the index can actually be built with these settings."""
    from .registry import get_extractor, get_index

    try:
        extractor = get_extractor()
        index = get_index()
    except Exception as exc:  # whatever went wrong, say it at deploy time
        return [Error(f"visual search cannot start: {exc}", id="visualsearch.E010")]
    if index.dim != extractor.dim:
        return [Error(f"index dim {index.dim} != extractor dim {extractor.dim}", id="visualsearch.E011")]
    return [Error(problem, id="visualsearch.E012") for problem in index.check()]
