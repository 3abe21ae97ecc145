"""Playbook rules: parse and validate the YAML, then route a post with the first rule that matches.

A playbook looks like this::

    default:
      department: customer-service
      priority: normal
      first_response_minutes: 60
    rules:
      - name: Legal threats
        when:
          intent: [legal_threat]
        then:
          department: legal
          priority: urgent
          first_response_minutes: 30

Conditions in one `when` must all hold; a list inside a condition means "any of". Conditions:
terms, intent, sentiment, channel, language, min_followers, max_followers, private_data,
min_severity (0-4), labels (any of hubbub.lib.classify.LABELS) and listening (names of listening
queries the post matched).

An optional `noise:` section switches the spam and noise rules (hubbub.lib.noise) off or tunes
them; each rule is `true`, `false`, or a mapping of its settings::

    noise:
      reposts: true
      duplicates: {window_minutes: 60}
      campaigns: {min_authors: 5, window_minutes: 10, min_length: 40}
      bots: {handle_patterns: ["*_bot"], max_posts_per_hour: 60}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from hubbub.lib.classify import LABELS
from hubbub.lib.noise import DEFAULT_RULES, NoiseRules

MAX_TEXT = 2000
# The name a decision carries when no rule matched and the default applied.
DEFAULT_RULE = "default"
PRIORITIES = {"urgent": 1, "high": 2, "normal": 3, "low": 4}
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
}
ACTIONS = {"department", "priority", "first_response_minutes"}
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


class PlaybookError(ValueError):
    """The playbook cannot be used; `path` says where (e.g. "rules[2].when.intent")."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


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


@dataclass(frozen=True)
class Decision:
    department: str
    priority: int
    first_response_minutes: int
    rule: str


@dataclass
class Rule:
    name: str
    department: str | None
    priority: int | None
    first_response_minutes: int | None
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

    def matches(self, post: PostFacts, text: str) -> bool:
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
        followers = post.followers or 0
        if self.min_followers is not None and followers < self.min_followers:
            return False
        if self.max_followers is not None and followers > self.max_followers:
            return False
        return self.terms is None or self.terms.search(text) is not None


@dataclass
class CompiledPlaybook:
    default: Decision
    rules: list[Rule] = field(default_factory=list)
    noise: NoiseRules = DEFAULT_RULES

    def route(self, post: PostFacts) -> Decision:
        text = post.text[:MAX_TEXT]
        for rule in self.rules:
            if rule.matches(post, text):
                return Decision(
                    department=rule.department or self.default.department,
                    priority=rule.priority or self.default.priority,
                    first_response_minutes=rule.first_response_minutes or self.default.first_response_minutes,
                    rule=rule.name,
                )
        return self.default

    def departments(self) -> set[str]:
        return {self.default.department} | {r.department for r in self.rules if r.department}


def parse_yaml(source: str) -> dict[str, Any]:
    """YAML text -> the plain data stored in Playbook.rules. Raises PlaybookError."""
    if len(source) > 200_000:
        raise PlaybookError("", "the playbook is larger than 200 KB")
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PlaybookError(where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise PlaybookError("", "a playbook is a mapping with `default` and `rules`")
    compile_playbook(data)
    return data


def compile_playbook(data: dict[str, Any], departments: set[str] | None = None) -> CompiledPlaybook:
    """Validate plain playbook data and build the router. `departments` are the known slugs, if checked."""
    unknown = set(data) - {"name", "default", "rules", "noise"}
    if unknown:
        raise PlaybookError(sorted(unknown)[0], "unknown key (expected name, default, rules, noise)")
    default_data = data.get("default")
    if not isinstance(default_data, dict):
        raise PlaybookError("default", "required: department, priority and first_response_minutes")
    default_rule = _actions("default", default_data, required=True)
    default = Decision(
        department=default_rule.department or "",
        priority=default_rule.priority or PRIORITIES["normal"],
        first_response_minutes=default_rule.first_response_minutes or 60,
        rule=DEFAULT_RULE,
    )
    rules_data = data.get("rules") or []
    if not isinstance(rules_data, list):
        raise PlaybookError("rules", "must be a list of rules")
    rules = [_rule(f"rules[{i}]", item) for i, item in enumerate(rules_data)]
    compiled = CompiledPlaybook(default=default, rules=rules, noise=_noise(data.get("noise")))
    if departments is not None:
        for where, slug in [("default", default.department)] + [
            (f"rules[{i}].then.department", r.department) for i, r in enumerate(rules) if r.department
        ]:
            if slug not in departments:
                raise PlaybookError(where, f"no department {slug!r} (known: {', '.join(sorted(departments))})")
    return compiled


def _rule(path: str, item: Any) -> Rule:
    if not isinstance(item, dict):
        raise PlaybookError(path, "a rule is a mapping with name, when and then")
    unknown = set(item) - {"name", "when", "then"}
    if unknown:
        raise PlaybookError(f"{path}.{sorted(unknown)[0]}", "unknown key (expected name, when, then)")
    name = str(item.get("name") or path)
    then = item.get("then")
    if not isinstance(then, dict) or not then:
        raise PlaybookError(f"{path}.then", "required: at least one of " + ", ".join(sorted(ACTIONS)))
    rule = _actions(f"{path}.then", then, required=False)
    rule.name = name
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
    return rule


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


def _actions(path: str, data: dict[str, Any], required: bool) -> Rule:
    unknown = set(data) - ACTIONS
    if unknown:
        key = sorted(unknown)[0]
        raise PlaybookError(f"{path}.{key}", "unknown action (known: " + ", ".join(sorted(ACTIONS)) + ")")
    if required:
        missing = ACTIONS - set(data)
        if missing:
            raise PlaybookError(f"{path}.{sorted(missing)[0]}", "required")
    department = data.get("department")
    if department is not None and (not isinstance(department, str) or not department):
        raise PlaybookError(f"{path}.department", "must be a department slug such as customer-service")
    priority = data.get("priority")
    if priority is not None:
        if priority not in PRIORITIES:
            raise PlaybookError(f"{path}.priority", "must be one of " + ", ".join(PRIORITIES))
        priority = PRIORITIES[priority]
    minutes = data.get("first_response_minutes")
    if minutes is not None and (not isinstance(minutes, int) or isinstance(minutes, bool) or minutes <= 0):
        raise PlaybookError(f"{path}.first_response_minutes", "must be a positive whole number of minutes")
    return Rule(name=path, department=department, priority=priority, first_response_minutes=minutes)


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
