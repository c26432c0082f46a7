"""``manage.py labseg_restore IN``: restore a ``labseg_backup`` archive into a migrated, empty database.

Run ``manage.py migrate`` on the new database first, stop the web server and workers, then restore.
``--force`` deletes every row of the database first (in the same transaction as the load, so a failed
restore leaves the old data). Files already in MEDIA_ROOT with the same names are replaced; others stay.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from labseg.backup import DEFAULT_MAX_MEMBER_BYTES, BackupError, restore_backup


class Command(BaseCommand):
    help = "Restore a labseg_backup archive (rows + media files) into an empty, migrated database."

    def add_arguments(self, parser):
        parser.add_argument("src", metavar="IN", help="the archive written by labseg_backup")
        parser.add_argument("--database", default="default", help="database alias (default: default)")
        parser.add_argument("--force", action="store_true",
                            help="delete every row of a non-empty database first (irreversible once committed)")
        parser.add_argument("--max-member-bytes", type=int, default=DEFAULT_MAX_MEMBER_BYTES,
                            help=f"refuse an archive member larger than this (default {DEFAULT_MAX_MEMBER_BYTES})")

    def handle(self, *args, src, database, force, max_member_bytes, verbosity=1, **options):
        def log(msg):
            if verbosity >= 1:
                self.stderr.write(msg)

        try:
            manifest = restore_backup(src, using=database, force=force, max_member_bytes=max_member_bytes, log=log)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        rows = sum(t["count"] for t in manifest["models"])
        self.stdout.write(f"restored {rows} rows and {len(manifest['media'])} media files from {src} "
                          f"(taken {manifest['created_at']} on {manifest['db_vendor']})")
