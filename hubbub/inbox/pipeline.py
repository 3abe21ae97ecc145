"""From raw InboundEvents to cases: read, thread, understand, route.

The worker claims a batch of pending events, and everything the batch changes is written in
one transaction with the events' new state: a worker killed mid-batch leaves the events
pending, and the next run does the whole batch again, so nothing is lost or doubled.
Lookups and writes are made once per batch, not once per post.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from hubbub.accounts.models import Department
from hubbub.connectors.base import Connector, Post
from hubbub.connectors.models import EventState, InboundEvent, SocialAccount
from hubbub.connectors.noise import sift
from hubbub.connectors.registry import connector_for
from hubbub.crisis.actions import crisis_decider
from hubbub.db import column_adapter, insert_objects, insert_rows, unsaved
from hubbub.inbox.models import (
    OPEN_STATUSES,
    SLA_FIELDS,
    Case,
    CaseStatus,
    Customer,
    Direction,
    Identity,
    Message,
    Visibility,
)
from hubbub.lib.playbook import DEFAULT_RULE, PRIORITIES, Decision, PostFacts, Router, account_key
from hubbub.lib.priority import score as priority_score
from hubbub.listening.actions import Matcher, matcher_for
from hubbub.playbook.actions import Opened, active_playbook, do_carry_out
from hubbub.understanding.actions import encoder_models_active, understand
from hubbub.understanding.combine import Understanding

log = logging.getLogger(__name__)

BATCH_SIZE = 2000
# With a model that uses the encoder (≈ 30 posts/s a core) a batch of 2,000 would hold its
# transaction for a minute; 100 posts keep it to a few seconds.
ENCODER_BATCH_SIZE = 100
MESSAGE_FIELDS = (
    "case",
    "account",
    "direction",
    "visibility",
    "external_id",
    "in_reply_to_external_id",
    "identity",
    "text",
    "html",
    "url",
    "classification",
    "created_at",
    "event",
)
FALLBACK = Decision(department="customer-service", priority=PRIORITIES["normal"], first_response_minutes=60, rule="")


def triage_threshold() -> float:
    return settings.HUBBUB_TRIAGE_CONFIDENCE


def triage_department_slug() -> str:
    return settings.HUBBUB_TRIAGE_DEPARTMENT


def route(playbook: Router | None, facts: PostFacts) -> Decision:
    """Where the playbook sends a post (the fallback when the organization has none yet)."""
    return FALLBACK if playbook is None else playbook.route(facts)


def process_pending(batch_size: int = BATCH_SIZE) -> int:
    """Claim one batch of pending events and process it. Returns how many events were handled."""
    if batch_size > ENCODER_BATCH_SIZE and encoder_models_active():
        batch_size = ENCODER_BATCH_SIZE
    with transaction.atomic():
        pending = InboundEvent.objects.filter(state=EventState.PENDING).order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            # Several workers on PostgreSQL each take different rows.
            pending = pending.select_for_update(skip_locked=True)
        events = [Event(*row) for row in pending.values_list("id", "account_id", "payload")[:batch_size]]
        if not events:
            return 0
        try:
            with transaction.atomic():
                process_events(events)
        except Exception:
            # Something in the batch broke a write: find it by doing the events one by one.
            log.exception("batch of %d events failed; retrying them one at a time", len(events))
            for event in events:
                try:
                    with transaction.atomic():
                        process_events([event])
                except Exception as exc:
                    log.exception("event %s failed", event.pk)
                    _mark_failed(event, f"{type(exc).__name__}: {exc}")
    return len(events)


class Event(NamedTuple):
    """The part of an InboundEvent the pipeline reads (model instances cost more than the rest of a batch)."""

    pk: int
    account_id: int
    payload: dict


def process_events(events: list[Event]) -> None:
    now = timezone.now()
    accounts = {a.pk: a for a in SocialAccount.objects.filter(pk__in={e.account_id for e in events})}
    connectors: dict[int, Connector] = {}
    read: list[tuple[Event, Post]] = []
    for event in events:
        account = accounts[event.account_id]
        try:
            if account.pk not in connectors:
                connectors[account.pk] = connector_for(account)
            read.append((event, connectors[account.pk].normalize(event.payload)))
        except Exception as exc:
            # One unreadable payload goes to the dead-letter view; the rest of the batch goes on.
            _mark_failed(event, f"{type(exc).__name__}: {exc}")

    by_organization: dict[int, list[tuple[Event, Post]]] = defaultdict(list)
    for event, post in read:
        by_organization[accounts[event.account_id].organization_id].append((event, post))
    kept: list[tuple[Event, Post]] = []
    for organization_id, items in by_organization.items():
        items = sift(organization_id, items)  # spam and noise become FILTERED events, never cases
        _Threader(organization_id, accounts, now).run(items)
        kept.extend(items)

    if kept:
        # Only the kept events: the filtered ones already carry their FILTERED state and reason.
        InboundEvent.objects.filter(pk__among=[e.pk for e, _ in kept]).update(
            state=EventState.DONE, processed_at=now, error="", attempts=F("attempts") + 1
        )


def _mark_failed(event: Event, error: str) -> None:
    InboundEvent.objects.filter(pk=event.pk).update(
        state=EventState.FAILED, error=error[:4000], attempts=F("attempts") + 1, processed_at=timezone.now()
    )


@dataclass
class _Threader:
    """Threads, classifies and routes one organization's share of a batch."""

    organization_id: int
    accounts: dict[int, SocialAccount]
    now: dt.datetime
    window: dt.timedelta = field(default_factory=lambda: dt.timedelta(hours=settings.HUBBUB_THREAD_WINDOW_HOURS))

    def run(self, items: list[tuple[Event, Post]]) -> None:
        self.version, self.playbook = active_playbook(self.organization_id)
        # Fetched per batch: an edited listening query applies from the next batch on.
        self.matcher: Matcher = matcher_for(self.organization_id)
        # Read once per batch: a crisis switched on or off applies from the next batch.
        self.crisis = crisis_decider(self.organization_id)
        self.departments = dict(
            Department.objects.filter(organization_id=self.organization_id).values_list("slug", "id")
        )
        self._load(items)
        self.new_customers: list[Customer] = []
        self.new_identities: list[Identity] = []
        self.new_cases: list[Case] = []
        self.new_messages: list[tuple] = []
        # New cases whose playbook decision reaches beyond the case (hand-offs, acknowledgements).
        self.follow_ups: list[Opened] = []
        self.changed_cases: dict[int, Case] = {}
        self.changed_identities: dict[int, Identity] = {}
        self.triage_below = triage_threshold()
        # Understood in one call per batch: trained models predict whole batches much faster.
        understood = iter(understand(self.organization_id, [post.text for _, post in items if not post.from_brand]))
        for event, post in items:
            understanding = None if post.from_brand else next(understood)
            key = (event.account_id, post.external_id)
            if key in self.case_of_message:
                continue  # already threaded (a redelivery under another event, or our own reply)
            if understanding is None:
                self._brand_post(event, post)
            else:
                self._customer_post(event, post, understanding)
        self._save()

    def _load(self, items: list[tuple[Event, Post]]) -> None:
        account_ids = {e.account_id for e, _ in items}
        wanted = {p.external_id for _, p in items} | {
            p.in_reply_to_external_id for _, p in items if p.in_reply_to_external_id
        }
        found = Message.objects.filter(account_id__in=account_ids, external_id__among=wanted).values_list(
            "account_id", "external_id", "case_id"
        )
        case_ids = {case_id for _, _, case_id in found}
        handles = {(self.accounts[e.account_id].network, p.author_handle) for e, p in items if not p.from_brand}
        self.identities = {
            (i.network, i.handle): i
            for i in Identity.objects.filter(
                organization_id=self.organization_id,
                network__in={n for n, _ in handles},
                handle__among={h for _, h in handles},
            ).annotate(customer_tier=F("customer__tier"))  # routing and scoring read it; no Customer rows
        }
        customer_ids = {i.customer_id for i in self.identities.values()}
        open_cases = Case.objects.filter(
            customer_id__in=customer_ids, account_id__in=account_ids, status__in=OPEN_STATUSES
        ).order_by("last_message_at")
        cases = {c.pk: c for c in Case.objects.filter(pk__in=case_ids)}
        # Later rows overwrite earlier ones: the most recent open case wins.
        self.open_case = {(c.customer_id, c.account_id): cases.setdefault(c.pk, c) for c in open_cases}
        self.case_of_message: dict[tuple[int, str], Case] = {
            (account_id, external_id): cases[case_id] for account_id, external_id, case_id in found
        }

    def _brand_post(self, event: Event, post: Post) -> None:
        case = self.case_of_message.get((event.account_id, post.in_reply_to_external_id or ""))
        if case is None:
            return  # a brand post outside any customer thread: stored as an event, nothing to work
        self._add_message(case, event, post, Direction.OUTBOUND, identity=None, understood=None)
        case.brand_replied(post.created_at)
        self._touch(case)

    def _customer_post(self, event: Event, post: Post, understood: Understanding) -> None:
        account = self.accounts[event.account_id]
        identity = self._identity(account, post)
        matched = self.matcher.match(post, account.network, language=understood.language) if self.matcher else []
        case = self._thread(account, identity, post)
        if case is None:
            case = self._open_case(account, identity, post, understood, matched)
        else:
            case.customer_wrote(post.created_at, self.playbook, private=post.is_private)
            self._touch(case)
        case.last_message_at = max(case.last_message_at, post.created_at)
        self._add_message(case, event, post, Direction.INBOUND, identity, understood, matched)
        self.open_case[(_customer_key(identity), account.pk)] = case

    def _thread(self, account: SocialAccount, identity: Identity, post: Post) -> Case | None:
        if post.in_reply_to_external_id:
            case = self.case_of_message.get((account.pk, post.in_reply_to_external_id))
            if case is not None and case.status != CaseStatus.CLOSED:
                return case
        case = self.open_case.get((_customer_key(identity), account.pk))
        if case is not None and case.status in OPEN_STATUSES and post.created_at - case.last_message_at <= self.window:
            return case
        return None

    def _identity(self, account: SocialAccount, post: Post) -> Identity:
        key = (account.network, post.author_handle)
        identity = self.identities.get(key)
        if identity is None:
            customer = unsaved(
                Customer,
                organization_id=self.organization_id,
                display_name=(post.author_name or post.author_handle)[:200],
                created_at=post.created_at,
            )
            identity = unsaved(
                Identity,
                organization_id=self.organization_id,
                network=account.network,
                handle=post.author_handle[:255],
                display_name=post.author_name[:200],
                external_id=post.author_external_id[:255],
                followers=post.author_followers,
                updated_at=self.now,
            )
            identity.customer = customer  # saved first; insert_objects copies its id over
            identity.customer_tier = customer.tier
            self.new_customers.append(customer)
            self.new_identities.append(identity)
            self.identities[key] = identity
        elif post.author_followers is not None and post.author_followers != identity.followers:
            identity.followers = post.author_followers
            identity.updated_at = self.now
            self.changed_identities[identity.pk] = identity
        return identity

    def _open_case(
        self, account: SocialAccount, identity: Identity, post: Post, understood: Understanding, matched: list[str]
    ) -> Case:
        decision = self._route(account, identity, post, understood, matched)
        crisis = self.crisis(matched, {*understood.labels, understood.intent})
        # A post on a topic in crisis goes to the crisis queue even when its labels are unsure.
        triage = crisis is None and understood.needs_triage(self.triage_below)
        # Too unsure to route by: a person confirms the labels first (priority and SLA still apply).
        department_id = self.departments.get(triage_department_slug() if triage else decision.department)
        if not triage and decision.rule.split(" › ")[0] in ("", DEFAULT_RULE):
            # No playbook rule claimed the post: a listening query it matched may name a department.
            department_id = next(
                (self.matcher.departments[n] for n in matched if self.matcher.departments.get(n)), department_id
            )
        priority, tags = decision.priority, list(decision.tags)
        if crisis is not None:
            # Approval is not stored on the case: do_reply asks crisis mode live, so switching it
            # off restores direct publishing for these cases too.
            department_id = self.departments.get(crisis["department"] or "", department_id)
            priority, tags = min(priority, crisis["priority"]), [*tags, crisis["tag"]]
        case = unsaved(
            Case,
            organization_id=self.organization_id,
            department_id=department_id or self._fallback_department(),
            account_id=account.pk,
            status=CaseStatus.NEW,
            priority=priority,
            subject=post.text[:280],
            intent=understood.intent,
            intent_confidence=understood.intent_confidence,
            labels=understood.labels,
            sentiment=understood.sentiment,
            sentiment_score=understood.sentiment_score,
            sentiment_confidence=understood.sentiment_confidence,
            severity=understood.severity,
            severity_confidence=understood.severity_confidence,
            needs_triage=triage,
            language=understood.language,
            private_data=list(understood.private_data),
            listening=matched,
            reach=identity.followers,
            playbook_rule=decision.rule[:200],
            tags=tags,
            requires_approval=decision.requires_approval,
            reply_templates=[{"name": t.name, "text": t.text} for t in decision.templates],
            reply_privately=decision.private,
            playbook_version=self.version,
            opened_at=post.created_at,
            last_message_at=post.created_at,
        )
        # The playbook's priority is the floor; what the post says (severity, sentiment, reach) and the
        # customer's tier can raise it.
        # Scored as at opening, so an old imported post is not "breached" by the time it is read.
        signals = case.priority_signals(identity.customer_tier, now=case.opened_at)
        case.priority = min(case.priority, priority_score(signals).level)
        case.start_sla(self.playbook, decision, private=post.is_private)
        if identity.customer_id is None:
            case.customer = identity.customer  # created in this batch, saved before the case
        else:
            case.customer_id = identity.customer_id  # reading identity.customer would cost a query
        self.new_cases.append(case)
        if decision.notify or decision.escalate or decision.acknowledge is not None:
            self.follow_ups.append(
                Opened(
                    case=case,
                    decision=decision,
                    customer_handle=identity.handle,
                    channel=account.network,
                    posted_at=post.created_at,
                    in_crisis=crisis is not None,
                    replyable=not account.settings.get("imported"),
                )
            )
        return case

    def _route(
        self, account: SocialAccount, identity: Identity, post: Post, understood: Understanding, matched: list[str]
    ) -> Decision:
        return route(
            self.playbook,
            PostFacts(
                text=post.text,
                intent=understood.intent,
                sentiment=understood.sentiment,
                channel=account.network,
                followers=identity.followers,
                private_data=bool(understood.private_data),
                language=understood.language,
                severity=understood.severity,
                labels=frozenset(understood.labels),
                listening=frozenset(matched),
                tier=identity.customer_tier,
                account=account_key(account.handle),
                posted_at=post.created_at,
            ),
        )

    def _fallback_department(self) -> int:
        return self.departments.get("customer-service") or min(self.departments.values())

    def _add_message(
        self,
        case: Case,
        event: Event,
        post: Post,
        direction: str,
        identity: Identity | None,
        understood: Understanding | None,
        matched: list[str] | None = None,
    ) -> None:
        # Kept as a tuple of values: cases and identities get their ids only when saved.
        self.new_messages.append(
            (
                case,
                event.account_id,
                direction,
                Visibility.PRIVATE if post.is_private else Visibility.PUBLIC,
                post.external_id[:255],
                (post.in_reply_to_external_id or "")[:255] or None,
                identity,
                post.text,
                post.html,
                post.url[:1000],
                understood.as_json() | {"listening": matched or []} if understood else {},
                post.created_at,
                event.pk,
            )
        )
        self.case_of_message[(event.account_id, post.external_id)] = case

    def _touch(self, case: Case) -> None:
        if case.pk is not None:
            self.changed_cases[case.pk] = case

    def _save(self) -> None:
        to_json = column_adapter(Message._meta.get_field("classification"))
        to_time = column_adapter(Message._meta.get_field("created_at"))
        insert_objects(self.new_customers)
        insert_objects(self.new_identities)
        insert_objects(self.new_cases)
        insert_rows(
            Message,
            MESSAGE_FIELDS,
            (
                (
                    case.id,
                    account_id,
                    direction,
                    visibility,
                    external_id,
                    reply_to,
                    identity.id if identity else None,
                    text,
                    html,
                    url,
                    to_json(classification),
                    to_time(created_at),
                    event_id,
                )
                for (
                    case,
                    account_id,
                    direction,
                    visibility,
                    external_id,
                    reply_to,
                    identity,
                    text,
                    html,
                    url,
                    classification,
                    created_at,
                    event_id,
                ) in self.new_messages
            ),
        )
        if self.changed_cases:
            Case.objects.bulk_update(self.changed_cases.values(), ["status", "last_message_at", *SLA_FIELDS])
        if self.changed_identities:
            Identity.objects.bulk_update(self.changed_identities.values(), ["followers", "updated_at"])
        do_carry_out(self.organization_id, self.follow_ups, self.now)


def _customer_key(identity: Identity) -> int:
    # A customer created in this batch has no id yet; the Python object stands for it until saved.
    return identity.customer_id or id(identity.customer)
