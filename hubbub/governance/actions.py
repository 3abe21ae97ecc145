from typing import Any

from hubbub.governance.models import AuditEvent


def do_audit(organization, actor, action: str, target=None, **data: Any) -> AuditEvent:
    return AuditEvent.objects.create(
        organization=organization,
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        target_type=type(target).__name__.lower() if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        data=data,
    )
