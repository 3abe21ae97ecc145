"""Listening queries: editing them (audited) and matching posts against them in the workers."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Max, Sum
from django.utils import timezone

from hubbub.accounts.models import Department, Organization
from hubbub.connectors.base import Post
from hubbub.governance.actions import do_audit
from hubbub.inbox.models import Direction, Message
from hubbub.lib.query import MAX_TEXT, Document, QuerySet, QuerySyntaxError, Untranslatable, parse, to_network_rule
from hubbub.listening.models import ListeningQuery

log = logging.getLogger(__name__)

PREVIEW_POSTS = 5_000
PREVIEW_DAYS = 7
PREVIEW_EXAMPLES = 10


# --- editing --------------------------------------------------------------------------------


class ListeningError(ValueError):
    """An edit the caller should show to the user (a duplicate name, a bad query)."""


@transaction.atomic
def do_save_query(
    organization: Organization,
    actor,
    *,
    name: str,
    query: str,
    enabled: bool = True,
    department: Department | None = None,
    listening_query: ListeningQuery | None = None,
) -> ListeningQuery:
    """Create a query, or edit `listening_query`. Raises QuerySyntaxError or ListeningError."""
    name = name.strip()
    if not name:
        raise ListeningError("A query needs a name.")
    duplicate = ListeningQuery.objects.filter(organization=organization, name=name)
    if listening_query is not None:
        duplicate = duplicate.exclude(pk=listening_query.pk)
    if duplicate.exists():
        raise ListeningError(f"There is already a query named {name!r}.")
    if department is not None and department.organization_id != organization.pk:
        raise ListeningError("That department belongs to another organization.")
    creating = listening_query is None
    if listening_query is None:
        listening_query = ListeningQuery(
            organization=organization, created_by=actor if actor is not None and actor.is_authenticated else None
        )
    before = {"name": listening_query.name, "query": listening_query.query, "enabled": listening_query.enabled}
    listening_query.name = name
    listening_query.query = query
    listening_query.enabled = enabled
    listening_query.department = department
    listening_query.save()
    after = {"name": name, "query": query, "enabled": enabled}
    do_audit(
        organization,
        actor,
        "listening.create" if creating else "listening.edit",
        listening_query,
        **({"after": after} if creating else {"before": before, "after": after}),
    )
    return listening_query


@transaction.atomic
def do_set_enabled(listening_query: ListeningQuery, actor, enabled: bool) -> None:
    listening_query.enabled = enabled
    listening_query.save(update_fields=["enabled"])
    do_audit(
        listening_query.organization,
        actor,
        "listening.enable" if enabled else "listening.disable",
        listening_query,
        name=listening_query.name,
    )


@transaction.atomic
def do_delete_query(listening_query: ListeningQuery, actor) -> None:
    organization = listening_query.organization
    do_audit(
        organization,
        actor,
        "listening.delete",
        listening_query,
        name=listening_query.name,
        query=listening_query.query,
    )
    listening_query.delete()


# --- preview --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    scanned: int
    matched: int
    examples: list[Message]
    since: dt.datetime


def recent_inbound(organization_id: int, department_ids, now: dt.datetime | None = None):
    """The posts a preview runs on: the last PREVIEW_POSTS inbound messages of the last PREVIEW_DAYS."""
    since = (now or timezone.now()) - dt.timedelta(days=PREVIEW_DAYS)
    return (
        Message.objects.filter(
            case__organization_id=organization_id,
            case__department_id__in=department_ids,
            direction=Direction.INBOUND,
            created_at__gte=since,
        )
        .select_related("account", "identity")
        .only("id", "case_id", "text", "url", "created_at", "classification", "account__network", "identity__handle")
        .order_by("-created_at", "-id")[:PREVIEW_POSTS]
    ), since


def do_preview(organization_id: int, department_ids, query: str) -> Preview:
    """How many recent inbound posts the draft would match, and the newest few. Raises QuerySyntaxError."""
    parse(query)
    matcher = QuerySet({1: query})
    messages, since = recent_inbound(organization_id, department_ids)
    scanned = matched = 0
    examples: list[Message] = []
    for message in messages:
        scanned += 1
        if matcher.match(_document(message)):
            matched += 1
            if len(examples) < PREVIEW_EXAMPLES:
                examples.append(message)
    return Preview(scanned, matched, examples, since)


def _document(message: Message) -> Document:
    return Document(
        text=message.text[:MAX_TEXT],
        author=message.identity.handle if message.identity else "",
        lang=str((message.classification or {}).get("language") or ""),
        channel=message.account.network,
        url=message.url,
    )


# --- matching in the workers ----------------------------------------------------------------


class Matcher:
    """An organization's enabled queries, compiled together. Not thread-safe: one per process."""

    def __init__(self) -> None:
        self._set = QuerySet()
        self._sources: dict[int, tuple[str, str]] = {}  # id -> (name, query text)
        self.departments: dict[str, int | None] = {}  # query name -> department to route matches to

    def __len__(self) -> int:
        return len(self._set)

    def match(self, post: Post, channel: str, *, language: str = "") -> list[str]:
        """Names of the queries the post matches, sorted. `language` overrides the post's own."""
        doc = Document(
            text=post.text,
            author=post.author_handle,
            lang=language or post.language,
            channel=channel,
            url=post.url,
        )
        return sorted(self._sources[i][0] for i in self._set.match(doc))

    def update(self, rows: list[tuple[int, str, str, int | None]]) -> None:
        """Bring the set to exactly `rows` (id, name, query, department id), recompiling only what changed."""
        wanted = {row[0]: (row[1], row[2]) for row in rows}
        removed = [i for i in self._sources if i not in wanted]
        changed = {i: source for i, source in wanted.items() if self._sources.get(i) != source}
        if len(removed) + len(changed) > max(REBUILD_AFTER, len(self._sources) // 10):
            self._rebuild(wanted)
        else:
            for query_id in removed:
                self._set.remove(query_id)
                del self._sources[query_id]
            for query_id, (name, text) in changed.items():
                try:
                    self._set.replace(query_id, text)
                except QuerySyntaxError as exc:
                    _skipped(query_id, name, exc)
                    self._set.remove(query_id)
                    self._sources.pop(query_id, None)
                    continue
                self._sources[query_id] = (name, text)
        self.departments = {name: department for query_id, name, _, department in rows if query_id in self._sources}

    def _rebuild(self, wanted: dict[int, tuple[str, str]]) -> None:
        # Many changes at once (a worker's first call) are one build instead of many replace()s:
        # a build counts every query's keys first, so each query is indexed under its rarest clause.
        try:
            self._set = QuerySet({query_id: text for query_id, (_, text) in wanted.items()})
            self._sources = dict(wanted)
            return
        except QuerySyntaxError:
            pass  # rare: find every bad query, then build from the rest
        good: dict[int, tuple[str, str]] = {}
        for query_id, (name, text) in wanted.items():
            try:
                parse(text)
            except QuerySyntaxError as exc:
                _skipped(query_id, name, exc)
                continue
            good[query_id] = (name, text)
        self._set = QuerySet({query_id: text for query_id, (_, text) in good.items()})
        self._sources = good


# Beyond this many changed queries (or a tenth of them) the matcher is built afresh.
REBUILD_AFTER = 32


def _skipped(query_id: int, name: str, exc: QuerySyntaxError) -> None:
    # Saved by an older parser, or written to the database directly: one bad query must not
    # stop the worker matching the others.
    log.warning("listening query %s (%r) skipped: %s", query_id, name, exc)


# Per thread: a matcher is edited in place when its queries change, which must not happen
# under another thread's match().
_local = threading.local()


def _version(organization_id: int) -> tuple:
    found = ListeningQuery.objects.filter(organization_id=organization_id).aggregate(
        count=Count("id"), last_id=Max("id"), revisions=Sum("revision"), updated=Max("updated_at")
    )
    return (found["count"], found["last_id"], found["revisions"], found["updated"])


def matcher_for(organization_id: int) -> Matcher:
    """The compiled matcher of the organization's enabled queries, cached in this process.

    One aggregate query per call checks whether any query was created, edited, enabled,
    disabled or deleted since the matcher was built; only then are the queries read again, and
    only the changed ones recompiled, so an edit reaches a running worker on its next batch.
    """
    cache: dict[int, tuple[tuple, Matcher]] = _local.__dict__.setdefault("matchers", {})
    version = _version(organization_id)
    cached = cache.get(organization_id)
    if cached is not None and cached[0] == version:
        return cached[1]
    matcher = cached[1] if cached is not None else Matcher()
    rows = list(
        ListeningQuery.objects.filter(organization_id=organization_id, enabled=True)
        .order_by("id")
        .values_list("id", "name", "query", "department_id")
    )
    matcher.update(rows)
    cache[organization_id] = (version, matcher)
    return matcher


def network_rules(organization_id: int, network: str) -> dict[str, str]:
    """The enabled queries in the network's own search syntax, by query name.

    Each rule lets through at least every post its query matches (the matcher narrows them
    again); a query the network cannot filter for is left out, with the reason in the log.
    """
    rules: dict[str, str] = {}
    queries = ListeningQuery.objects.filter(organization_id=organization_id, enabled=True).order_by("name")
    for name, text in queries.values_list("name", "query"):
        try:
            rules[name] = to_network_rule(text, network)
        except (QuerySyntaxError, Untranslatable) as exc:
            log.info("listening query %r has no %s rule: %s", name, network, exc)
    return rules
