from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from hubbub.accounts.models import Organization
from hubbub.lib.playbook import PlaybookError, compile_playbook, parse_yaml
from hubbub.playbook.actions import do_publish_playbook


class Command(BaseCommand):
    help = "Validate a playbook YAML file and publish it as the organization's new active version."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--organization", required=True, help="organization slug")
        parser.add_argument("--check", action="store_true", help="validate only, publish nothing")

    def handle(self, path: Path, organization: str, check: bool, **options):
        try:
            org = Organization.objects.get(slug=organization)
        except Organization.DoesNotExist as exc:
            raise CommandError(f"no organization {organization!r}") from exc
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: {exc}") from exc
        try:
            if check:
                compile_playbook(parse_yaml(source), set(org.departments.values_list("slug", flat=True)))
                self.stdout.write(f"{path}: valid")
                return
            playbook = do_publish_playbook(org, source)
        except PlaybookError as exc:
            raise CommandError(f"{path}: {exc} (the running version stays in force)") from exc
        self.stdout.write(f"Published {org.slug} playbook version {playbook.version}.")
