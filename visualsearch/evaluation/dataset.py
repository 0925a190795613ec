"""Read and validate an evaluation dataset: a folder of photos plus ``groups.csv`` (``path,group,role``)."""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

GALLERY, QUERY, BOTH = "gallery", "query", "both"
ROLES = (GALLERY, QUERY, BOTH)
COLUMNS = ("path", "group", "role")
MAX_GROUP_LENGTH = 200  # leaves room for the namespace prefix in Product.relation_id (255)
_SHOWN = 5  # problems listed in one message; the rest are counted


class DatasetError(ValueError):
    """The dataset cannot be evaluated; the message says what to fix in groups.csv."""


@dataclass(frozen=True)
class Row:
    line: int  # line number in groups.csv, for messages
    path: Path  # absolute
    relpath: str
    group: str
    role: str

    @property
    def indexed(self) -> bool:
        return self.role in (GALLERY, BOTH)

    @property
    def searched(self) -> bool:
        return self.role in (QUERY, BOTH)


@dataclass(frozen=True)
class Dataset:
    root: Path
    rows: tuple[Row, ...]

    @property
    def gallery(self) -> list[Row]:
        return [row for row in self.rows if row.indexed]

    @property
    def queries(self) -> list[Row]:
        return [row for row in self.rows if row.searched]

    @property
    def groups(self) -> list[str]:
        return sorted({row.group for row in self.rows})

    @property
    def all_both(self) -> bool:
        """Every photo is indexed and searched: the UKBench setting where the N-S score applies."""
        return all(row.role == BOTH for row in self.rows)


def load_dataset(root: str | Path) -> Dataset:
    """Parse and check ``root/groups.csv``; raises DatasetError naming every problem found (up to a few each)."""
    root = Path(root).expanduser().resolve()
    csv_path = root / "groups.csv"
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory")
    if not csv_path.is_file():
        raise DatasetError(f"{root} has no groups.csv (columns: {', '.join(COLUMNS)})")
    rows = _read_rows(csv_path, root)
    _check_files(rows)
    _check_groups(rows)
    return Dataset(root, tuple(rows))


def _read_rows(csv_path: Path, root: Path) -> list[Row]:
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:  # utf-8-sig: spreadsheets add a BOM
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{csv_path}: missing column(s) {', '.join(missing)}; the header must be "
                               f"{','.join(COLUMNS)}")
        rows, problems = [], []
        for line, record in enumerate(reader, start=2):
            row, problem = _parse(record, line, root)
            if row is None:
                problems.append(problem)
            else:
                rows.append(row)
    _raise_if(problems, "bad row(s) in groups.csv")
    if not rows:
        raise DatasetError(f"{csv_path} lists no photos")
    return rows


def _parse(record: dict, line: int, root: Path) -> tuple[Row | None, str]:
    path, group, role = ((record.get(c) or "").strip() for c in COLUMNS)
    if role.lower() not in ROLES:
        return None, f"line {line}: unknown role {role!r} (expected {', '.join(ROLES)})"
    if not path or not group:
        return None, f"line {line}: empty path or group"
    if len(group) > MAX_GROUP_LENGTH:
        return None, f"line {line}: group name longer than {MAX_GROUP_LENGTH} characters"
    if not (root / path).resolve().is_relative_to(root):
        # `../x`, an absolute path or a symlink out: a groups.csv from elsewhere must not make us read any file
        return None, f"line {line}: {path!r} is outside the dataset folder"
    return Row(line, root / path, path, group, role.lower()), ""


def _check_files(rows: list[Row]) -> None:
    missing = [f"{row.relpath} (line {row.line})" for row in rows if not row.path.is_file()]
    _raise_if(missing, "file(s) listed in groups.csv do not exist")
    seen: dict[str, int] = {}
    twice = [f"{row.relpath} (lines {seen[row.relpath]} and {row.line})" for row in rows
             if seen.setdefault(row.relpath, row.line) != row.line]  # fmt: skip
    _raise_if(twice, "photo(s) listed more than once")


def _check_groups(rows: list[Row]) -> None:
    """Every query needs another indexed photo of its group, or it cannot possibly be answered."""
    indexed = defaultdict(set)
    for row in rows:
        if row.indexed:
            indexed[row.group].add(row.relpath)
    hopeless = sorted({row.group for row in rows if row.searched and not indexed[row.group] - {row.relpath}})
    _raise_if(hopeless, "group(s) with queries but no other gallery photo to find them by "
                        "(add 'gallery' or 'both' rows)")
    if not any(row.searched for row in rows):
        raise DatasetError("groups.csv has no 'query' or 'both' rows: nothing to search with")


def _raise_if(problems: list[str], what: str) -> None:
    if not problems:
        return
    shown = "; ".join(problems[:_SHOWN])
    more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    raise DatasetError(f"{len(problems)} {what}: {shown}{more}")
