from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from hubbub.accounts.models import Organization
from hubbub.lib.playbook import PlaybookError
from hubbub.playbook.actions import candidate_set, do_publish_playbook


class Command(BaseCommand):
    help = (
        "Validate a playbook YAML file and publish it as the organization's new active version: the intake "
        "playbook, or with --department that department's playbook."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--organization", required=True, help="organization slug")
        parser.add_argument("--department", help="department slug (default: the intake playbook)")
        parser.add_argument("--check", action="store_true", help="validate only, publish nothing")

    def handle(self, path: Path, organization: str, department: str | None, check: bool, **options):
        try:
            org = Organization.objects.get(slug=organization)
        except Organization.DoesNotExist as exc:
            raise CommandError(f"no organization {organization!r}") from exc
        dept = None
        if department:
            dept = org.departments.filter(slug=department).first()
            if dept is None:
                raise CommandError(f"no department {department!r} in {organization!r}")
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: {exc}") from exc
        try:
            if check:
                candidate_set(org, source, dept)
                self.stdout.write(f"{path}: valid")
                return
            playbook = do_publish_playbook(org, source, department=dept)
        except PlaybookError as exc:
            raise CommandError(f"{path}: {exc} (the running version stays in force)") from exc
        scope = dept.slug if dept else "intake"
        self.stdout.write(f"Published {org.slug} {scope} playbook as version {playbook.version}.")
