"""Settings, read from the environment with embedded defaults.

With no environment at all this is the embedded configuration: SQLite, the in-process vector index and inline
indexing, so `make run` needs no services. Production sets DATABASE_URL, ELASTICSEARCH_URL and friends; no file
is edited to switch. Every variable is listed in the README's configuration table.
"""
from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # optional; a missing file is fine

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# A production deploy without a secret must fail fast; the insecure default exists only for DEBUG runs and tests.
SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-dev-only-key" if DEBUG else environ.Env.NOTSET)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "catalog",
    "visualsearch",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

VAR_DIR = Path(env("DJANGO_VAR_DIR", default=str(BASE_DIR / "var")))
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if "DATABASE_URL" not in env:
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded default must work on a fresh clone
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # utf8mb4: product titles carry emoji and CJK; the test database must be created the same way.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"charset": "utf8mb4"})
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Throttle counts must be shared by all web processes in production: e.g. CACHE_URL=redis://127.0.0.1:6379/1.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))
SERVE_MEDIA = env.bool("DJANGO_SERVE_MEDIA", default=True)  # behind a real web server, turn off and serve there

# Uploads: Django keeps small files in memory and spools larger ones to disk; the hard cap is ours (imaging.py).
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_THROTTLE_RATES": {"visual_search": env("VISUALSEARCH_THROTTLE_RATE", default="120/min")},
    # Client identity for throttling: 0 = the socket address. Behind N trusted proxies set N, or any client could
    # pick its identity with a forged X-Forwarded-For.
    "NUM_PROXIES": env.int("DJANGO_NUM_PROXIES", default=0),
    "EXCEPTION_HANDLER": "visualsearch.api.errors.json_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Visual product search API",
    "DESCRIPTION": "Search the catalog with a photo; browse products.",
    "VERSION": "1.0.0",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Visual search -----------------------------------------------------------------------------------------------
# Extractors and indexes are chosen like CACHES: an alias → {"BACKEND": dotted path, "OPTIONS": {...}}.
_EXTRACTORS = {
    "efficientnet_lite0": {
        "BACKEND": "visualsearch.extractors.efficientnet_lite0.EfficientNetLite0Extractor",
        "OPTIONS": {"weights": env("VISUALSEARCH_WEIGHTS", default=None)},
    },
    "vgg16": {
        "BACKEND": "visualsearch.extractors.vgg16.VGG16Extractor",
        "OPTIONS": {"weights": env("VISUALSEARCH_WEIGHTS", default="imagenet")},
    },
}
VISUALSEARCH_EXTRACTOR = env("VISUALSEARCH_EXTRACTOR", default="efficientnet_lite0")
if VISUALSEARCH_EXTRACTOR not in _EXTRACTORS:
    raise ImproperlyConfigured(f"VISUALSEARCH_EXTRACTOR must be one of {sorted(_EXTRACTORS)}")
# "default" feeds the index; the named aliases let `reindex --extractor NAME` precompute vectors before a switch.
VISUALSEARCH_EXTRACTORS = {"default": _EXTRACTORS[VISUALSEARCH_EXTRACTOR], **_EXTRACTORS}

ELASTICSEARCH_URL = env("ELASTICSEARCH_URL", default="")
# "elasticsearch" whenever a cluster is configured, unless told otherwise.
VISUALSEARCH_INDEX_BACKEND = env("VISUALSEARCH_INDEX_BACKEND", default="elasticsearch" if ELASTICSEARCH_URL else "embedded")
if VISUALSEARCH_INDEX_BACKEND not in ("embedded", "elasticsearch"):
    raise ImproperlyConfigured("VISUALSEARCH_INDEX_BACKEND must be 'embedded' or 'elasticsearch'")
if VISUALSEARCH_INDEX_BACKEND == "elasticsearch":
    _INDEX = {
        "BACKEND": "visualsearch.backends.elasticsearch.ElasticsearchIndex",
        "OPTIONS": {
            "hosts": env.list("ELASTICSEARCH_URL"),
            "alias": env("ELASTICSEARCH_INDEX_ALIAS", default="images"),
            "shards": env.int("ELASTICSEARCH_SHARDS", default=1),
            "replicas": env.int("ELASTICSEARCH_REPLICAS", default=0),
            "hnsw_m": env.int("ELASTICSEARCH_HNSW_M", default=16),
            "hnsw_ef_construction": env.int("ELASTICSEARCH_HNSW_EF_CONSTRUCTION", default=100),
            "quantization": env("ELASTICSEARCH_QUANTIZATION", default="int8_hnsw"),
            "num_candidates": env.int("ELASTICSEARCH_NUM_CANDIDATES", default=10_000),
            "timeout": env.float("ELASTICSEARCH_TIMEOUT", default=5.0),
        },
    }
else:
    _INDEX = {"BACKEND": "visualsearch.backends.embedded.EmbeddedIndex", "OPTIONS": {}}
VISUALSEARCH_INDEXES = {"default": _INDEX}

VISUALSEARCH = {
    # Minimum cosine similarity for a product to be shown. Calibrate on your own photos with
    # `manage.py evaluate DATASET_DIR --report DIR`: it recommends the lowest threshold that keeps precision
    # ≥ --target-precision and shows the share of shopper photos that would get no result. With EfficientNet-Lite0,
    # unrelated photos score ~0.1–0.5 and re-shot objects (UKBench) ~0.6–0.98 (0.78 for 95 % pair precision);
    # shelf photos against catalog shots (grocery) mostly score 0.4–0.6, where 0.5 leaves 72 % of queries empty.
    # Re-calibrate after changing VISUALSEARCH_EXTRACTOR.
    "SEARCH_THRESHOLD": env.float("VISUALSEARCH_THRESHOLD", default=0.5),
    "MAX_UPLOAD_BYTES": env.int("VISUALSEARCH_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024),
    "MAX_PIXELS": env.int("VISUALSEARCH_MAX_PIXELS", default=40_000_000),
    "MAX_RESULTS": 100,
    # Build the CNN and load the index when the web server starts rather than on the first search.
    "WARM_UP": env.bool("VISUALSEARCH_WARM_UP", default=True),
    # "inline": index in the request after commit (embedded default); "celery": hand off to workers.
    "TASK_RUNNER": env("VISUALSEARCH_TASK_RUNNER", default="inline"),
}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="memory://")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"visualsearch": {"handlers": ["console"], "level": env("VISUALSEARCH_LOG_LEVEL", default="INFO")}},
}
