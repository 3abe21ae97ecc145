"""Playbook rules: parse and validate the YAML, then route a post with the first rule that matches.

An organization has one *intake* playbook, which picks the department, and may have one playbook
per department, which that department's posts then run through. The intake playbook looks like
this::

    default:
      department: customer-service
      priority: normal
      first_response_minutes: 60
    templates:
      apology: "Sorry to hear that, {customer_name}. We are on it (case {case_id})."
    rules:
      - name: Legal threats
        when:
          intent: [legal_threat]
        then:
          department: legal
          priority: urgent
          first_response_minutes: 30
          requires_approval: true
          notify: [marketing]

Conditions in one `when` must all hold; a list inside a condition means "any of". Conditions:
terms, intent, sentiment, channel, language, min_followers, max_followers, private_data,
min_severity (0-4), labels (any of hubbub.lib.classify.LABELS), listening (names of listening
queries the post matched), and these three::

    when:
      tier: [vip, premium]        # the customer's tier: standard, premium or vip (TIERS)
      account: [mastodon:acme, acme_help]
      business_hours: false       # true: the post came in business hours; false: outside them

`account` names the brand's own accounts the post came to. `network:handle` is that one account;
a handle alone is the brand's account of that handle on any network. Handles are read without a
leading @ and whatever their case; a handle that contains a colon is written with its network.
Publishing refuses a handle that none of the organization's accounts has. `business_hours` reads
the intake playbook's `business_hours:` calendar (department playbooks use the intake's) at the
time the post was written; without a `business_hours:` section every hour is a business hour.

Actions: department, priority, first_response_minutes, next_response_minutes, resolution_minutes,
tags, requires_approval, templates (names of suggested replies), acknowledge (the name of the
template sent automatically), private (move the conversation private), notify (departments told
of the case, with a hand-off receipt) and escalate. Templates may use the placeholders in
PLACEHOLDERS; `{{` and `}}` write a literal brace.

A department's playbook has the same shape, but its `default` is optional and partial, and it
has no `noise:` section. Its first matching rule (or its default) refines the intake's decision:
values it sets replace the intake's, tags and notified departments add up, and the flags (approval,
private, escalate) switch on. A `department` in a department's playbook hands the post to that
department, whose playbook then runs in turn; a set whose hand-offs could loop is refused.

An optional `sla:` section of the intake playbook sets SLA targets per priority and per channel
(a public reply and a private one can run different clocks), in minutes of business time, when
the warning comes (a fraction of the target elapsed) and the escalation chain walked on a breach::

    sla:
      warn_at: 0.8
      targets:
        public:
          urgent: {first_response: 15, next_response: 30, resolution: 240}
          normal: {first_response: 60, next_response: 120, resolution: 1440}
        private:
          normal: {first_response: 120, next_response: 240, resolution: 2880}
      escalation:
        - notify_supervisor
        - raise_priority
        - reassign: supervisor        # or queue: unassigned, routing hands it on
        - notify_department: legal
          after_minutes: 30           # business minutes after the breach (default 0)

A priority without targets takes the nearest more urgent one's. A rule's own `*_minutes` beat
the policy; the policy beats the default's minutes. Without `escalation` a breach notifies the
supervisors and raises the priority.

An optional `noise:` section of the intake playbook switches the spam and noise rules
(hubbub.lib.noise) off or tunes them; each rule is `true`, `false`, or a mapping of its settings::

    noise:
      reposts: true
      duplicates: {window_minutes: 60}
      campaigns: {min_authors: 5, window_minutes: 10, min_length: 40}
      bots: {handle_patterns: ["*_bot"], max_posts_per_hour: 60}
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

import yaml

from hubbub.lib.classify import LABELS
from hubbub.lib.noise import DEFAULT_RULES, NoiseRules
from hubbub.lib.priority import STANDARD_TIER, TIERS
from hubbub.lib.sla import (
    DEFAULT_ESCALATION,
    DEFAULT_WARN_AT,
    Calendar,
    Channel,
    EscalationStep,
    Policy,
    ReassignTo,
    SlaError,
    StepKind,
    Targets,
)

MAX_TEXT = 2000
# The name a decision carries when no rule matched and the default applied.
DEFAULT_RULE = "default"
PRIORITIES = {"urgent": 1, "high": 2, "normal": 3, "low": 4}
PRIORITY_NAMES = {number: name for name, number in PRIORITIES.items()}
INTENTS = {"complaint", "question", "praise", "sales_lead", "legal_threat", "other"}
SENTIMENTS = {"negative", "neutral", "positive"}
CONDITIONS = {
    "terms",
    "intent",
    "sentiment",
    "channel",
    "min_followers",
    "max_followers",
    "private_data",
    "language",
    "min_severity",
    "labels",
    "listening",
    "tier",
    "account",
    "business_hours",
}
SLA_ACTIONS = ("first_response_minutes", "next_response_minutes", "resolution_minutes")
FLAG_ACTIONS = ("requires_approval", "private", "escalate")
ACTIONS = {"department", "priority", *SLA_ACTIONS, *FLAG_ACTIONS, "tags", "templates", "acknowledge", "notify"}
# The intake's default must decide these, so that every post gets a queue and a clock.
REQUIRED_DEFAULT = ("department", "priority", "first_response_minutes")
# What a response template may refer to; the inbox fills them in when an agent picks a template.
PLACEHOLDERS = {
    "customer_name",
    "customer_handle",
    "case_id",
    "department",
    "agent_name",
    "brand",
    "channel",
}
MAX_TEMPLATE = 2000
MAX_TEMPLATES = 200
MAX_TAGS = 20
MAX_TAG = 50
# A week: longer targets are typos (minutes for hours) rather than policy.
MAX_MINUTES = 7 * 24 * 60 * 4
# noise rule -> its settings: (NoiseRules field, smallest, largest value)
NOISE_SETTINGS: dict[str, dict[str, tuple[str, int, int]]] = {
    "reposts": {},
    "duplicates": {"window_minutes": ("duplicate_window_minutes", 1, 7 * 24 * 60)},
    "campaigns": {
        "min_authors": ("campaign_min_authors", 2, 100_000),
        "window_minutes": ("campaign_window_minutes", 1, 24 * 60),
        "min_length": ("campaign_min_length", 1, 500),
    },
    "bots": {"max_posts_per_hour": ("bot_max_posts_per_hour", 0, 100_000)},
}
MAX_BOT_PATTERNS = 50
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,50}$")
# `{{` and `}}` are literal braces; `{name}` is a placeholder; anything else between braces is refused.
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]{0,60})\}")


class PlaybookError(ValueError):
    """The playbook cannot be used; `path` says where (e.g. "rules[2].when.intent")."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class PostFacts:
    """What routing may look at."""

    text: str
    intent: str = "other"
    sentiment: str = "neutral"
    channel: str = ""
    followers: int | None = None
    private_data: bool = False
    language: str = ""
    severity: int = 0  # 0 (no reproach) .. 4 (blame)
    labels: frozenset[str] = frozenset()  # every label of hubbub.lib.classify.LABELS that holds
    listening: frozenset[str] = frozenset()  # names of the listening queries the post matched
    tier: str = STANDARD_TIER  # the customer's tier (TIERS)
    account: str = ""  # the brand account's handle (account_key): the post came to it on `channel`
    posted_at: dt.datetime | None = None  # when the customer wrote it; None: never in or out of business hours


@dataclass(frozen=True)
class ResponseTemplate:
    """A suggested reply. Rendering substitutes text for placeholders and never evaluates anything;
    the result is plain text that the page showing it escapes like any other."""

    name: str
    text: str

    def render(self, values: Mapping[str, object]) -> str:
        def substitute(match: re.Match[str]) -> str:
            token = match.group(0)
            if token in ("{{", "}}"):
                return token[0]
            value = values.get(match.group(1))
            return "" if value is None else str(value)

        return _TEMPLATE_TOKEN.sub(substitute, self.text)


@dataclass(frozen=True)
class Decision:
    department: str
    priority: int
    first_response_minutes: int
    rule: str
    # None: the SLA policy's own target applies.
    next_response_minutes: int | None = None
    resolution_minutes: int | None = None
    tags: tuple[str, ...] = ()
    requires_approval: bool = False
    templates: tuple[ResponseTemplate, ...] = ()
    private: bool = False
    acknowledge: ResponseTemplate | None = None
    # Departments told of the case without working it; each gets a hand-off receipt.
    notify: tuple[str, ...] = ()
    escalate: bool = False
    # The departments whose playbooks handed the post on, in order, before `department`.
    handoffs: tuple[str, ...] = ()

    @property
    def priority_name(self) -> str:
        return PRIORITY_NAMES.get(self.priority, str(self.priority))


@dataclass(frozen=True)
class Actions:
    """What one rule (or a default) sets; None and empty mean "leave as decided so far"."""

    department: str | None = None
    priority: int | None = None
    first_response_minutes: int | None = None
    next_response_minutes: int | None = None
    resolution_minutes: int | None = None
    tags: tuple[str, ...] = ()
    requires_approval: bool | None = None
    templates: tuple[ResponseTemplate, ...] = ()
    private: bool | None = None
    acknowledge: ResponseTemplate | None = None
    notify: tuple[str, ...] = ()
    escalate: bool | None = None

    def is_empty(self) -> bool:
        return self == Actions()

    def apply(self, decision: Decision, rule: str) -> Decision:
        # Built field by field rather than with dataclasses.replace(): dry runs call this per post.
        return Decision(
            department=self.department if self.department is not None else decision.department,
            priority=self.priority if self.priority is not None else decision.priority,
            first_response_minutes=_first(self.first_response_minutes, decision.first_response_minutes),
            rule=rule,
            next_response_minutes=_first(self.next_response_minutes, decision.next_response_minutes),
            resolution_minutes=_first(self.resolution_minutes, decision.resolution_minutes),
            tags=_union(decision.tags, self.tags),
            # A later playbook may add a requirement, never lift one an earlier playbook set.
            requires_approval=decision.requires_approval or bool(self.requires_approval),
            templates=_union(decision.templates, self.templates),
            private=decision.private or bool(self.private),
            acknowledge=self.acknowledge if self.acknowledge is not None else decision.acknowledge,
            notify=_union(decision.notify, self.notify),
            escalate=decision.escalate or bool(self.escalate),
            handoffs=decision.handoffs,
        )


def _first[T](value: T | None, otherwise: T) -> T:
    return value if value is not None else otherwise


def _union[T](first: tuple[T, ...], second: tuple[T, ...]) -> tuple[T, ...]:
    if not second:
        return first
    return tuple(dict.fromkeys(first + second))


@dataclass
class Rule:
    name: str
    then: Actions = field(default_factory=Actions)
    terms: re.Pattern[str] | None = None
    intents: frozenset[str] | None = None
    sentiments: frozenset[str] | None = None
    channels: frozenset[str] | None = None
    languages: frozenset[str] | None = None
    min_followers: int | None = None
    max_followers: int | None = None
    private_data: bool | None = None
    min_severity: int | None = None
    labels: frozenset[str] | None = None
    listening: frozenset[str] | None = None
    tiers: frozenset[str] | None = None
    # (network, account_key(handle)); network "" for a handle on any network.
    accounts: frozenset[tuple[str, str]] | None = None
    business_hours: bool | None = None

    def matches(self, post: PostFacts, text: str, calendar: Calendar) -> bool:
        """`calendar`: the intake playbook's business hours."""
        if self.intents is not None and post.intent not in self.intents:
            return False
        if self.sentiments is not None and post.sentiment not in self.sentiments:
            return False
        if self.channels is not None and post.channel not in self.channels:
            return False
        if self.languages is not None and post.language not in self.languages:
            return False
        if self.private_data is not None and post.private_data != self.private_data:
            return False
        if self.min_severity is not None and post.severity < self.min_severity:
            return False
        # Any one of the listed labels (or listening queries) is enough.
        if self.labels is not None and self.labels.isdisjoint(post.labels):
            return False
        if self.listening is not None and self.listening.isdisjoint(post.listening):
            return False
        if self.tiers is not None and post.tier not in self.tiers:
            return False
        if (
            self.accounts is not None
            and (post.channel, post.account) not in self.accounts
            and ("", post.account) not in self.accounts
        ):
            return False
        followers = post.followers or 0
        if self.min_followers is not None and followers < self.min_followers:
            return False
        if self.max_followers is not None and followers > self.max_followers:
            return False
        if self.terms is not None and self.terms.search(text) is None:
            return False
        # Last: the calendar is the dearest question, asked only of a rule that otherwise matches.
        if self.business_hours is not None:
            return post.posted_at is not None and calendar.is_open(post.posted_at) == self.business_hours
        return True


def account_key(handle: str) -> str:
    """A brand account's handle as `account` conditions compare it: no leading @, lower case."""
    return handle.strip().lstrip("@").lower()


# Where a decision starts when a department playbook is used on its own (only dry runs do that).
_EMPTY_DECISION = Decision(department="", priority=PRIORITIES["normal"], first_response_minutes=60, rule="")


@dataclass
class CompiledPlaybook:
    """One playbook: the intake's (`department` None) or one department's."""

    default_actions: Actions
    rules: list[Rule] = field(default_factory=list)
    noise: NoiseRules = DEFAULT_RULES
    templates: dict[str, ResponseTemplate] = field(default_factory=dict)
    department: str | None = None
    # When SLA clocks run (intake only); 24/7 when the playbook sets no business hours.
    calendar: Calendar = field(default_factory=Calendar.always_open)
    # SLA targets, warning and escalation chain (intake only), in `calendar`.
    sla: Policy | None = None
    # The decision when no rule matches (complete for an intake playbook); set in __post_init__.
    default: Decision = field(init=False)

    def __post_init__(self) -> None:
        if self.sla is None:
            self.sla = default_policy(self.calendar)
        # Every outcome of this playbook alone is known in advance: routing only picks one.
        self.default = self.default_actions.apply(_EMPTY_DECISION, DEFAULT_RULE)
        self._decisions = [rule.then.apply(self.default, rule.name) for rule in self.rules]

    def _first_match(self, post: PostFacts, calendar: Calendar) -> int:
        text = post.text[:MAX_TEXT]
        for index, rule in enumerate(self.rules):
            if rule.matches(post, text, calendar):
                return index
        return -1

    def match(self, post: PostFacts, calendar: Calendar) -> tuple[str, Actions]:
        """The first matching rule's name and actions, else the default's; `calendar` is the intake's
        business hours (a department's playbook has none of its own)."""
        index = self._first_match(post, calendar)
        if index < 0:
            return DEFAULT_RULE, self.default_actions
        return self.rules[index].name, self.rules[index].then

    def route(self, post: PostFacts) -> Decision:
        """This playbook alone (an intake playbook, without the departments' playbooks)."""
        index = self._first_match(post, self.calendar)
        return self.default if index < 0 else self._decisions[index]

    def departments(self) -> set[str]:
        """Every department this playbook names (routes to, hands to or notifies)."""
        named = {self.default_actions.department} | {r.then.department for r in self.rules}
        for actions in [self.default_actions] + [r.then for r in self.rules]:
            named.update(actions.notify)
        return {slug for slug in named if slug}

    def handoffs(self) -> set[str]:
        """The departments a department's playbook may hand its posts to."""
        targets = {self.default_actions.department} | {r.then.department for r in self.rules}
        return {slug for slug in targets if slug and slug != self.department}


def default_policy(calendar: Calendar) -> Policy:
    """No `sla:` section: no per-priority targets (routing's minutes apply), the default warning
    and escalation chain."""
    return Policy(name="sla", calendar=calendar, targets={}, warn_fraction=1 - DEFAULT_WARN_AT)


class Router(Protocol):
    noise: NoiseRules
    calendar: Calendar

    def route(self, post: PostFacts) -> Decision: ...


@dataclass
class PlaybookSet:
    """The intake playbook plus the departments' playbooks: what the pipeline routes with."""

    intake: CompiledPlaybook
    by_department: dict[str, CompiledPlaybook] = field(default_factory=dict)

    @property
    def noise(self) -> NoiseRules:
        return self.intake.noise

    @property
    def calendar(self) -> Calendar:
        return self.intake.calendar

    @property
    def sla(self) -> Policy:
        return self.intake.sla or default_policy(self.intake.calendar)

    @property
    def default(self) -> Decision:
        return self.intake.default

    def route(self, post: PostFacts) -> Decision:
        decision = self.intake.route(post)
        seen = {decision.department}
        while (playbook := self.by_department.get(decision.department)) is not None:
            name, actions = playbook.match(post, self.intake.calendar)
            if actions.is_empty():
                break
            current = decision.department
            decided = actions.apply(decision, f"{decision.rule} › {current}: {name}")
            if decided.department == current:
                return decided
            if decided.department in seen:
                # check_set() refuses such sets at publish; never spin if one got through anyway.
                return decision
            seen.add(decided.department)
            decision = replace(decided, handoffs=decision.handoffs + (current,))
        return decision


def check_set(playbook_set: PlaybookSet, departments: set[str]) -> None:
    """Refuse a set that names a department the organization lacks or whose hand-offs loop.
    Errors name the playbook: "customer-service: rules[2].then.department"."""
    for slug, playbook in playbook_set.by_department.items():
        if slug not in departments:
            raise PlaybookError(slug, f"no department {slug!r} to own this playbook")
        _check_departments(playbook, departments, prefix=f"{slug}: ")
    _check_departments(playbook_set.intake, departments, prefix="")
    edges = {slug: sorted(p.handoffs()) for slug, p in playbook_set.by_department.items()}
    loop = _find_loop(edges)
    if loop:
        raise PlaybookError(loop[0], "hand-offs loop between departments: " + " → ".join(loop))


def check_accounts(playbook: CompiledPlaybook, accounts: Iterable[tuple[str, str]], prefix: str = "") -> None:
    """Refuse an `account` condition that names none of the organization's accounts, given as
    (network, handle). Only the playbook being published is checked: an account removed later
    leaves running playbooks alone (their condition just never holds)."""
    known = {(network, account_key(handle)) for network, handle in accounts}
    handles = {handle for _, handle in known}
    for index, rule in enumerate(playbook.rules):
        for network, handle in sorted(rule.accounts or ()):
            if ((network, handle) in known) if network else (handle in handles):
                continue
            listed = ", ".join(f"{n}:{h}" for n, h in sorted(known)) or "none yet"
            name = f"{network}:{handle}" if network else handle
            raise PlaybookError(f"{prefix}rules[{index}].when.account", f"no account {name!r} (known: {listed})")


def _find_loop(edges: dict[str, list[str]]) -> list[str]:
    """A cycle in the hand-off graph as [a, b, …, a], or [] when there is none."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in edges.get(node, []):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return []


def _check_departments(playbook: CompiledPlaybook, departments: set[str], prefix: str) -> None:
    named = [("default", playbook.default_actions)] + [
        (f"rules[{i}].then", r.then) for i, r in enumerate(playbook.rules)
    ]
    for where, actions in named:
        if actions.department and actions.department not in departments:
            raise PlaybookError(
                f"{prefix}{where}.department",
                f"no department {actions.department!r} (known: {', '.join(sorted(departments))})",
            )
        for slug in actions.notify:
            if slug not in departments:
                raise PlaybookError(
                    f"{prefix}{where}.notify", f"no department {slug!r} (known: {', '.join(sorted(departments))})"
                )
    if playbook.department is None and playbook.sla is not None:
        for index, step in enumerate(playbook.sla.escalation):
            if step.kind == StepKind.NOTIFY_DEPARTMENT and step.department not in departments:
                raise PlaybookError(
                    f"{prefix}sla.escalation[{index}].notify_department",
                    f"no department {step.department!r} (known: {', '.join(sorted(departments))})",
                )


def yaml_error(exc: yaml.YAMLError) -> PlaybookError:
    """PyYAML's complaint, pointing at its line and column."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return PlaybookError(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")


def parse_yaml(source: str, department: str | None = None) -> dict[str, Any]:
    """YAML text -> the plain data stored in Playbook.rules. Raises PlaybookError."""
    if len(source) > 200_000:
        raise PlaybookError("", "the playbook is larger than 200 KB")
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise yaml_error(exc) from exc
    if data is None and department is not None:
        data = {}
    if not isinstance(data, dict):
        raise PlaybookError("", "a playbook is a mapping with `default` and `rules`")
    hours = data.get("business_hours")
    if isinstance(hours, dict) and isinstance(hours.get("holidays"), list):
        # YAML reads 2026-12-25 as a date; the stored rules are JSON, so keep it as text.
        hours["holidays"] = [d.isoformat() if isinstance(d, dt.date) else d for d in hours["holidays"]]
    compile_playbook(data, department=department)
    return data


def compile_playbook(
    data: dict[str, Any], departments: set[str] | None = None, department: str | None = None
) -> CompiledPlaybook:
    """Validate plain playbook data and build the router: the intake's, or `department`'s.
    `departments` are the known slugs, if checked."""
    intake_only = {"noise", "business_hours", "sla"}
    allowed = {"name", "default", "rules", "templates"} | (intake_only if department is None else set())
    unknown = set(data) - allowed
    if unknown:
        key = sorted(unknown)[0]
        if key == "noise":
            raise PlaybookError(key, "only the intake playbook filters noise")
        if key == "business_hours":
            raise PlaybookError(key, "business hours are set once, in the intake playbook")
        if key == "sla":
            raise PlaybookError(key, "SLA targets and escalation are set once, in the intake playbook")
        raise PlaybookError(key, "unknown key (expected " + ", ".join(sorted(allowed)) + ")")
    templates = _templates(data.get("templates"))
    default_data = data.get("default")
    if department is None and not isinstance(default_data, dict):
        raise PlaybookError("default", "required: " + ", ".join(REQUIRED_DEFAULT))
    if default_data is not None and not isinstance(default_data, dict):
        raise PlaybookError("default", "must be a mapping of actions")
    default_actions = _actions("default", default_data or {}, templates)
    if department is None:
        for key in REQUIRED_DEFAULT:
            if getattr(default_actions, key) is None:
                raise PlaybookError(f"default.{key}", "required")
    rules_data = data.get("rules") or []
    if not isinstance(rules_data, list):
        raise PlaybookError("rules", "must be a list of rules")
    rules = [_rule(f"rules[{i}]", item, templates) for i, item in enumerate(rules_data)]
    calendar = _business_hours(data.get("business_hours"))
    compiled = CompiledPlaybook(
        default_actions=default_actions,
        rules=rules,
        noise=_noise(data.get("noise")),
        templates=templates,
        department=department,
        calendar=calendar,
        sla=_sla(data.get("sla"), calendar) if department is None else None,
    )
    if departments is not None:
        _check_departments(compiled, departments, prefix="")
    return compiled


def _templates(data: Any) -> dict[str, ResponseTemplate]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PlaybookError("templates", "must map template names to their text")
    if len(data) > MAX_TEMPLATES:
        raise PlaybookError("templates", f"at most {MAX_TEMPLATES} templates")
    templates = {}
    for name, text in data.items():
        where = f"templates.{name}"
        if not isinstance(name, str) or not _TEMPLATE_NAME.match(name):
            raise PlaybookError(where, "a template name is up to 50 letters, digits, - or _")
        if not isinstance(text, str) or not text.strip():
            raise PlaybookError(where, "must be the text of the reply")
        if len(text) > MAX_TEMPLATE:
            raise PlaybookError(where, f"longer than {MAX_TEMPLATE} characters")
        _check_placeholders(where, text)
        templates[name] = ResponseTemplate(name=name, text=text)
    return templates


def _check_placeholders(path: str, text: str) -> None:
    for match in _TEMPLATE_TOKEN.finditer(text):
        name = match.group(1)
        if name is not None and name not in PLACEHOLDERS:
            raise PlaybookError(
                path, f"unknown placeholder {{{name[:60]}}} (known: " + ", ".join(sorted(PLACEHOLDERS)) + ")"
            )
    rest = _TEMPLATE_TOKEN.sub("", text)
    if "{" in rest or "}" in rest:
        raise PlaybookError(path, "a brace without its pair; write {{ or }} for a brace in the text")


def _rule(path: str, item: Any, templates: dict[str, ResponseTemplate]) -> Rule:
    if not isinstance(item, dict):
        raise PlaybookError(path, "a rule is a mapping with name, when and then")
    unknown = set(item) - {"name", "when", "then"}
    if unknown:
        raise PlaybookError(f"{path}.{sorted(unknown)[0]}", "unknown key (expected name, when, then)")
    name = str(item.get("name") or path)[:200]
    then = item.get("then")
    if not isinstance(then, dict) or not then:
        raise PlaybookError(f"{path}.then", "required: at least one of " + ", ".join(sorted(ACTIONS)))
    rule = Rule(name=name, then=_actions(f"{path}.then", then, templates))
    when = item.get("when") or {}
    if not isinstance(when, dict):
        raise PlaybookError(f"{path}.when", "must be a mapping of conditions")
    for key, value in when.items():
        where = f"{path}.when.{key}"
        if key not in CONDITIONS:
            raise PlaybookError(where, "unknown condition (known: " + ", ".join(sorted(CONDITIONS)) + ")")
        if key == "terms":
            terms = _strings(where, value)
            if any(not t.strip() for t in terms):
                raise PlaybookError(where, "terms cannot be empty")
            # Escaped alternation: user text never becomes a regex operator, so no backtracking blow-up.
            alternation = "|".join(re.escape(t.strip()) for t in sorted(terms, key=len, reverse=True))
            rule.terms = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)
        elif key == "intent":
            rule.intents = _choices(where, value, INTENTS)
        elif key == "sentiment":
            rule.sentiments = _choices(where, value, SENTIMENTS)
        elif key == "channel":
            rule.channels = frozenset(_strings(where, value))
        elif key == "language":
            rule.languages = frozenset(_strings(where, value))
        elif key in ("min_followers", "max_followers"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise PlaybookError(where, "must be a whole number of followers")
            setattr(rule, key, value)
        elif key == "private_data":
            if not isinstance(value, bool):
                raise PlaybookError(where, "must be true or false")
            rule.private_data = value
        elif key == "min_severity":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 4:
                raise PlaybookError(where, "must be a severity from 0 (no reproach) to 4 (blame)")
            rule.min_severity = value
        elif key == "labels":
            rule.labels = _choices(where, value, set(LABELS))
        elif key == "listening":
            rule.listening = frozenset(_strings(where, value))
        elif key == "tier":
            rule.tiers = _choices(where, value, set(TIERS))
        elif key == "account":
            rule.accounts = frozenset(_account(where, name) for name in _strings(where, value))
        elif key == "business_hours":
            if not isinstance(value, bool):
                raise PlaybookError(where, "must be true (in business hours) or false (outside them)")
            rule.business_hours = value
    return rule


def _account(path: str, name: str) -> tuple[str, str]:
    network, colon, handle = name.partition(":")
    if not colon:
        network, handle = "", name
    network, handle = network.strip().lower(), account_key(handle)
    if colon and not network:
        raise PlaybookError(path, f"{name[:100]!r}: write network:handle, e.g. mastodon:acme, or the handle alone")
    if not handle or len(handle) > 200:
        raise PlaybookError(path, f"{name[:100]!r} is not an account handle")
    return network, handle


def _business_hours(data: Any) -> Calendar:
    if data is None:
        return Calendar.always_open()
    if not isinstance(data, dict):
        raise PlaybookError("business_hours", "must be a mapping with timezone, hours and holidays")
    unknown = set(data) - {"timezone", "hours", "holidays"}
    if unknown:
        raise PlaybookError(f"business_hours.{sorted(unknown)[0]}", "unknown key (expected timezone, hours, holidays)")
    timezone = data.get("timezone", "UTC")
    hours = data.get("hours")
    holidays = data.get("holidays") or []
    if not isinstance(timezone, str):
        raise PlaybookError("business_hours.timezone", "must be a time zone name such as Europe/London")
    if not isinstance(hours, dict) or not hours:
        raise PlaybookError("business_hours.hours", 'must map weekdays to opening hours, e.g. mon: "09:00-17:00"')
    if not isinstance(holidays, list):
        raise PlaybookError("business_hours.holidays", "must be a list of dates")
    try:
        return Calendar.weekly(timezone, {str(k): v for k, v in hours.items()}, holidays)
    except (SlaError, TypeError, ValueError) as exc:
        raise PlaybookError("business_hours", str(exc)) from exc


SLA_CLOCKS = ("first_response", "next_response", "resolution")
STEP_KINDS = tuple(kind.value for kind in StepKind)
MAX_ESCALATION_STEPS = 20


def _sla(data: Any, calendar: Calendar) -> Policy:
    if data is None:
        return default_policy(calendar)
    if not isinstance(data, dict):
        raise PlaybookError("sla", "must be a mapping with warn_at, targets and escalation")
    unknown = set(data) - {"warn_at", "targets", "escalation"}
    if unknown:
        raise PlaybookError(f"sla.{sorted(unknown)[0]}", "unknown key (expected warn_at, targets, escalation)")
    warn_at = data.get("warn_at", DEFAULT_WARN_AT)
    if isinstance(warn_at, bool) or not isinstance(warn_at, int | float) or not 0 < warn_at <= 1:
        raise PlaybookError("sla.warn_at", "must be the fraction of a target elapsed when the warning comes, e.g. 0.8")
    targets: dict[tuple[int, Channel], Targets] = {}
    raw_targets = data.get("targets") or {}
    if not isinstance(raw_targets, dict):
        raise PlaybookError("sla.targets", "must map public and private to priorities")
    for channel_name, per_priority in raw_targets.items():
        path = f"sla.targets.{channel_name}"
        if channel_name not in (Channel.PUBLIC, Channel.PRIVATE):
            raise PlaybookError(path, "unknown channel (expected public, private)")
        if not isinstance(per_priority, dict) or not per_priority:
            raise PlaybookError(path, "must map priorities (" + ", ".join(PRIORITIES) + ") to targets")
        for priority, spec in per_priority.items():
            where = f"{path}.{priority}"
            if priority not in PRIORITIES:
                raise PlaybookError(where, "unknown priority (expected " + ", ".join(PRIORITIES) + ")")
            if not isinstance(spec, dict):
                raise PlaybookError(where, "must give first_response, next_response and resolution minutes")
            extra = set(spec) - set(SLA_CLOCKS)
            if extra:
                raise PlaybookError(
                    f"{where}.{sorted(extra)[0]}", "unknown target (expected " + ", ".join(SLA_CLOCKS) + ")"
                )
            minutes = {}
            for key in SLA_CLOCKS:
                value = spec.get(key)
                if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_MINUTES:
                    raise PlaybookError(
                        f"{where}.{key}", f"required: a whole number of minutes from 1 to {MAX_MINUTES}"
                    )
                minutes[key] = dt.timedelta(minutes=value)
            targets[(PRIORITIES[priority], Channel(channel_name))] = Targets(**minutes)
    chain = DEFAULT_ESCALATION if "escalation" not in data else _escalation(data["escalation"])
    return Policy(name="sla", calendar=calendar, targets=targets, warn_fraction=1 - warn_at, escalation=chain)


def _escalation(data: Any) -> tuple[EscalationStep, ...]:
    if data is None or data == []:
        return ()
    if not isinstance(data, list):
        raise PlaybookError("sla.escalation", "must be a list of steps: " + ", ".join(STEP_KINDS))
    if len(data) > MAX_ESCALATION_STEPS:
        raise PlaybookError("sla.escalation", f"at most {MAX_ESCALATION_STEPS} steps")
    return tuple(_escalation_step(f"sla.escalation[{index}]", item) for index, item in enumerate(data))


def _escalation_step(path: str, item: Any) -> EscalationStep:
    expected = "a step is one of " + ", ".join(STEP_KINDS) + ", optionally with after_minutes"
    if isinstance(item, str):
        item = {item: None}
    if not isinstance(item, dict):
        raise PlaybookError(path, expected)
    kinds = [key for key in item if key != "after_minutes"]
    if len(kinds) != 1:
        raise PlaybookError(path, expected)
    kind_name = kinds[0]
    if kind_name not in STEP_KINDS:
        raise PlaybookError(f"{path}.{kind_name}", "unknown step (known: " + ", ".join(STEP_KINDS) + ")")
    kind, value = StepKind(kind_name), item[kind_name]
    after = item.get("after_minutes", 0)
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= MAX_MINUTES:
        raise PlaybookError(f"{path}.after_minutes", f"must be a whole number of minutes from 0 to {MAX_MINUTES}")
    step = EscalationStep(kind=kind, after=dt.timedelta(minutes=after))
    if kind == StepKind.NOTIFY_DEPARTMENT:
        if not isinstance(value, str) or not value:
            raise PlaybookError(f"{path}.{kind_name}", "must be a department slug such as legal")
        return replace(step, department=value)
    if kind == StepKind.REASSIGN:
        value = ReassignTo.QUEUE.value if value is None else value
        if value not in tuple(ReassignTo):
            raise PlaybookError(f"{path}.{kind_name}", "must be queue or supervisor")
        return replace(step, to=ReassignTo(value))
    if value not in (None, True):
        raise PlaybookError(f"{path}.{kind_name}", "takes no value (write it alone, e.g. - raise_priority)")
    return step


def _noise(data: Any) -> NoiseRules:
    if data is None:
        return DEFAULT_RULES
    if not isinstance(data, dict):
        raise PlaybookError("noise", "must be a mapping of rules: " + ", ".join(NOISE_SETTINGS))
    values: dict[str, Any] = {}
    for key, value in data.items():
        path = f"noise.{key}"
        if key not in NOISE_SETTINGS:
            raise PlaybookError(path, "unknown noise rule (known: " + ", ".join(NOISE_SETTINGS) + ")")
        if isinstance(value, bool):
            values[key] = value
            continue
        if not isinstance(value, dict):
            raise PlaybookError(path, "must be true, false or a mapping of settings")
        allowed = set(NOISE_SETTINGS[key]) | {"enabled"} | ({"handle_patterns"} if key == "bots" else set())
        for name, setting in value.items():
            where = f"{path}.{name}"
            if name not in allowed:
                raise PlaybookError(where, "unknown setting (known: " + ", ".join(sorted(allowed)) + ")")
            if name == "enabled":
                if not isinstance(setting, bool):
                    raise PlaybookError(where, "must be true or false")
                values[key] = setting
            elif name == "handle_patterns":
                values["bot_handle_patterns"] = _handle_patterns(where, setting)
            else:
                attribute, low, high = NOISE_SETTINGS[key][name]
                if not isinstance(setting, int) or isinstance(setting, bool) or not low <= setting <= high:
                    raise PlaybookError(where, f"must be a whole number from {low} to {high}")
                values[attribute] = setting
    return NoiseRules(**values)


def _handle_patterns(path: str, value: Any) -> tuple[str, ...]:
    if value == []:
        return ()
    patterns = _strings(path, value)
    if len(patterns) > MAX_BOT_PATTERNS:
        raise PlaybookError(path, f"at most {MAX_BOT_PATTERNS} patterns")
    for pattern in patterns:
        if not pattern.strip("*? ") or len(pattern) > 100:
            raise PlaybookError(path, f"{pattern[:100]!r} would match every handle or is too long")
    return tuple(patterns)


def _actions(path: str, data: dict[str, Any], templates: dict[str, ResponseTemplate]) -> Actions:
    unknown = set(data) - ACTIONS
    if unknown:
        key = sorted(unknown)[0]
        raise PlaybookError(f"{path}.{key}", "unknown action (known: " + ", ".join(sorted(ACTIONS)) + ")")
    values: dict[str, Any] = {}
    department = data.get("department")
    if department is not None:
        if not isinstance(department, str) or not department:
            raise PlaybookError(f"{path}.department", "must be a department slug such as customer-service")
        values["department"] = department
    priority = data.get("priority")
    if priority is not None:
        if priority not in PRIORITIES:
            raise PlaybookError(f"{path}.priority", "must be one of " + ", ".join(PRIORITIES))
        values["priority"] = PRIORITIES[priority]
    for key in SLA_ACTIONS:
        minutes = data.get(key)
        if minutes is None:
            continue
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 < minutes <= MAX_MINUTES:
            raise PlaybookError(f"{path}.{key}", f"must be a whole number of minutes from 1 to {MAX_MINUTES}")
        values[key] = minutes
    for key in FLAG_ACTIONS:
        flag = data.get(key)
        if flag is None:
            continue
        if not isinstance(flag, bool):
            raise PlaybookError(f"{path}.{key}", "must be true or false")
        values[key] = flag
    if "tags" in data:
        tags = _strings(f"{path}.tags", data["tags"])
        if len(tags) > MAX_TAGS or any(not t.strip() or len(t) > MAX_TAG for t in tags):
            raise PlaybookError(f"{path}.tags", f"at most {MAX_TAGS} tags of 1 to {MAX_TAG} characters")
        values["tags"] = tuple(dict.fromkeys(t.strip() for t in tags))
    if "notify" in data:
        notify = _strings(f"{path}.notify", data["notify"])
        if any(not slug for slug in notify):
            raise PlaybookError(f"{path}.notify", "must be department slugs such as legal")
        values["notify"] = tuple(dict.fromkeys(notify))
    if "templates" in data:
        names = _strings(f"{path}.templates", data["templates"])
        values["templates"] = tuple(_template(f"{path}.templates", name, templates) for name in dict.fromkeys(names))
    if "acknowledge" in data:
        name = data["acknowledge"]
        if not isinstance(name, str):
            raise PlaybookError(f"{path}.acknowledge", "must be the name of a template")
        values["acknowledge"] = _template(f"{path}.acknowledge", name, templates)
    return Actions(**values)


def _template(path: str, name: str, templates: dict[str, ResponseTemplate]) -> ResponseTemplate:
    if name not in templates:
        known = ", ".join(sorted(templates)) or "none; define them under templates:"
        raise PlaybookError(path, f"no template {name[:60]!r} (known: {known})")
    return templates[name]


def _strings(path: str, value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        raise PlaybookError(path, "must be a word or a list of words")
    return values


def _choices(path: str, value: Any, allowed: set[str]) -> frozenset[str]:
    values = _strings(path, value)
    for v in values:
        if v not in allowed:
            raise PlaybookError(path, f"{v!r} is not one of " + ", ".join(sorted(allowed)))
    return frozenset(values)


# --- dry runs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayedPost:
    """An opening post as it was understood, replayed through two playbook sets."""

    case_id: int
    subject: str
    facts: PostFacts
    # Whether the person asking may see this case: only those serve as examples.
    shown: bool = True


@dataclass(frozen=True)
class Change:
    post: ReplayedPost
    before: Decision
    after: Decision


@dataclass
class DryRun:
    """What a draft would change on replayed posts, compared with the running playbooks."""

    posts: int = 0
    changed: int = 0
    moved: Counter[tuple[str, str]] = field(default_factory=Counter)  # (from, to) department -> posts
    priorities: Counter[tuple[int, int]] = field(default_factory=Counter)
    sla: Counter[str] = field(default_factory=Counter)  # SLA action name -> posts whose target changed
    other: Counter[str] = field(default_factory=Counter)  # tags, approval, templates … -> posts
    examples: dict[str, list[Change]] = field(default_factory=dict)  # moved / priority / sla / other

    # Lists for templates: a Counter answers any attribute lookup with 0, so pages can't read it.
    def moved_rows(self) -> list[tuple[str, str, int]]:
        return [(a, b, n) for (a, b), n in self.moved.most_common()]

    def sla_rows(self) -> list[tuple[str, int]]:
        return self.sla.most_common()

    def other_rows(self) -> list[tuple[str, int]]:
        return self.other.most_common()

    def priority_rows(self) -> list[tuple[str, str, int]]:
        return [
            (PRIORITY_NAMES.get(a, str(a)), PRIORITY_NAMES.get(b, str(b)), n)
            for (a, b), n in self.priorities.most_common()
        ]


_OTHER_FIELDS = tuple(
    f.name for f in fields(Decision) if f.name not in ("department", "priority", "rule", "handoffs", *SLA_ACTIONS)
)


def dry_run(posts: Iterable[ReplayedPost], before: Router, after: Router, examples: int = 5) -> DryRun:
    """Route every post with both sets and count what differs; keep a few examples of each kind."""
    report = DryRun()
    for post in posts:
        report.posts += 1
        old = before.route(post.facts)
        new = after.route(post.facts)
        if old == new:
            continue
        kinds = []
        if old.department != new.department:
            report.moved[(old.department, new.department)] += 1
            kinds.append("moved")
        if old.priority != new.priority:
            report.priorities[(old.priority, new.priority)] += 1
            kinds.append("priority")
        sla = [name for name in SLA_ACTIONS if getattr(old, name) != getattr(new, name)]
        if sla:
            report.sla.update(sla)
            kinds.append("sla")
        other = [name for name in _OTHER_FIELDS if getattr(old, name) != getattr(new, name)]
        if other:
            report.other.update(other)
            kinds.append("other")
        if not kinds:
            continue  # only the rule's name differs: nothing a customer or agent would notice
        report.changed += 1
        if not post.shown:
            continue
        for kind in kinds:
            kept = report.examples.setdefault(kind, [])
            if len(kept) < examples:
                kept.append(Change(post=post, before=old, after=new))
    return report
