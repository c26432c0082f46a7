"""``manage.py labseg_backup OUT``: every database row and the media files in one tar file (see labseg.backup).

Safe while the app runs: the database is read from one snapshot, then the files that snapshot refers
to are copied. OUT ending in ``.gz`` / ``.tgz`` is gzip-compressed (images and checkpoints rarely shrink
much; plain ``.tar`` is faster).
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from labseg.backup import BackupError, create_backup


class Command(BaseCommand):
    help = "Back up the database (all rows, database-agnostic) and MEDIA_ROOT into one tar file."

    def add_arguments(self, parser):
        parser.add_argument("out", help="the archive to write, e.g. labseg-2025-01-31.tar (or .tar.gz)")
        parser.add_argument("--database", default="default", help="database alias (default: default)")
        parser.add_argument("--attempts", type=int, default=3,
                            help="snapshots to try when a referenced file vanishes meanwhile (default 3)")

    def handle(self, *args, out, database, attempts, verbosity=1, **options):
        def log(msg):
            if verbosity >= 1:
                self.stderr.write(msg)

        try:
            manifest = create_backup(out, using=database, attempts=max(1, attempts), log=log)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        rows = sum(t["count"] for t in manifest["models"])
        size = sum(f["size"] for f in manifest["media"])
        if manifest["missing_media"]:
            self.stderr.write(self.style.WARNING(
                f"{len(manifest['missing_media'])} file(s) referenced by rows are missing from MEDIA_ROOT "
                f"(listed in the manifest as missing_media), e.g. {manifest['missing_media'][0]}"))
        self.stdout.write(f"{out}: {rows} rows, {len(manifest['media'])} media files ({size} bytes), "
                          f"database {manifest['db_vendor']}, snapshot {manifest['snapshot_at']}")
