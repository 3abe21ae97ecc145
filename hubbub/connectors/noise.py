"""Spam and noise in the pipeline: filter a batch by the organization's rules, and restore.

`sift` runs between reading a batch and threading it: the posts the rules judge noise stay
InboundEvents in state FILTERED, with their rule and reason and their raw payload untouched,
and never become cases. Reposts and duplicates are counted onto the post they repeat
(`InboundEvent.engagement`). A supervisor sees them on the Filtered page and can restore one,
or all of a rule: a restored event goes back to PENDING, marked so the rules let it through,
and the worker threads it like any other post. Every restore is audited.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.db.models import Count, QuerySet
from django.http import Http404
from django.utils import timezone

from hubbub.accounts.models import Membership, Organization
from hubbub.connectors.base import Post
from hubbub.connectors.models import EventState, InboundEvent
from hubbub.governance.actions import do_audit
from hubbub.inbox.access import check_supervisor, parse_id
from hubbub.lib.noise import DEFAULT_RULES, RULES, Item, NoiseMemory, NoiseRules, Verdict, judge
from hubbub.playbook.actions import active_playbook

if TYPE_CHECKING:
    from hubbub.inbox.pipeline import Event

# One UPDATE carries at most this many per-event values (a CASE arm each).
CHUNK = 500

# Per worker process and organization: what duplicates and campaigns are compared with.
_memories: dict[int, NoiseMemory] = {}


class NoiseActionError(Exception):
    """A restore that cannot be done; the message is for the supervisor."""


def noise_rules(organization_id: int) -> NoiseRules:
    """The rules of the organization's active playbook; the defaults when it has none."""
    _, playbook = active_playbook(organization_id)
    return playbook.noise if playbook is not None else DEFAULT_RULES


def sift(
    organization_id: int, items: list[tuple[Event, Post]], rules: NoiseRules | None = None
) -> list[tuple[Event, Post]]:
    """The items to keep. The rest are marked FILTERED with their rule and reason, in bulk.

    Call it inside the batch's transaction: if the batch rolls back, so do the filter marks.
    Brand posts are never filtered (they are our own replies), nor are restored events.
    """
    if rules is None:
        rules = noise_rules(organization_id)
    if not items or not (rules.reposts or rules.duplicates or rules.campaigns or rules.bots):
        return items
    judged = [(event, post) for event, post in items if not post.from_brand]
    memory = _memories.setdefault(organization_id, NoiseMemory())
    verdicts = judge([_item(event, post) for event, post in judged], rules, memory)
    filtered = {event.pk: verdict for (event, _), verdict in zip(judged, verdicts, strict=True) if verdict is not None}
    if not filtered:
        return items
    for pk in InboundEvent.objects.filter(pk__in=list(filtered), noise_exempt=True).values_list("pk", flat=True):
        del filtered[pk]
    if not filtered:
        return items
    accounts = {event.pk: event.account_id for event, _ in judged}
    _mark_filtered(filtered)
    _add_engagement(Counter((accounts[pk], v.fold_onto[1]) for pk, v in filtered.items() if v.fold_onto))
    return [(event, post) for event, post in items if event.pk not in filtered]


def _item(event: Event, post: Post) -> Item:
    return Item(
        key=event.pk,
        account_id=event.account_id,
        external_id=post.external_id,
        # Prefixed by the account so that one handle on two networks is two authors.
        author=f"{event.account_id}:{post.author_handle}",
        text=post.text,
        created_at=post.created_at,
        is_repost=post.is_repost,
        repost_of=post.repost_of_external_id,
        quote_of=post.quote_of_external_id,
        author_is_bot=post.author_is_bot,
        is_private=post.is_private,
        in_reply_to=post.in_reply_to_external_id,
    )


def _mark_filtered(filtered: dict[int, Verdict]) -> None:
    now = timezone.now()
    by_rule: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for pk, verdict in filtered.items():
        folded = verdict.fold_onto[1][:255] if verdict.fold_onto else ""
        by_rule[verdict.rule].append((pk, verdict.reason[:500], folded))
    for rule, rows in by_rule.items():
        _update_from_values(
            "state = %s, noise_rule = %s, noise_reason = v.column2, folded_onto = v.column3,"
            " processed_at = %s, error = '', attempts = {table}.attempts + 1",
            [EventState.FILTERED.value, rule, connection.ops.adapt_datetimefield_value(now)],
            "{table}.id = v.column1",
            rows,
        )


def _add_engagement(counts: Counter[tuple[int, str]]) -> None:
    """Add (or with negative counts, take back) folded posts onto the posts they repeat."""
    rows = [(account_id, external_id[:255], n) for (account_id, external_id), n in counts.items() if n]
    _update_from_values(
        "engagement = CASE WHEN {table}.engagement + v.column3 < 0 THEN 0 ELSE {table}.engagement + v.column3 END",
        [],
        "{table}.account_id = v.column1 AND {table}.external_id = v.column2",
        rows,
    )


def _update_from_values(assignments: str, params: list, join: str, rows: list[tuple]) -> None:
    """UPDATE … FROM (VALUES …): per-row values in one statement per chunk.

    Both SQLite (3.33+) and PostgreSQL read this, and both name the VALUES columns column1,
    column2, …. The ORM's CASE WHEN arms would cost a second of Python per 2,000 rows.
    """
    if not rows:
        return
    table = connection.ops.quote_name(InboundEvent._meta.db_table)
    width = len(rows[0])
    with connection.cursor() as cursor:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            values = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(chunk))
            # Only our own constants and placeholders are formatted in; every value is a parameter.
            sql = f"UPDATE {table} SET {assignments} FROM (VALUES {values}) AS v WHERE {join}".format(  # noqa: S608
                table=table
            )
            cursor.execute(sql, [*params, *(value for row in chunk for value in row)])


# --- the Filtered page: who may see what, and restores ------------------------------------------


def filtered_events(membership: Membership) -> QuerySet[InboundEvent]:
    """Filtered events of the member's organization. Supervisors and admins only: filtered posts
    have no department yet, so who may see them cannot be narrowed further."""
    check_supervisor(membership)
    return InboundEvent.objects.filter(
        account__organization_id=membership.organization_id, state=EventState.FILTERED
    ).select_related("account")


def filtered_counts(membership: Membership) -> dict[str, int]:
    counts = dict(filtered_events(membership).order_by().values_list("noise_rule").annotate(n=Count("id")))
    return {rule: counts.get(rule, 0) for rule in RULES} | {k: v for k, v in counts.items() if k not in RULES}


def access_filtered_event(membership: Membership, event_id) -> InboundEvent:
    event = filtered_events(membership).select_related("account__organization").filter(pk=parse_id(event_id)).first()
    if event is None:
        raise Http404("no such filtered event")
    return event


def access_rule(rule: str) -> str:
    if rule not in RULES:
        raise Http404("no such rule")
    return rule


@transaction.atomic
def do_restore_filtered(event: InboundEvent, user) -> None:
    """Send one filtered post back through the pipeline, past the noise rules."""
    locked = InboundEvent.objects.select_for_update().filter(pk=event.pk).first()
    if locked is None or locked.state != EventState.FILTERED:
        raise NoiseActionError("this post is no longer filtered")
    locked.restore()
    locked.save(update_fields=["state", "noise_exempt", "processed_at"])
    if locked.folded_onto:
        _add_engagement(Counter({(locked.account_id, locked.folded_onto): -1}))
    event.state = locked.state
    do_audit(
        event.account.organization,
        user,
        "event.restored",
        locked,
        rule=locked.noise_rule,
        reason=locked.noise_reason,
    )


@transaction.atomic
def do_restore_rule(organization: Organization, rule: str, user) -> int:
    """Restore every post one rule filtered in the organization. Returns how many."""
    if rule not in RULES:
        raise NoiseActionError(f"no noise rule {rule[:50]!r}")
    # Two supervisors restoring at once must not both take back the same engagement.
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    events = InboundEvent.objects.filter(
        account__organization_id=organization.pk, state=EventState.FILTERED, noise_rule=rule
    )
    folded = Counter(
        {
            (account_id, external_id): -n
            for account_id, external_id, n in events.exclude(folded_onto="")
            .order_by()
            .values_list("account_id", "folded_onto")
            .annotate(n=Count("id"))
        }
    )
    count = events.update(state=EventState.PENDING, noise_exempt=True, processed_at=None)
    _add_engagement(folded)
    do_audit(organization, user, "noise.restored", None, rule=rule, count=count)
    return count
