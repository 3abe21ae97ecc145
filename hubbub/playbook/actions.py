from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.db.models import Max

from hubbub.accounts.models import Organization
from hubbub.governance.actions import do_audit
from hubbub.lib.playbook import CompiledPlaybook, compile_playbook, parse_yaml
from hubbub.playbook.models import Playbook

DEFAULT_PLAYBOOK = Path(__file__).with_name("default_playbook.yaml")

# (playbook id, version, published at) -> compiled rules; a published version never changes. The time is
# part of the key because a database can hand out an id again after a rolled-back publish.
_compiled: dict[tuple, CompiledPlaybook] = {}


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
    active = Playbook.objects.filter(organization_id=organization_id, is_active=True)
    key = active.values_list("id", "version", "created_at").first()
    if key is None:
        return None, None
    if key not in _compiled:
        _compiled[key] = compile_playbook(Playbook.objects.values_list("rules", flat=True).get(pk=key[0]))
    return key[1], _compiled[key]
