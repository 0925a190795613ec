"""`manage.py import_catalog FILE` (CSV or JSON Lines) or `--from-db URL --query SQL`: see catalog/importing.py."""
from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import environ
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.importing import import_rows, read_file, rows_from_records, source_from_settings

DB_PAGE = 1000


class Command(BaseCommand):
    help = ("Import products and photos from a CSV / JSON Lines file or another database; idempotent by relation_id "
            "(re-runs update, never duplicate, and skip photos already imported).")

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", type=Path, help="CSV (header row) or .jsonl file")
        parser.add_argument("--from-db", metavar="URL", help="read rows from this database (mysql://… or sqlite:///…)")
        parser.add_argument("--query", help="with --from-db: SELECT giving relation_id, title, …, and photo columns "
                            "(image, images or photo); several rows per relation_id (ORDER BY it) add photos")
        parser.add_argument("--base-url", default="", help="joined to photo paths that are not URLs (--from-db)")
        parser.add_argument("--base-dir", type=Path, help="local photo paths are read under this directory "
                            "(default: the file's directory); nothing outside it is read")
        parser.add_argument("--workers", type=int, default=settings.CATALOG_IMPORT["WORKERS"])
        parser.add_argument("--batch", type=int, default=100, help="rows per transaction (and index batch)")
        parser.add_argument("--refresh", action="store_true", help="download photos imported before again")
        parser.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                            help="also fetch from this internal host / address / CIDR network")
        parser.add_argument("--report", type=Path, help="write every failure to this CSV file")

    def handle(self, *args, **options):
        rows, base_dir = self._rows(options)
        source = source_from_settings(base_dir=base_dir, extra_hosts=options["allow_host"])
        with tqdm(desc="import", unit="row", disable=options["verbosity"] < 1, file=self.stderr) as bar:
            report = import_rows(rows, source, workers=options["workers"], batch_rows=options["batch"],
                                 refresh=options["refresh"], progress=bar.update)
        self._print(report, options)

    def _rows(self, options):
        if options["from_db"]:
            if not options["query"]:
                raise CommandError("--from-db needs --query")
            return rows_from_records(_records(options["from_db"], options["query"]), base_url=options["base_url"]), None
        path = options["file"]
        if path is None or not path.is_file():
            raise CommandError("give a CSV or JSON Lines file (or --from-db URL --query SQL)")
        return read_file(path), (options["base_dir"] or path.parent)

    def _print(self, report, options) -> None:
        self.stdout.write(
            f"import_catalog: {report.rows} rows: {report.created} created, {report.updated} updated, "
            f"{report.unchanged} unchanged; photos: {report.photos_added} added, {report.photos_kept} kept, "
            f"{report.photos_removed} removed; {len(report.failures)} failure(s)"
        )
        for failure in report.failures:
            where = f" {failure.source}" if failure.source else ""
            self.stdout.write(f"  line {failure.line} {failure.relation_id or '?'}{where}: {failure.code}: "
                              f"{failure.message}")
        if options["report"]:
            with options["report"].open("w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(["line", "relation_id", "source", "code", "message"])
                for f in report.failures:
                    writer.writerow([f.line, f.relation_id, f.source, f.code, f.message])


def _records(url: str, query: str):
    """Rows of ``query`` as dicts, fetched a page at a time (a server-side cursor on MySQL)."""
    config = environ.Env.db_url_config(url)
    engine = config["ENGINE"]
    if engine.endswith("sqlite3"):
        connection = sqlite3.connect(f"file:{config['NAME']}?mode=ro", uri=True)
        connection.row_factory = sqlite3.Row
        cursor = connection.execute(query)
    elif engine.endswith("mysql"):
        import MySQLdb
        import MySQLdb.cursors

        connection = MySQLdb.connect(host=config.get("HOST") or "127.0.0.1", port=int(config.get("PORT") or 3306),
                                     user=config.get("USER", ""), password=config.get("PASSWORD", ""),
                                     database=config["NAME"], charset="utf8mb4", cursorclass=MySQLdb.cursors.SSDictCursor)
        cursor = connection.cursor()
        cursor.execute(query)
    else:
        raise CommandError(f"--from-db: mysql:// or sqlite:/// URLs only, not {url.split(':', 1)[0]}")
    try:
        while page := cursor.fetchmany(DB_PAGE):
            yield from (dict(row) for row in page)
    finally:
        connection.close()
