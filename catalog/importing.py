"""Bulk catalog import: rows (CSV, JSON Lines, or another database's table) → products and their photos.

Idempotent by ``relation_id``: a re-run updates products in place and never duplicates them. A photo is known by
where it came from (``ProductImage.source_url``) and by its content hash: a source imported before is neither
downloaded nor embedded again, and a download whose bytes the product already has only records the source.
Photos an earlier import added whose source a row no longer lists are removed; photos added by hand are kept.
Rows are committed in batches: each batch is one transaction, so its photos reach the index as one on-commit batch
(the indexing pipeline `reindex` uses), and a crash loses at most the batch in flight — re-running resumes, since
everything done is found again. Downloads run concurrently (a bounded pool) through the SSRF-safe fetcher. A row
or a photo that fails is reported with the reason and never stops the others.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlsplit

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image, UnidentifiedImageError

from .fetching import Fetcher, FetchError, FetchPolicy
from .models import Product, ProductImage

PRODUCT_FIELDS = ("title", "description", "category", "price", "stock", "is_active")
# Image columns: `images` (JSON list, or several separated by whitespace or "|" in CSV), `image`, `image_2`, …
IMAGE_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"}
_TRUE, _FALSE = {"1", "true", "yes", "y", "on", ""}, {"0", "false", "no", "n", "off"}


@dataclass
class ImportRow:
    line: int
    relation_id: str
    fields: dict
    images: list[str]


@dataclass(frozen=True)
class Failure:
    line: int
    relation_id: str
    code: str  # bad_row, bad_url, refused_address, unreachable, timeout, http_error, too_large, not_an_image, …
    message: str
    source: str = ""


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    photos_added: int = 0
    photos_kept: int = 0  # already imported from that source: not downloaded again
    photos_removed: int = 0
    failures: list[Failure] = field(default_factory=list)


class RowError(ValueError):
    pass


# --- reading -------------------------------------------------------------------------------------------------------

def read_file(path: Path) -> Iterator[ImportRow | Failure]:
    """Rows of a CSV (header row) or JSON Lines file (``.jsonl``/``.ndjson``); bad rows come out as failures."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        yield from _json_lines(path)
    else:
        yield from _csv_rows(path)


def _csv_rows(path: Path) -> Iterator[ImportRow | Failure]:
    with path.open(newline="", encoding="utf-8-sig") as file:
        for number, record in enumerate(csv.DictReader(file), start=2):
            yield _row(number, {k.strip().lower(): v for k, v in record.items() if k})


def _json_lines(path: Path) -> Iterator[ImportRow | Failure]:
    with path.open(encoding="utf-8") as file:
        for number, text in enumerate(file, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Failure(number, "", "bad_row", f"not JSON: {exc.msg}")
                continue
            if not isinstance(record, dict):
                yield Failure(number, "", "bad_row", "each line must be a JSON object")
                continue
            yield _row(number, {str(k).lower(): v for k, v in record.items()})


def rows_from_records(records: Iterable[dict], *, base_url: str = "") -> Iterator[ImportRow | Failure]:
    """Rows from mappings (another database's query). Consecutive records of one ``relation_id`` make one product
    (a table of photos, one row each, ordered by relation_id); relative photo paths are joined to ``base_url``."""
    current: ImportRow | None = None
    for number, record in enumerate(records, start=1):
        row = _row(number, {str(k).lower(): v for k, v in record.items()})
        if isinstance(row, ImportRow) and base_url:
            row.images = [urljoin(base_url, ref) if not urlsplit(ref).scheme else ref for ref in row.images]
        if isinstance(row, ImportRow) and current is not None and row.relation_id == current.relation_id:
            current.images += [ref for ref in row.images if ref not in current.images]
            current.fields.update(row.fields)
            continue
        if current is not None:
            yield current
        current = row if isinstance(row, ImportRow) else None
        if isinstance(row, Failure):
            yield row
    if current is not None:
        yield current


def _row(line: int, record: dict) -> ImportRow | Failure:
    relation_id = str(record.get("relation_id") or "").strip()
    try:
        if not relation_id or len(relation_id) > 255:
            raise RowError("relation_id is required (at most 255 characters)")
        return ImportRow(line, relation_id, _fields(record), _images(record))
    except RowError as exc:
        return Failure(line, relation_id, "bad_row", str(exc))


def _fields(record: dict) -> dict:
    fields = {}
    if record.get("title") not in (None, ""):  # optional: a new product without one is titled by its relation_id
        title = str(record["title"]).strip()
        if len(title) > 255:
            raise RowError("title: at most 255 characters")
        fields["title"] = title
    if "description" in record:
        fields["description"] = str(record["description"] or "")
    if "category" in record:
        category = str(record["category"] or "").strip()
        if len(category) > 100:
            raise RowError("category: at most 100 characters")
        fields["category"] = category
    if "price" in record:
        fields["price"] = _price(record["price"])
    if "stock" in record:
        fields["stock"] = _stock(record["stock"])
    if "is_active" in record:
        fields["is_active"] = _bool(record["is_active"])
    return fields


def _price(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise RowError(f"price: {str(value)[:40]!r} is not a number") from None
    if not price.is_finite() or price < 0 or price >= Decimal("1e8"):
        raise RowError("price: must be a number from 0 to 99 999 999.99")
    return price.quantize(Decimal("0.01"))


def _stock(value) -> int | None:
    if value in (None, ""):
        return None
    try:
        stock = int(str(value).strip())
    except ValueError:
        raise RowError(f"stock: {str(value)[:40]!r} is not a whole number") from None
    if stock < 0:
        raise RowError("stock: must not be negative")
    return stock


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RowError(f"is_active: {text[:20]!r} is not yes/no")


def _images(record: dict) -> list[str]:
    refs: list[str] = []
    value = record.get("images")
    if isinstance(value, list):
        refs += [str(v) for v in value]
    elif value:
        refs += str(value).replace("|", " ").split()
    keys = sorted((k for k in record if k == "image" or k.startswith("image_")), key=lambda k: (len(k), k))
    refs += [str(record[k]).strip() for k in keys if record[k]]
    unique = list(dict.fromkeys(r.strip() for r in refs if r and r.strip()))
    if len(unique) > 50:
        raise RowError("at most 50 photos per product")
    return unique


# --- photo sources -----------------------------------------------------------------------------------------------

class PhotoSource:
    """Bytes for a photo reference: an http(s) URL through the SSRF-safe fetcher, or (command line only) a path
    inside ``base_dir``."""

    def __init__(self, fetcher: Fetcher, *, base_dir: Path | None = None, max_bytes: int) -> None:
        self.fetcher = fetcher
        self.base_dir = base_dir.resolve() if base_dir else None
        self.max_bytes = max_bytes

    def read(self, ref: str) -> bytes:
        if urlsplit(ref).scheme in ("http", "https"):
            return self.fetcher.fetch(ref)
        if urlsplit(ref).scheme or self.base_dir is None:
            raise FetchError("bad_url", f"not an http(s) URL: {ref[:200]!r}")
        path = (self.base_dir / ref).resolve()
        if not path.is_relative_to(self.base_dir) or not path.is_file():
            raise FetchError("bad_url", f"no such file under {self.base_dir}: {ref[:200]!r}")
        if path.stat().st_size > self.max_bytes:
            raise FetchError("too_large", f"{path.stat().st_size:,} bytes; the limit is {self.max_bytes:,}")
        return path.read_bytes()


def source_from_settings(*, base_dir: Path | None, extra_hosts=()) -> PhotoSource:
    """The photo source CATALOG_IMPORT describes (limits, allow-listed internal hosts), plus ``extra_hosts``."""
    config = settings.CATALOG_IMPORT
    hosts = frozenset(h.lower() for h in [*config["ALLOWED_HOSTS"], *extra_hosts])
    policy = FetchPolicy(max_bytes=config["MAX_BYTES"], total_timeout_s=config["TIMEOUT_S"], allowed_hosts=hosts)
    return PhotoSource(Fetcher(policy), base_dir=base_dir, max_bytes=config["MAX_BYTES"])


def sniff(data: bytes) -> None:
    """Raise FetchError unless the bytes are an image in an accepted format (whatever the server said it was)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise FetchError("not_an_image", "the file is not an image in a supported format") from exc
    if kind not in IMAGE_FORMATS:
        raise FetchError("not_an_image", f"{kind} images are not accepted")


# --- importing -----------------------------------------------------------------------------------------------------

def import_rows(
    rows: Iterable[ImportRow | Failure], source: PhotoSource, *, workers: int = 8, batch_rows: int = 100,
    refresh: bool = False, progress: Callable[[int], None] = lambda n: None,
) -> ImportReport:
    """Import every row; see the module docstring. ``refresh`` downloads known sources again (changed photos)."""
    report = ImportReport()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="catalog-import") as pool:
        for batch in _batches(rows, batch_rows):
            good = [row for row in batch if isinstance(row, ImportRow)]
            report.failures += [row for row in batch if isinstance(row, Failure)]
            report.rows += len(batch)
            known = _known_sources([row.relation_id for row in good])
            wanted = {ref for row in good for ref in row.images if refresh or ref not in known.get(row.relation_id, {})}
            downloads = dict(zip(wanted, pool.map(lambda ref: _download(source, ref), wanted)))
            with transaction.atomic():  # one batch: one on-commit index sync
                for row in good:
                    _apply(row, downloads, known.get(row.relation_id, {}), report)
            progress(len(batch))
    return report


def _batches(rows: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _known_sources(relation_ids: list[str]) -> dict[str, dict[str, ProductImage]]:
    known: dict[str, dict[str, ProductImage]] = {}
    photos = ProductImage.objects.filter(product__relation_id__in=relation_ids).exclude(source_url="")
    for photo in photos.select_related("product"):
        known.setdefault(photo.product.relation_id, {})[photo.source_url] = photo
    return known


def _download(source: PhotoSource, ref: str) -> bytes | FetchError:
    try:
        data = source.read(ref)
        sniff(data)
        return data
    except FetchError as exc:
        return exc


def _apply(row: ImportRow, downloads: dict, known: dict[str, ProductImage], report: ImportReport) -> None:
    product, outcome = _upsert_product(row)
    setattr(report, outcome, getattr(report, outcome) + 1)
    existing = {photo.sha256: photo for photo in product.images.all()}
    for position, ref in enumerate(row.images):
        result = downloads.get(ref)
        if result is None:  # imported before, not fetched again
            report.photos_kept += 1
            _place(known[ref], position)
            continue
        if isinstance(result, FetchError):
            report.failures.append(Failure(row.line, row.relation_id, result.code, str(result), ref))
            continue
        _add_photo(product, ref, result, position, existing, known, report)
    listed = set(row.images)
    for ref, photo in known.items():
        failed = isinstance(downloads.get(ref), FetchError)
        if ref not in listed and not failed:
            photo.delete()
            report.photos_removed += 1


def _upsert_product(row: ImportRow) -> tuple[Product, str]:
    product = Product.objects.filter(relation_id=row.relation_id).first()
    if product is None:
        fields = {"title": row.relation_id, **row.fields}
        return Product.objects.create(relation_id=row.relation_id, **fields), "created"
    changed = [name for name, value in row.fields.items() if getattr(product, name) != value]
    if not changed:
        return product, "unchanged"
    for name in changed:
        setattr(product, name, row.fields[name])
    product.save(update_fields=[*changed, "updated_at"])  # only what changed: the index hears of what matters
    return product, "updated"


def _add_photo(product, ref: str, data: bytes, position: int, existing: dict, known: dict, report) -> None:
    digest = hashlib.sha256(data).hexdigest()
    same = existing.get(digest)
    if same is not None:  # the product already has these bytes (hand-uploaded, or from another source)
        if same.source_url != ref and not same.source_url:
            same.source_url = ref
            same.save(update_fields=["source_url", "updated_at"])
        report.photos_kept += 1
        _place(same, position)
        return
    old = known.get(ref)
    if old is not None:  # a known source whose bytes changed (with refresh): replace the file
        old.delete()
    name = PurePosixPath(urlsplit(ref).path).name or "photo"
    photo = ProductImage(product=product, position=position, source_url=ref)
    photo.image.save(name[-100:], ContentFile(data), save=False)
    photo.save()
    existing[digest] = photo
    report.photos_added += 1


def _place(photo: ProductImage, position: int) -> None:
    if photo.position != position:
        photo.position = position
        photo.save(update_fields=["position", "updated_at"])
