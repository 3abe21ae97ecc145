from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.db.models import Max

from hubbub.accounts.models import Organization
from hubbub.governance.actions import do_audit
from hubbub.lib.playbook import CompiledPlaybook, compile_playbook, parse_yaml
from hubbub.playbook.models import Playbook

DEFAULT_PLAYBOOK = Path(__file__).with_name("default_playbook.yaml")

# (organization id, version) -> compiled rules; versions never change once published.
_compiled: dict[tuple[int, int], CompiledPlaybook] = {}


@transaction.atomic
def do_publish_playbook(organization: Organization, source: str, user=None) -> Playbook:
    """Validate YAML and make it the active version. Raises PlaybookError; the running version then stays."""
    data = parse_yaml(source)
    compile_playbook(data, departments=set(organization.departments.values_list("slug", flat=True)))
    # Lock the organization's playbooks so two publishers can't take the same version number.
    list(Playbook.objects.select_for_update().filter(organization=organization).values_list("id"))
    latest = Playbook.objects.filter(organization=organization).aggregate(v=Max("version"))["v"] or 0
    Playbook.objects.filter(organization=organization, is_active=True).update(is_active=False)
    playbook = Playbook.objects.create(
        organization=organization, version=latest + 1, source=source, rules=data, is_active=True, created_by=user
    )
    do_audit(organization, user, "playbook.published", playbook, version=playbook.version)
    return playbook


def do_publish_default_playbook(organization: Organization) -> Playbook:
    return do_publish_playbook(organization, DEFAULT_PLAYBOOK.read_text())


def active_playbook(organization_id: int) -> tuple[int | None, CompiledPlaybook | None]:
    row = Playbook.objects.filter(organization_id=organization_id, is_active=True).values("version", "rules").first()
    if row is None:
        return None, None
    key = (organization_id, row["version"])
    if key not in _compiled:
        _compiled[key] = compile_playbook(row["rules"])
    return row["version"], _compiled[key]
