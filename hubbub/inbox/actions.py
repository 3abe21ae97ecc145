"""What agents do to cases. Each action checks the rule it owns and writes an audit event."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from hubbub.accounts.models import Department, Membership, Organization
from hubbub.connectors.models import EventState, InboundEvent
from hubbub.governance.actions import do_audit
from hubbub.inbox.models import (
    OPEN_STATUSES,
    Case,
    CaseStatus,
    Customer,
    Direction,
    Identity,
    Message,
    Note,
    Priority,
    Tier,
    Visibility,
)
from hubbub.inbox.pipeline import route
from hubbub.lib.classify import LABELS
from hubbub.lib.playbook import PlaybookSet, PostFacts, account_key
from hubbub.lib.priority import score as priority_score
from hubbub.lib.sla import Calendar
from hubbub.lib.tierlist import Rejected, TierRow
from hubbub.playbook.actions import active_playbook
from hubbub.understanding.combine import SENTIMENTS, main_intent
from hubbub.understanding.models import LabelCorrection, Task


class CaseActionError(ValueError):
    pass


@transaction.atomic
def do_claim(case: Case, user) -> None:
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.assignee_id not in (None, user.pk):
        raise CaseActionError(f"case {case.pk} is already assigned to {case.assignee}")
    case.assignee = user
    if case.status == CaseStatus.NEW:
        case.status = CaseStatus.OPEN
    case.save(update_fields=["assignee", "status"])
    do_audit(case.organization, user, "case.claimed", case)


@transaction.atomic
def do_assign(case: Case, actor, membership: Membership | None) -> None:
    """Assign to a member who works the case's department, or unassign with None."""
    if membership is not None and not (
        membership.sees_all_departments or membership.departments.filter(pk=case.department_id).exists()
    ):
        raise CaseActionError(f"{membership.user} does not work the {case.department} queue")
    case.assignee = membership.user if membership else None
    case.save(update_fields=["assignee"])
    do_audit(case.organization, actor, "case.assigned", case, assignee=case.assignee_id)


@transaction.atomic
def do_add_note(case: Case, user, text: str) -> Note:
    text = text.strip()
    if not text:
        raise CaseActionError("a note needs some text")
    note = Note.objects.create(case=case, author=user, text=text[:10000])
    do_audit(case.organization, user, "case.note_added", case, note=note.pk)
    return note


@transaction.atomic
def do_transfer(case: Case, user, department: Department) -> None:
    """Hand a case to another department's queue; it leaves the agent who held it."""
    if department.organization_id != case.organization_id:
        raise CaseActionError("that department belongs to another organization")
    previous = case.department
    case.department = department
    case.assignee = None
    case.save(update_fields=["department", "assignee"])
    do_audit(case.organization, user, "case.transferred", case, source=previous.slug, destination=department.slug)


@transaction.atomic
def do_set_priority(case: Case, user, priority: int) -> None:
    """A supervisor's override: the case keeps this priority until they change it again."""
    if priority not in Priority.values:
        raise CaseActionError(f"{priority!r} is not a priority")
    before = case.priority
    case.priority_overridden = True
    # The clocks follow: a case raised to urgent must be answered within urgent's targets.
    _version, playbook = active_playbook(case.organization_id)
    case.save(update_fields=["priority_overridden", *case.set_priority(priority, playbook)])
    do_audit(case.organization, user, "case.priority_set", case, before=before, after=priority)


@transaction.atomic
def do_set_customer_tier(customer: Customer, user, tier: str) -> list[int]:
    """A supervisor sets a customer's tier (the priority score and playbook rules read it).
    Returns the ids of the customer's open cases whose priority rose with it."""
    if tier not in Tier.values:
        raise CaseActionError(f"{tier[:40]!r} is not a customer tier")
    # Locked and read again: the audit's `before` is the tier this change replaced.
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    before = customer.tier
    if tier == before:
        return []
    customer.tier = tier
    customer.save(update_fields=["tier"])
    raised = _rescore_open_cases({customer.pk: tier})
    do_audit(customer.organization, user, "customer.tier_set", customer, before=before, after=tier, raised=raised)
    return raised


@dataclass
class TierImport:
    """What loading a tier list did."""

    changed: Counter[str] = field(default_factory=Counter)  # tier -> customers now in it
    created: int = 0  # customers (with their identity) made for handles not seen yet
    unchanged: int = 0
    raised: int = 0  # open cases whose priority rose
    rejected: list[Rejected] = field(default_factory=list)


@transaction.atomic
def do_import_tiers(organization: Organization, rows: list[TierRow], user=None, source: str = "") -> TierImport:
    """Set the tiers of a VIP list (hubbub.lib.tierlist). A handle not seen yet gets its customer
    and identity now, so their first post is routed and scored by the tier. A row that would give
    a customer two tiers (through two of their identities) is rejected; all the rest is written
    in one transaction, or nothing is."""
    report = TierImport()
    if not rows:
        return report
    known = {
        (i.network, i.handle): i
        for i in Identity.objects.filter(
            organization=organization,
            network__among=list({r.network for r in rows}),
            handle__among=list({r.handle for r in rows}),
        ).select_related("customer")
    }
    wanted: dict[int, tuple[TierRow, Customer]] = {}
    new: list[TierRow] = []
    for row in rows:
        identity = known.get((row.network, row.handle))
        if identity is None:
            new.append(row)
            continue
        earlier = wanted.get(identity.customer_id)
        if earlier is not None and earlier[0].tier != row.tier:
            reason = f"the same customer is {earlier[0].tier} on line {earlier[0].line}"
            report.rejected.append(Rejected(row.line, reason))
        elif earlier is None:
            wanted[identity.customer_id] = (row, identity.customer)
    changed: dict[int, Customer] = {}
    for row, customer in wanted.values():
        if customer.tier == row.tier:
            report.unchanged += 1
            continue
        do_audit(organization, user, "customer.tier_set", customer, before=customer.tier, after=row.tier, source=source)
        customer.tier = row.tier
        changed[customer.pk] = customer
        report.changed[row.tier] += 1
    Customer.objects.bulk_update(changed.values(), ["tier"], batch_size=1000)
    # Standard is the default: a new handle listed as standard needs no customer made in advance.
    report.unchanged += sum(1 for row in new if row.tier == Tier.STANDARD)
    new = [row for row in new if row.tier != Tier.STANDARD]
    customers = Customer.objects.bulk_create(
        [Customer(organization=organization, tier=row.tier) for row in new], batch_size=1000
    )
    Identity.objects.bulk_create(
        [
            Identity(organization=organization, customer=customer, network=row.network, handle=row.handle)
            for row, customer in zip(new, customers, strict=True)
        ],
        batch_size=1000,
    )
    for row, customer in zip(new, customers, strict=True):
        do_audit(organization, user, "customer.tier_set", customer, before=None, after=row.tier, source=source)
        report.changed[row.tier] += 1
    report.created = len(new)
    report.raised = len(_rescore_open_cases({pk: c.tier for pk, c in changed.items()}))
    do_audit(
        organization,
        user,
        "customer.tiers_imported",
        None,
        source=source,
        rows=len(rows),
        changed=dict(report.changed),
        created=report.created,
        unchanged=report.unchanged,
    )
    return report


def _rescore_open_cases(tiers: dict[int, str]) -> list[int]:
    """Customers' new tiers count on their open cases as the pipeline scores a case at opening.
    The score only ever raises a priority: the playbook's decision, the floor, is not kept, and a
    supervisor's override stands. A raised case takes its new priority's SLA targets."""
    raised = []
    cases = Case.objects.filter(customer_id__in=tiers, status__in=OPEN_STATUSES, priority_overridden=False)
    playbooks: dict[int, PlaybookSet | None] = {}
    for case in cases.order_by("id"):
        level = priority_score(case.priority_signals(tiers[case.customer_id], now=case.opened_at)).level
        if level < case.priority:
            if case.organization_id not in playbooks:
                playbooks[case.organization_id] = active_playbook(case.organization_id)[1]
            case.save(update_fields=case.set_priority(level, playbooks[case.organization_id]))
            raised.append(case.pk)
    return raised


@transaction.atomic
def do_resolve(case: Case, user) -> None:
    # Locked and read again: the pipeline may have resumed its clocks since the page read it.
    case = Case.objects.select_for_update().select_related("organization").get(pk=case.pk)
    if case.status in (CaseStatus.RESOLVED, CaseStatus.CLOSED):
        raise CaseActionError(f"case {case.pk} is already {case.get_status_display().lower()}")
    case.status = CaseStatus.RESOLVED
    case.resolved_at = timezone.now()
    # The clocks stand still while it is resolved; a reopening resumes them (resume_sla).
    case.save(update_fields=["status", "resolved_at", *case.pause_sla(case.resolved_at)])
    do_audit(case.organization, user, "case.resolved", case)


@transaction.atomic
def do_reopen(case: Case, user) -> None:
    """Back to work: the SLA clocks run again, every due time later by the business time it was resolved."""
    case = Case.objects.select_for_update().select_related("organization").get(pk=case.pk)
    if case.status != CaseStatus.RESOLVED:
        raise CaseActionError(f"case {case.pk} is not resolved")
    _version, playbook = active_playbook(case.organization_id)
    now = timezone.now()
    case.status = CaseStatus.OPEN
    case.save(
        update_fields=["status", *case.resume_sla(now, playbook.calendar if playbook else Calendar.always_open())]
    )
    do_audit(case.organization, user, "case.reopened", case)


@transaction.atomic
def do_retry_event(event: InboundEvent, user) -> None:
    """Send a dead-lettered event through the pipeline again."""
    if event.state != EventState.FAILED:
        raise CaseActionError("only failed events can be retried")
    event.state = EventState.PENDING
    event.save(update_fields=["state"])
    do_audit(event.account.organization, user, "event.retried", event, error=event.error[:500])


@transaction.atomic
def do_correct_labels(case: Case, user, labels: Iterable[str], sentiment: str, severity: int | str) -> list[str]:
    """An agent confirms or corrects what the case is about.

    The opening post becomes a training example for each task (complaint, sentiment, severity);
    the case takes the agent's labels with full confidence; and a case waiting in triage is routed
    by the playbook on them. Returns what changed, for the agent's message.
    """
    chosen = sorted(set(labels))
    unknown = [label for label in chosen if label not in LABELS]
    if unknown:
        raise CaseActionError(f"unknown label {unknown[0][:40]!r}")
    if sentiment not in SENTIMENTS:
        raise CaseActionError("choose a sentiment: negative, neutral or positive")
    try:
        level = int(severity)
    except (TypeError, ValueError):
        raise CaseActionError("severity is a number from 0 to 4") from None
    if not 0 <= level <= 4:
        raise CaseActionError("severity is a number from 0 to 4")

    case = (
        Case.objects.select_for_update()
        .select_related("organization", "account", "department", "customer")
        .get(pk=case.pk)
    )
    before = {"labels": sorted(case.labels), "sentiment": case.sentiment, "severity": case.severity}
    opening = Message.objects.filter(case=case, direction=Direction.INBOUND).order_by("created_at", "id").first()
    text = opening.text if opening else case.subject
    intent = main_intent(chosen)
    is_complaint = "1" if intent in ("complaint", "legal_threat") else "0"
    LabelCorrection.objects.bulk_create(
        LabelCorrection(
            organization_id=case.organization_id, task=task, text=text, label=label, message=opening, corrected_by=user
        )
        for task, label in ((Task.COMPLAINT, is_complaint), (Task.SENTIMENT, sentiment), (Task.SEVERITY, str(level)))
    )

    case.labels = dict.fromkeys(chosen, 1.0)
    case.intent, case.intent_confidence = intent, 1.0
    if sentiment != case.sentiment:
        # keep the intensity the classifier measured, with the sign the agent gave it
        sign = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}[sentiment]
        case.sentiment_score = sign * max(abs(case.sentiment_score), 0.5)
    case.sentiment, case.sentiment_confidence = sentiment, 1.0
    case.severity, case.severity_confidence = level, 1.0
    fields = ["labels", "intent", "intent_confidence", "sentiment", "sentiment_score", "sentiment_confidence"]
    fields += ["severity", "severity_confidence"]
    changes = []
    if case.needs_triage:
        fields += _route_from_triage(case, text)
        changes.append(f"routed to {case.department.name}")
    case.save(update_fields=fields)
    after = {"labels": chosen, "sentiment": sentiment, "severity": level}
    do_audit(case.organization, user, "case.labels_corrected", case, before=before, after=after)
    return changes


def _route_from_triage(case: Case, text: str) -> list[str]:
    version, playbook = active_playbook(case.organization_id)
    decision = route(
        playbook,
        PostFacts(
            text=text,
            intent=case.intent,
            sentiment=case.sentiment,
            channel=case.account.network,
            followers=case.reach,
            private_data=bool(case.private_data),
            language=case.language,
            severity=case.severity,
            labels=frozenset(case.labels),
            listening=frozenset(case.listening),
            tier=case.customer.tier,
            account=account_key(case.account.handle),
            posted_at=case.opened_at,
        ),
    )
    department = (
        Department.objects.filter(organization_id=case.organization_id, slug=decision.department).first()
        or case.department
    )
    if department.pk != case.department_id:
        case.assignee = None
    case.department = department
    if not case.priority_overridden:
        case.priority = decision.priority
    sla_fields = case.start_sla(playbook, decision, private=case.sla_channel == Visibility.PRIVATE)
    case.playbook_rule = decision.rule[:200]
    case.playbook_version = version
    case.tags = sorted(set(case.tags) | set(decision.tags))
    case.requires_approval = case.requires_approval or decision.requires_approval
    case.needs_triage = False
    return [
        "department",
        "assignee",
        "priority",
        "tags",
        "requires_approval",
        "playbook_rule",
        "playbook_version",
        "needs_triage",
        *sla_fields,
    ]
