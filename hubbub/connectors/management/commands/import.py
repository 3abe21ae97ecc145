from pathlib import Path

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from hubbub.accounts.actions import do_add_member, do_create_organization
from hubbub.accounts.models import Organization, Role
from hubbub.connectors.actions import do_import_file
from hubbub.connectors.twcs import ImportFormatError
from hubbub.playbook.actions import do_publish_default_playbook

IMPORT_ORGANIZATION = "imported"


class Command(BaseCommand):
    help = "Import past posts from a Customer Support on Twitter file (CSV or JSONL) as raw events."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument(
            "--organization", default="", help="slug of the organization to import into (default: 'imported')"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, path: Path, organization: str, no_progress: bool, **options):
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        org = self._organization(organization)
        with tqdm(desc=f"reading {path.name}", unit=" rows", disable=no_progress) as bar:
            try:
                report = do_import_file(path, org, progress=bar.update)
            except ImportFormatError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{report.read} rows read, {report.stored} new events stored on {len(report.accounts)} accounts, "
            f"{report.duplicates} already imported, {len(report.rejected)} rejected"
            + (f", {report.unrouted} not addressed to any brand in the file" if report.unrouted else "")
        )
        for rejected in report.rejected[:20]:
            self.stderr.write(f"  line {rejected.line}: {rejected.reason}")
        self.stdout.write("Run `hubbub worker --drain` (or leave `hubbub run` going) to turn them into cases.")

    def _organization(self, slug: str) -> Organization:
        if slug:
            try:
                return Organization.objects.get(slug=slug)
            except Organization.DoesNotExist as exc:
                raise CommandError(f"no organization {slug!r}") from exc
        org = Organization.objects.filter(slug=IMPORT_ORGANIZATION).first()
        if org is None:
            org = do_create_organization("Imported brands", IMPORT_ORGANIZATION)
            do_publish_default_playbook(org)
            # Someone has to be able to open the imported cases: every superuser administers them.
            for user in User.objects.filter(is_superuser=True):
                do_add_member(org, user, Role.ADMIN)
            self.stdout.write(
                f"Created organization '{IMPORT_ORGANIZATION}' with the starter playbook; superusers are its admins."
            )
        return org
