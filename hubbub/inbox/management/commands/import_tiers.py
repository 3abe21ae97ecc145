from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from hubbub.accounts.models import Organization
from hubbub.connectors.models import Network
from hubbub.inbox.actions import do_import_tiers
from hubbub.lib.tierlist import TierListError, read_tier_list

MAX_FILE_BYTES = 20 * 1024 * 1024


class Command(BaseCommand):
    help = (
        "Load a VIP list: a CSV file of network,handle,tier rows (tier: standard, premium or vip). Known handles' "
        "customers take the tier; a handle not seen yet gets its customer now, so their first post is recognised. "
        "Bad rows are reported with their line number and skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--organization", required=True, help="organization slug")

    def handle(self, path: Path, organization: str, **options):
        org = Organization.objects.filter(slug=organization).first()
        if org is None:
            raise CommandError(f"no organization {organization!r}")
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise CommandError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MB; split the list")
            # utf-8-sig: spreadsheets often start a CSV file with a byte-order mark.
            with path.open(encoding="utf-8-sig", newline="") as lines:
                tier_list = read_tier_list(lines, Network.values)
        except (OSError, UnicodeDecodeError, TierListError) as exc:
            raise CommandError(f"{path}: {exc} (nothing was changed)") from exc
        try:
            report = do_import_tiers(org, tier_list.rows, source=path.name)
        except IntegrityError as exc:
            # A post from a listed handle made its customer while we wrote: the next run finds it.
            raise CommandError(f"{path}: a listed handle appeared meanwhile; run the import again ({exc})") from exc
        rejected = sorted(tier_list.rejected + report.rejected, key=lambda r: r.line)
        changed = ", ".join(f"{count} {tier}" for tier, count in sorted(report.changed.items())) or "none"
        self.stdout.write(
            f"{org.slug}: tiers set: {changed} ({report.created} new customers for handles not seen yet); "
            f"{report.unchanged} unchanged; {report.raised} open cases raised in priority; "
            f"{len(rejected)} rows skipped"
        )
        for row in rejected:
            self.stderr.write(f"  line {row.line}: {row.reason}")
