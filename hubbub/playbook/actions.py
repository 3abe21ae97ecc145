"""Publishing, rolling back, loading and dry-running playbooks.

An organization's playbook *set* is its active intake playbook plus the active playbook of each
department that has one. Publishing one playbook checks the whole set it would make (departments
exist, hand-offs don't loop) before anything is written, so a refused playbook leaves the running
set in force.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max, OuterRef, Subquery
from django.utils import timezone

from hubbub.accounts.models import Department, Organization
from hubbub.connectors.models import SocialAccount
from hubbub.governance.actions import do_audit
from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import Case, Direction, Escalation, EscalationKind, Message, SlaClock, Visibility
from hubbub.lib.playbook import (
    CompiledPlaybook,
    Decision,
    DryRun,
    PlaybookError,
    PlaybookSet,
    PostFacts,
    ReplayedPost,
    account_key,
    check_accounts,
    check_set,
    compile_playbook,
    dry_run,
    parse_yaml,
)
from hubbub.playbook.models import HandOff, Playbook, PlaybookDraft
from hubbub.publishing.actions import MAX_REPLY_LENGTH
from hubbub.publishing.models import OutboundMessage, OutboxState

DEFAULT_PLAYBOOK = Path(__file__).with_name("default_playbook.yaml")
DRY_RUN_DAYS = 7
MAX_DRY_RUN_DAYS = 90

# (id, version, created_at, department slug) of every active playbook -> the compiled set; a
# published version never changes. The time is part of the key because a database can hand out an
# id again after a rolled-back publish.
_compiled: dict[tuple, PlaybookSet] = {}


def _active_rows(organization_id: int) -> tuple:
    return tuple(
        Playbook.objects.filter(organization_id=organization_id, is_active=True)
        .order_by("id")
        .values_list("id", "version", "created_at", "department__slug")
    )


def _compile_scopes(rows: tuple, rules: dict[int, dict]) -> dict[str | None, CompiledPlaybook]:
    """Department slug (None: the intake) -> its compiled playbook."""
    return {slug: compile_playbook(rules[pk], department=slug) for pk, _version, _created_at, slug in rows}


def _as_set(scopes: dict[str | None, CompiledPlaybook]) -> PlaybookSet | None:
    intake = scopes.get(None)
    if intake is None:
        return None
    return PlaybookSet(intake=intake, by_department={slug: p for slug, p in scopes.items() if slug is not None})


def active_playbook(organization_id: int) -> tuple[int | None, PlaybookSet | None]:
    """The running set and its version (the highest active version); (None, None) without an intake
    playbook. Department playbooks alone route nothing: the intake picks the department."""
    rows = _active_rows(organization_id)
    if not rows:
        return None, None
    if rows not in _compiled:
        rules = dict(Playbook.objects.filter(pk__in=[row[0] for row in rows]).values_list("id", "rules"))
        compiled = _as_set(_compile_scopes(rows, rules))
        if compiled is None:
            return None, None
        _compiled[rows] = compiled
    return max(row[1] for row in rows), _compiled[rows]


def candidate_set(organization: Organization, source: str, department: Department | None) -> PlaybookSet:
    """The set the organization would run if `source` were published for `department` (None: the
    intake). Raises PlaybookError, with the path of the mistake, if it could not be published."""
    slug = department.slug if department is not None else None
    data = parse_yaml(source, department=slug)
    draft = compile_playbook(data, department=slug)
    rows = _active_rows(organization.pk)
    rules = dict(Playbook.objects.filter(pk__in=[row[0] for row in rows]).values_list("id", "rules"))
    candidate = _as_set({**_compile_scopes(rows, rules), slug: draft})
    if candidate is None:
        raise PlaybookError("", "publish the intake playbook first: it picks each post's department")
    check_set(candidate, set(organization.departments.values_list("slug", flat=True)))
    accounts = SocialAccount.objects.filter(organization=organization).values_list("network", "handle")
    check_accounts(draft, accounts, prefix=f"{slug}: " if slug else "")
    return candidate


@transaction.atomic
def do_publish_playbook(
    organization: Organization,
    source: str,
    user=None,
    department: Department | None = None,
    restored_from: int | None = None,
) -> Playbook:
    """Validate YAML and make it the active version of the intake playbook (department None) or of
    `department`'s. Raises PlaybookError; the running version then stays."""
    if department is not None and department.organization_id != organization.pk:
        raise PlaybookError("", "no such department")
    # Lock the organization's playbooks so two publishers can't take the same version number, nor
    # each check a set the other is changing.
    list(Playbook.objects.select_for_update().filter(organization=organization).values_list("id"))
    candidate_set(organization, source, department)
    data = parse_yaml(source, department=department.slug if department is not None else None)
    latest = Playbook.objects.filter(organization=organization).aggregate(v=Max("version"))["v"] or 0
    Playbook.objects.filter(organization=organization, department=department, is_active=True).update(is_active=False)
    if restored_from is None:
        # The draft it came from is now this version (a rollback leaves a draft being written alone).
        PlaybookDraft.objects.filter(organization=organization, department=department).delete()
    playbook = Playbook.objects.create(
        organization=organization,
        department=department,
        version=latest + 1,
        source=source,
        rules=data,
        is_active=True,
        restored_from=restored_from,
        created_by=user,
    )
    do_audit(
        organization,
        user,
        "playbook.rolled_back" if restored_from else "playbook.published",
        playbook,
        version=playbook.version,
        department=department.slug if department is not None else "intake",
        restored_from=restored_from,
    )
    return playbook


@transaction.atomic
def do_save_draft(
    organization: Organization, source: str, user=None, department: Department | None = None, check: bool = False
) -> PlaybookDraft:
    """Keep a playbook's draft as written (it need not parse yet); one per playbook, the latest wins.
    `check`: refuse a draft that could not be published (PlaybookError, as publishing says it), so
    the structured form, whose fields the supervisor cannot see as YAML, never saves a broken one."""
    if department is not None and department.organization_id != organization.pk:
        raise PlaybookError("", "no such department")
    if check:
        candidate_set(organization, source, department)
    # One row per playbook; update_or_create retries the read when two first saves race.
    draft, _ = PlaybookDraft.objects.update_or_create(
        organization=organization,
        department=department,
        defaults={"source": source, "updated_by": user, "updated_at": timezone.now()},
    )
    do_audit(
        organization,
        user,
        "playbook.draft_saved",
        draft,
        department=department.slug if department is not None else "intake",
    )
    return draft


def do_discard_draft(organization: Organization, user=None, department: Department | None = None) -> bool:
    """Drop a playbook's draft; the editor opens on the running version again. False when there was none."""
    deleted, _ = PlaybookDraft.objects.filter(organization=organization, department=department).delete()
    if deleted:
        do_audit(
            organization,
            user,
            "playbook.draft_discarded",
            None,
            department=department.slug if department is not None else "intake",
        )
    return bool(deleted)


def do_rollback_playbook(earlier: Playbook, user=None) -> Playbook:
    """Publish a copy of an earlier version as the newest one: history only ever grows."""
    return do_publish_playbook(
        earlier.organization, earlier.source, user=user, department=earlier.department, restored_from=earlier.version
    )


def do_publish_default_playbook(organization: Organization) -> Playbook:
    return do_publish_playbook(organization, DEFAULT_PLAYBOOK.read_text())


def replayed_posts(
    organization_id: int, since: dt.datetime, shown: Callable[[int, bool], bool] = lambda department, triage: True
) -> Iterator[ReplayedPost]:
    """The opening posts of the cases opened since `since`, as they were understood then, from
    the customer as they stand now (their tier), so a dry run predicts what publishing would do.
    `shown(department id, needs triage)` says whether a case may serve as an example."""
    first_inbound = Message.objects.filter(case=OuterRef("pk"), direction=Direction.INBOUND).order_by(
        "created_at", "id"
    )
    rows = (
        Case.objects.filter(organization_id=organization_id, opened_at__gte=since)
        .annotate(opening=Subquery(first_inbound.values("text")[:1]))
        .values_list(
            "id",
            "subject",
            "opening",
            "intent",
            "sentiment",
            "account__network",
            "account__handle",
            "customer__tier",
            "opened_at",
            "reach",
            "private_data",
            "language",
            "severity",
            "labels",
            "listening",
            "department_id",
            "needs_triage",
        )
        .order_by("id")
    )
    for (
        pk,
        subject,
        opening,
        intent,
        sentiment,
        network,
        handle,
        tier,
        opened_at,
        reach,
        private,
        language,
        severity,
        labels,
        listening,
        department_id,
        needs_triage,
    ) in rows.iterator(chunk_size=5000):
        facts = PostFacts(
            text=opening if opening is not None else subject,
            intent=intent or "other",
            sentiment=sentiment or "neutral",
            channel=network,
            followers=reach,
            private_data=bool(private),
            language=language,
            severity=severity,
            labels=frozenset(labels or ()),
            listening=frozenset(listening or ()),
            tier=tier,
            account=account_key(handle),
            posted_at=opened_at,
        )
        yield ReplayedPost(case_id=pk, subject=subject, facts=facts, shown=shown(department_id, needs_triage))


def do_dry_run(
    organization: Organization,
    source: str,
    department: Department | None,
    days: int = DRY_RUN_DAYS,
    shown: Callable[[int, bool], bool] = lambda department, triage: True,
) -> DryRun:
    """Replay the last `days` of opening posts through the draft's set and the running one.
    Counts cover every case; only cases `shown(department id, needs triage)` allows are examples.
    Raises PlaybookError when the draft could not be published."""
    candidate = candidate_set(organization, source, department)
    _, running = active_playbook(organization.pk)
    if running is None:
        raise PlaybookError("", "the organization has no running playbook to compare with")
    since = timezone.now() - dt.timedelta(days=max(1, min(days, MAX_DRY_RUN_DAYS)))
    return dry_run(replayed_posts(organization.pk, since, shown), running, candidate)


def do_acknowledge_handoff(handoff: HandOff, user) -> bool:
    """A member of the notified department confirms they have it: the receipt. False when someone already did."""
    with transaction.atomic():
        taken = HandOff.objects.filter(pk=handoff.pk, received_at=None).update(
            received_at=timezone.now(), received_by=user
        )
        if taken:
            do_audit(
                handoff.organization,
                user,
                "handoff.received",
                handoff,
                case=handoff.case_id,
                department=handoff.department_id,
            )
    handoff.refresh_from_db()
    return bool(taken)


@dataclass(frozen=True)
class Opened:
    """A case the pipeline has just opened and saved, with what its playbook decided for it."""

    case: Case
    decision: Decision
    # Shown to the customer by an acknowledgement template.
    customer_handle: str
    channel: str
    # The post's own time: only recent posts are acknowledged.
    posted_at: dt.datetime
    # A crisis mode covers the case: every public word waits for approval.
    in_crisis: bool = False
    # False for an account imported from a file: there is nobody to send an acknowledgement to.
    replyable: bool = True


def do_carry_out(organization_id: int, opened: list[Opened], now: dt.datetime) -> None:
    """The playbook actions that reach beyond the case itself, for a batch of newly opened cases:
    `notify` hands the case to other departments (a HandOff each, with a receipt to come),
    `escalate` notifies the supervisors, and `acknowledge` queues the template's reply in the
    outbox. Runs in the batch's transaction, so a worker killed halfway leaves none of them, and
    the batch's rerun writes each exactly once."""
    if not opened:
        return
    rows = list(Department.objects.filter(organization_id=organization_id).values_list("id", "slug", "name"))
    departments = {slug: pk for pk, slug, _ in rows}
    department_names = {pk: name for pk, _, name in rows}
    handoffs = [
        HandOff(
            organization_id=organization_id,
            case_id=item.case.pk,
            department_id=departments[slug],
            rule=item.decision.rule[:200],
            created_at=now,
        )
        for item in opened
        for slug in dict.fromkeys(item.decision.notify)
        if slug in departments and departments[slug] != item.case.department_id
    ]
    HandOff.objects.bulk_create(handoffs, ignore_conflicts=True)
    # `escalate`: the supervisors of the case's department hear of it at once, as of a breach.
    escalated = [item.case for item in opened if item.decision.escalate]
    Escalation.objects.bulk_create(
        [
            Escalation(
                organization_id=organization_id,
                case_id=case.pk,
                clock=SlaClock.PLAYBOOK_RULE,
                due_at=case.opened_at,
                position=0,
                kind=EscalationKind.NOTIFY_SUPERVISOR,
                department_id=case.department_id,
                detail={"rule": case.playbook_rule},
                created_at=now,
            )
            for case in escalated
        ],
        ignore_conflicts=True,
    )
    window = dt.timedelta(minutes=settings.HUBBUB_ACKNOWLEDGE_WITHIN_MINUTES)
    acknowledged = [
        item
        for item in opened
        if item.decision.acknowledge is not None and item.replyable and now - item.posted_at <= window
    ]
    if not acknowledged:
        return
    organization = Organization.objects.get(pk=organization_id)
    # The customer's opening message: the acknowledgement answers it in thread.
    opening = dict(
        Message.objects.filter(case_id__in=[item.case.pk for item in acknowledged], direction=Direction.INBOUND)
        .exclude(external_id=None)
        .order_by("-id")
        .values_list("case_id", "id")
    )
    outbox = []
    for item in acknowledged:
        case, decision = item.case, item.decision
        text = decision.acknowledge.render(
            {
                # The handle, never the display name: nobody reads this before it goes out, and a
                # display name is whatever the customer chose ("Refunds at scam.example").
                "customer_name": item.customer_handle,
                "customer_handle": item.customer_handle,
                "case_id": case.pk,
                "department": department_names.get(case.department_id, ""),
                "agent_name": "",
                "brand": organization.name,
                "channel": item.channel,
            }
        ).strip()
        if not text:
            continue
        needs_approval = case.requires_approval or (item.in_crisis and not decision.private)
        outbox.append(
            OutboundMessage(
                organization_id=organization_id,
                case_id=case.pk,
                account_id=case.account_id,
                in_reply_to_id=opening.get(case.pk),
                visibility=Visibility.PRIVATE if decision.private else Visibility.PUBLIC,
                text=text[:MAX_REPLY_LENGTH],
                state=OutboxState.PENDING_APPROVAL if needs_approval else OutboxState.APPROVED,
                created_at=now,
                next_attempt_at=now,
            )
        )
    OutboundMessage.objects.bulk_create(outbox)
    AuditEvent.objects.bulk_create(
        AuditEvent(
            organization_id=organization_id,
            actor=None,
            action="reply.acknowledgement_queued",
            target_type="outboundmessage",
            target_id=str(outbound.pk or ""),
            data={"case": outbound.case_id, "visibility": outbound.visibility, "state": outbound.state},
        )
        for outbound in outbox
    )
