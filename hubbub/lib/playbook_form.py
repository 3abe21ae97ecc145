"""The structured playbook form: a playbook's rules and default as fields, written back into its YAML.

The form and the YAML are two views of one draft. A form is read from the YAML (`form_from_yaml`)
and written back into the YAML it came from (`yaml_from_form`), which is then validated, saved,
dry-run and published exactly as YAML typed by hand: this module converts and never validates.

Writing back edits the YAML in place with ruamel.yaml's round-trip mode, so everything the form
does not show stays as written: comments, key order, quoting, flow or block style, the sections
the form does not edit (name, templates, noise, business_hours, sla) and keys it does not know
inside a rule. Only the values the supervisor changed are rewritten; a rule the form moves or
removes takes the comment lines written above it along.

Values are read with PyYAML, as the validator reads them (YAML 1.1: `yes` is true), and strings
the form writes are quoted whenever PyYAML would otherwise read them as something else.

A form field holds its value as text, the way the page posts it back:
- choices, words, lines: a tuple of strings ("any of"); empty means "no condition / not set";
- choice, number: one string, "" for not set; numbers the validator must check stay text here;
- tristate: "", "true" or "false"; flag: a bool.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from hubbub.lib.classify import LABELS
from hubbub.lib.playbook import INTENTS, PRIORITIES, SENTIMENTS, PlaybookError, yaml_error
from hubbub.lib.priority import TIERS

Kind = Literal["choices", "choice", "words", "lines", "number", "tristate", "flag"]
Section = Literal["when", "then"]
# The most rules the form shows and takes back; a longer playbook is edited in the YAML view.
MAX_RULES = 200
MAX_SOURCE = 200_000


@dataclass(frozen=True)
class FieldSpec:
    key: str
    label: str
    kind: Kind
    # Fixed choices, or the name of a list the page supplies (Choices): "departments", "templates" …
    choices: tuple[str, ...] | str = ()
    help: str = ""


CONDITION_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("intent", "Intent", "choices", tuple(sorted(INTENTS))),
    FieldSpec("labels", "Labels", "choices", LABELS, "any of these labels holds"),
    FieldSpec("sentiment", "Sentiment", "choices", tuple(sorted(SENTIMENTS))),
    FieldSpec("min_severity", "Severity at least", "number", ("0", "1", "2", "3", "4"), "0 no reproach … 4 blame"),
    FieldSpec("language", "Language", "words", help="codes such as en, fr; separated by commas"),
    FieldSpec("channel", "Channel", "choices", "channels"),
    FieldSpec("account", "Brand account", "choices", "accounts"),
    FieldSpec("tier", "Customer tier", "choices", TIERS),
    FieldSpec("min_followers", "Followers at least", "number"),
    FieldSpec("max_followers", "Followers at most", "number"),
    FieldSpec("listening", "Listening query", "choices", "listening", "matched any of these queries"),
    FieldSpec("terms", "Keywords", "lines", help="one word or phrase a line; any of them"),
    FieldSpec("business_hours", "Business hours", "tristate", ("in business hours", "outside business hours")),
    FieldSpec("private_data", "Private data", "tristate", ("contains private data", "no private data")),
)
ACTION_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("department", "Department", "choice", "departments"),
    FieldSpec("priority", "Priority", "choice", tuple(PRIORITIES)),
    FieldSpec("first_response_minutes", "First response (minutes)", "number"),
    FieldSpec("next_response_minutes", "Next response (minutes)", "number"),
    FieldSpec("resolution_minutes", "Resolution (minutes)", "number"),
    FieldSpec("tags", "Tags", "words", help="separated by commas"),
    FieldSpec("templates", "Suggested replies", "choices", "templates"),
    FieldSpec("acknowledge", "Acknowledge automatically with", "choice", "templates"),
    FieldSpec("requires_approval", "Replies need approval", "flag"),
    FieldSpec("private", "Move the conversation private", "flag"),
    FieldSpec("escalate", "Escalate to the supervisors", "flag"),
    FieldSpec("notify", "Notify departments", "choices", "departments", "a hand-off with a receipt"),
)
SPECS: dict[Section, dict[str, FieldSpec]] = {
    "when": {spec.key: spec for spec in CONDITION_FIELDS},
    "then": {spec.key: spec for spec in ACTION_FIELDS},
}

FormValue = tuple[str, ...] | str | bool


@dataclass
class RuleForm:
    # The rule's index in the YAML the form was read from; None for a rule added in the form.
    origin: int | None
    name: str = ""
    when: dict[str, FormValue] = field(default_factory=dict)
    then: dict[str, FormValue] = field(default_factory=dict)


@dataclass
class PlaybookForm:
    # The YAML the form was read from: the fields are written back into it.
    base: str
    rules: list[RuleForm] = field(default_factory=list)
    default: dict[str, FormValue] = field(default_factory=dict)


# --- reading ---------------------------------------------------------------------------------


def form_from_yaml(source: str) -> PlaybookForm:
    """The form for a playbook's YAML. Raises PlaybookError (with the path) for YAML the form cannot
    show: one that does not parse, or whose rules or default are not the mappings a playbook has."""
    return _read(source)[0]


def _read(source: str) -> tuple[PlaybookForm, CommentedMap, YAML]:
    """The form for `source`, with the round-trip tree it writes into (which must load too, e.g.
    no duplicate keys) and the dumper that indents as `source` does."""
    data = _plain(source)
    tree, dumper = _yaml_tree(source)
    default = data.get("default") or {}
    if not isinstance(default, dict):
        raise PlaybookError("default", "must be a mapping of actions; fix it in the YAML view")
    rules = []
    for index, item in enumerate(_rules_list(data)):
        path = f"rules[{index}]"
        if not isinstance(item, dict):
            raise PlaybookError(path, "a rule is a mapping with name, when and then; fix it in the YAML view")
        sections = {}
        for section in ("when", "then"):
            values = item.get(section) or {}
            if not isinstance(values, dict):
                raise PlaybookError(f"{path}.{section}", "must be a mapping; fix it in the YAML view")
            sections[section] = _section_values(section, values)
        name = item.get("name")
        rules.append(RuleForm(origin=index, name="" if name is None else str(name), **sections))
    return PlaybookForm(base=source, rules=rules, default=_section_values("then", default)), tree, dumper


def _section_values(section: Section, values: dict[str, Any]) -> dict[str, FormValue]:
    return {spec.key: _form_value(spec, values.get(spec.key)) for spec in SPECS[section].values()}


def _form_value(spec: FieldSpec, value: Any) -> FormValue:
    """What the form shows for a value read from the YAML."""
    if spec.kind in ("choices", "words", "lines"):
        if value is None:
            return ()
        return tuple(_text(v) for v in (value if isinstance(value, list) else [value]))
    if spec.kind == "flag":
        return value is True
    if spec.kind == "tristate":
        return {True: "true", False: "false"}.get(value, "") if isinstance(value, bool) else ""
    return "" if value is None else _text(value)


def empty_value(spec: FieldSpec) -> FormValue:
    """A field's value when the YAML does not set it."""
    return _form_value(spec, None)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _plain(source: str) -> dict[str, Any]:
    """The playbook as the validator reads it (PyYAML)."""
    if len(source) > MAX_SOURCE:
        raise PlaybookError("", "the playbook is larger than 200 KB")
    try:
        for token in yaml.scan(source):
            if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
                raise PlaybookError("", "the form cannot edit YAML anchors and aliases; edit it in the YAML view")
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        error = yaml_error(exc)
        raise PlaybookError(error.path, f"{error.message}; fix it in the YAML view") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PlaybookError("", "a playbook is a mapping with `default` and `rules`; fix it in the YAML view")
    return data


def _rules_list(data: dict[str, Any]) -> list[Any]:
    rules = data.get("rules")
    if rules is None:
        return []
    if not isinstance(rules, list):
        raise PlaybookError("rules", "must be a list of rules; fix it in the YAML view")
    if len(rules) > MAX_RULES:
        raise PlaybookError("rules", f"the form shows at most {MAX_RULES} rules; edit this playbook in the YAML view")
    return rules


def _loader() -> YAML:
    loader = YAML(typ="rt")
    loader.preserve_quotes = True
    loader.width = 4096  # never fold a long line the supervisor wrote on one
    return loader


def _yaml_tree(source: str) -> tuple[CommentedMap, YAML]:
    """The round-trip tree of `source` and a dumper indenting as it does."""
    loader = _loader()
    try:
        tree = loader.load(source)
    except YAMLError as exc:
        raise PlaybookError("", f"the form cannot read this YAML ({exc}); edit it in the YAML view") from exc
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, CommentedMap):
        raise PlaybookError("", "a playbook is a mapping with `default` and `rules`; fix it in the YAML view")
    loader.indent(**_indentation(source))
    return tree, loader


_LINE = re.compile(r"^( *)(- +)?([^\s#-].*)?$")


def _indentation(source: str) -> dict[str, int]:
    """How `source` indents, for ruamel.yaml's dumper: nested keys (mapping) and list items (offset:
    the dash's indent under its key; sequence: the item's content). The starter's style otherwise."""
    mapping, offset, dash = 0, -1, 2
    previous = 0
    for line in source.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        indent = len(match.group(1))
        if match.group(2):
            if offset < 0 and indent >= previous:
                offset, dash = indent - previous, len(match.group(2))
        elif not mapping and indent > previous:
            mapping = indent - previous
        previous = indent + (len(match.group(2)) if match.group(2) else 0)
        if mapping and offset >= 0:
            break
    mapping = mapping or 2
    offset = 2 if offset < 0 else offset
    return {"mapping": mapping, "sequence": offset + max(dash, 2), "offset": offset}


# --- the page's posts ------------------------------------------------------------------------


def field_name(rule: int | None, section: Section, key: str) -> str:
    """The input's name: `rules-2-when-intent`, `default-priority`."""
    return f"default-{key}" if rule is None else f"rules-{rule}-{section}-{key}"


def form_from_post(post: Mapping[str, Any], getlist: Callable[[str], list[str]]) -> PlaybookForm:
    """The form as posted: `post.get(name)` for one value, `getlist(name)` for a group of checkboxes."""
    rules = []
    for index in range(MAX_RULES):
        prefix = f"rules-{index}-"
        if f"{prefix}origin" not in post:
            break
        origin = post.get(f"{prefix}origin", "")
        rules.append(
            RuleForm(
                origin=int(origin) if origin.isdigit() and len(origin) < 7 else None,
                name=post.get(f"{prefix}name", "").strip(),
                when=_posted_section(post, getlist, index, "when"),
                then=_posted_section(post, getlist, index, "then"),
            )
        )
    base = post.get("base", "").replace("\r\n", "\n")
    return PlaybookForm(base=base, rules=rules, default=_posted_section(post, getlist, None, "then"))


def _posted_section(
    post: Mapping[str, Any], getlist: Callable[[str], list[str]], rule: int | None, section: Section
) -> dict[str, FormValue]:
    values: dict[str, FormValue] = {}
    for spec in SPECS[section].values():
        name = field_name(rule, section, spec.key)
        if spec.kind == "choices":
            values[spec.key] = tuple(dict.fromkeys(v for v in getlist(name) if v))
        elif spec.kind == "words":
            values[spec.key] = tuple(w.strip() for w in post.get(name, "").split(",") if w.strip())
        elif spec.kind == "lines":
            values[spec.key] = tuple(w.strip() for w in post.get(name, "").splitlines() if w.strip())
        elif spec.kind == "flag":
            values[spec.key] = post.get(name) == "true"
        elif spec.kind == "tristate":
            values[spec.key] = post.get(name) if post.get(name) in ("true", "false") else ""
        else:
            values[spec.key] = post.get(name, "").strip()
    return values


# --- editing without saving ------------------------------------------------------------------


def apply_op(form: PlaybookForm, op: str) -> PlaybookForm:
    """A button of the form: "add", "remove:N", "up:N", "down:N". Anything else changes nothing."""
    rules = list(form.rules)
    verb, _, number = op.partition(":")
    if verb == "add" and len(rules) < MAX_RULES:
        rules.append(RuleForm(origin=None, name=f"Rule {len(rules) + 1}"))
    elif number.isdigit() and int(number) < len(rules):
        index = int(number)
        if verb == "remove":
            del rules[index]
        elif verb == "up" and index > 0:
            rules[index - 1], rules[index] = rules[index], rules[index - 1]
        elif verb == "down" and index < len(rules) - 1:
            rules[index], rules[index + 1] = rules[index + 1], rules[index]
    return replace(form, rules=rules)


# --- writing ---------------------------------------------------------------------------------


def yaml_from_form(form: PlaybookForm) -> str:
    """The form written into the YAML it was read from. Raises PlaybookError when that YAML is
    not one the form can edit (then nothing is written)."""
    before, tree, dumper = _read(form.base)  # the values as read tell what the supervisor changed
    if form.rules == before.rules and form.default == before.default:
        return form.base
    only_comments = not tree and bool(form.base.strip())
    old_rules = tree.get("rules")
    old_items = list(old_rules) if isinstance(old_rules, CommentedSeq) else []
    leads = _take_leads(old_rules) if isinstance(old_rules, CommentedSeq) else {}
    tail = _take_tail(old_items[-1]) if old_items else []

    rules = CommentedSeq()
    used: set[int] = set()
    placed: dict[int, list[CommentToken]] = {}
    for position, rule in enumerate(form.rules):
        origin = rule.origin
        if origin is not None and (origin >= len(old_items) or origin in used):
            origin = None  # a stale or doubled index: treat it as a new rule
        if origin is None:
            node = CommentedMap()
            was = RuleForm(origin=None, when=_section_values("when", {}), then=_section_values("then", {}))
        else:
            used.add(origin)
            node = old_items[origin]
            was = before.rules[origin]
            if origin in leads:
                placed[position] = leads[origin]
        _write_name(node, rule.name, was.name)
        for section in ("when", "then"):
            _write_section(node, section, getattr(rule, section), getattr(was, section))
        rules.append(node)
    for position, lines in placed.items():  # after the appends, which shift the comments' indexes
        rules.ca.items[position] = [None, lines, None, None]
    if rules and tail:
        _put_tail(rules[-1], tail)
    if isinstance(old_rules, CommentedSeq):
        rules.ca.comment = old_rules.ca.comment  # the comment above the first rule
        if old_rules.fa.flow_style() and all(r.fa.flow_style() for r in rules if isinstance(r, CommentedMap)):
            rules.fa.set_flow_style()
    if form.rules or "rules" in tree:
        tree["rules"] = rules
    if form.default != before.default:
        default = tree.get("default")
        if not isinstance(default, CommentedMap):
            default = CommentedMap()
            if "default" in tree:
                tree["default"] = default
            else:
                tree.insert(1 if "name" in tree else 0, "default", default)
        _write_values(default, SPECS["then"], form.default, before.default)
    out = io.StringIO()
    if only_comments:
        # Only comments so far (ruamel.yaml keeps comments on nodes, and there were none): keep them.
        out.write(form.base if form.base.endswith("\n") else form.base + "\n")
    dumper.dump(tree, out)
    return out.getvalue()


def _write_name(node: CommentedMap, name: str, was: str) -> None:
    name = name.strip()
    if name == was:
        return
    if not name:
        _delete(node, "name")
    elif "name" in node:
        node["name"] = _string(name)
    else:
        node.insert(0, "name", _string(name))


def _write_section(node: CommentedMap, section: Section, values: dict[str, FormValue], was: dict) -> None:
    if values == was:
        return
    target = node.get(section)
    if not isinstance(target, CommentedMap):  # absent, or empty (`when:` alone)
        target = node[section] = CommentedMap()
    _write_values(target, SPECS[section], values, was)
    if not target:
        _delete(node, section)


def _write_values(
    target: CommentedMap, specs: Mapping[str, FieldSpec], values: Mapping[str, FormValue], was: Mapping
) -> None:
    for key, spec in specs.items():
        value = values.get(key, _form_value(spec, None))
        if value == was.get(key, _form_value(spec, None)):
            continue  # unchanged: the node stays as written, with its comments and style
        new = _yaml_value(spec, value, target.get(key))
        if new is None:
            _delete(target, key)
        else:
            target[key] = new


def _yaml_value(spec: FieldSpec, value: FormValue, old: Any) -> Any:
    """The YAML node for a form value; None removes the key."""
    if spec.kind in ("choices", "words", "lines"):
        assert isinstance(value, tuple)
        if not value:
            return None
        if len(value) == 1 and old is not None and not isinstance(old, list):
            return _string(value[0])
        items = CommentedSeq(_string(v) for v in value)
        items.fa.set_flow_style()
        return items
    if spec.kind == "flag":
        return True if value else None
    if spec.kind == "tristate":
        return {"true": True, "false": False}.get(str(value))
    assert isinstance(value, str)
    if not value:
        return None
    if spec.kind == "number" and re.fullmatch(r"[0-9]{1,9}", value):
        return int(value)
    return _string(value)  # the validator says what is wrong with it, at this field


def _string(text: str) -> str:
    """`text` as a YAML string PyYAML reads back as the same text (`yes`, `1e3`, `~`, `[x` are quoted)."""
    try:
        plain = yaml.safe_load(text) == text and "\n" not in text and text == text.strip()
    except yaml.YAMLError:
        plain = False
    return text if plain and not text.startswith(("'", '"')) else DoubleQuotedScalarString(text)


def _delete(mapping: CommentedMap, key: str) -> None:
    """Remove `key`; the comment lines written below its value stay, on the key before it or after it."""
    if key not in mapping:
        return
    lines = _split_comment(mapping.ca.items.get(key), 2)[1]
    keys = list(mapping)
    position = keys.index(key)
    del mapping[key]
    mapping.ca.items.pop(key, None)
    if not lines:
        return
    if position > 0:
        _append_after(mapping, keys[position - 1], lines)
    elif len(keys) > 1:
        entry = mapping.ca.items.setdefault(keys[1], [None, None, None, None])
        entry[1] = lines + (entry[1] or [])


# --- comments --------------------------------------------------------------------------------
# ruamel.yaml keeps the comment lines between two rules on whatever came last before them (the
# previous rule's last value) or before the next rule. Before the rules are reordered, those
# lines are taken off and kept with the rule they stand above; the comment lines after the last
# rule stay at the end.


def _split_comment(entry: list | None, slot: int) -> tuple[CommentToken | None, list[CommentToken]]:
    """A comment slot's end-of-line part, and the whole lines after it as tokens."""
    if not entry or len(entry) <= slot or not isinstance(entry[slot], CommentToken):
        return None, []
    token: CommentToken = entry[slot]
    first, newline, rest = token.value.partition("\n")
    eol = CommentToken(first + "\n", CommentMark(token.column), None) if first.strip() else None
    lines = [CommentToken(line.strip() + "\n", CommentMark(_indent(line)), None) for line in rest.splitlines()]
    return eol, lines


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _last_slot(node: Any) -> tuple[dict, Any, int] | None:
    """Where the comment after `node`'s last value is kept: (ca.items, key, slot)."""
    if isinstance(node, CommentedMap) and node:
        key = list(node)[-1]
        entry = node.ca.items.get(key)
        if entry and len(entry) > 2 and isinstance(entry[2], CommentToken):
            return node.ca.items, key, 2
        if isinstance(node[key], CommentedMap | CommentedSeq) and not node[key].fa.flow_style():
            return _last_slot(node[key])
        return None
    if isinstance(node, CommentedSeq) and node:
        index = len(node) - 1
        entry = node.ca.items.get(index)
        if entry and isinstance(entry[0], CommentToken):
            return node.ca.items, index, 0
        if isinstance(node[index], CommentedMap | CommentedSeq) and not node[index].fa.flow_style():
            return _last_slot(node[index])
    return None


def _take_tail(node: Any) -> list[CommentToken]:
    """Take the whole comment lines after `node`'s last value off it."""
    slot = _last_slot(node)
    if slot is None:
        return []
    items, key, index = slot
    eol, lines = _split_comment(items[key], index)
    items[key][index] = eol
    return lines


def _take_leads(rules: CommentedSeq) -> dict[int, list[CommentToken]]:
    """Rule index -> the comment lines written above it (none for the first: they stay in place)."""
    leads: dict[int, list[CommentToken]] = {}
    for index in range(1, len(rules)):
        lines = _take_tail(rules[index - 1])
        entry = rules.ca.items.pop(index, None)
        before = entry[1] if entry and len(entry) > 1 and entry[1] else []
        if entry and isinstance(entry[0], CommentToken):
            rules.ca.items[index] = [entry[0], None, None, None]
        if lines or before:
            leads[index] = lines + list(before)
    return leads


def _put_tail(node: Any, lines: list[CommentToken]) -> None:
    slot = _last_slot(node)
    if slot is None:
        if isinstance(node, CommentedMap) and node:
            _append_after(node, list(node)[-1], lines)
        return
    items, key, index = slot
    _append_lines(items, key, index, lines)


def _append_after(mapping: CommentedMap, key: str, lines: list[CommentToken]) -> None:
    value = mapping[key]
    if isinstance(value, CommentedMap | CommentedSeq) and value and not value.fa.flow_style():
        _put_tail(value, lines)
        return
    mapping.ca.items.setdefault(key, [None, None, None, None])
    _append_lines(mapping.ca.items, key, 2, lines)


def _append_lines(items: dict, key: Any, index: int, lines: list[CommentToken]) -> None:
    entry = items[key]
    token = entry[index]
    head = token.value if isinstance(token, CommentToken) else "\n"
    if not head.endswith("\n"):
        head += "\n"
    text = head + "".join(" " * line.column + line.value for line in lines)
    entry[index] = CommentToken(text, CommentMark(token.column if token else 0), None)


# --- errors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """Where in the form a PlaybookError points: a rule (0-based) or the default, a section, a field."""

    rule: int | None
    section: str = ""  # "when", "then", "default" or "" (the rule itself, or the form)
    key: str = ""


_RULE_PATH = re.compile(r"^rules\[(\d+)\](?:\.(when|then)(?:\.(\w+))?)?$")
_DEFAULT_PATH = re.compile(r"^default(?:\.(\w+))?$")


def place_of(path: str, department: str | None = None) -> Place | None:
    """The form's place for an error path such as "rules[2].when.intent" (for a department's
    playbook the set's checks write "sales: rules[2]…"); None when the form has no field for it."""
    if department is not None and path.startswith(f"{department}: "):
        path = path[len(department) + 2 :]
    if match := _RULE_PATH.match(path):
        rule, section, key = int(match.group(1)), match.group(2) or "", match.group(3) or ""
        if key and key not in SPECS[section]:  # type: ignore[index]
            key = ""
        return Place(rule=rule, section=section, key=key)
    if match := _DEFAULT_PATH.match(path):
        key = match.group(1) or ""
        return Place(rule=None, section="default", key=key if key in SPECS["then"] else "")
    return None


def describe_place(place: Place) -> str:
    """ "Rule 3 › Conditions › Intent" for people."""
    parts = ["Default" if place.rule is None else f"Rule {place.rule + 1}"]
    if place.section in ("when", "then"):
        parts.append("Conditions" if place.section == "when" else "Actions")
    if place.key:
        section: Section = "when" if place.section == "when" else "then"
        parts.append(SPECS[section][place.key].label)
    return " › ".join(parts)


# --- the page's view of a form ---------------------------------------------------------------


@dataclass(frozen=True)
class Choices:
    """The organization's lists the selects offer; the playbook's template names come from its YAML."""

    departments: Sequence[tuple[str, str]] = ()  # (slug, name)
    channels: Sequence[tuple[str, str]] = ()  # (network, label)
    accounts: Sequence[tuple[str, str]] = ()  # ("network:handle", label)
    listening: Sequence[tuple[str, str]] = ()  # (query name, query name)


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    selected: bool
    known: bool = True  # False: in the YAML but not among the organization's choices


@dataclass(frozen=True)
class BoundField:
    spec: FieldSpec
    name: str
    value: FormValue
    options: tuple[Option, ...] = ()
    error: str = ""

    @property
    def text(self) -> str:
        """The value in a text box: words separated by commas, lines one per line."""
        if isinstance(self.value, tuple):
            return ("\n" if self.spec.kind == "lines" else ", ").join(self.value)
        return self.value if isinstance(self.value, str) else ""


@dataclass(frozen=True)
class BoundRule:
    index: int
    number: int
    origin: int | None
    name: str
    when: tuple[BoundField, ...]
    then: tuple[BoundField, ...]
    error: str = ""  # an error on the rule, its conditions or its actions as a whole
    last: bool = False

    @property
    def has_error(self) -> bool:
        return bool(self.error) or any(f.error for f in self.when + self.then)

    @property
    def summary(self) -> str:
        conditions = [f.spec.label.lower() for f in self.when if f.value not in ((), "", False)]
        return "when " + (", ".join(conditions) if conditions else "always")


@dataclass(frozen=True)
class BoundForm:
    base: str
    rules: tuple[BoundRule, ...]
    default: tuple[BoundField, ...]
    error: PlaybookError | None = None
    place: str = ""  # the error's place for people, "" when the form has no field for it
    anchor: str = ""  # the id of the field (or rule, or default) the error points at
    default_error: str = ""


def bind(form: PlaybookForm, choices: Choices, error: PlaybookError | None = None, department: str | None = None):
    """The form as the page shows it: each field with its options and, where the error points, its message."""
    place = place_of(error.path, department) if error is not None else None
    templates = _template_names(form.base)
    lists = {
        "departments": tuple(choices.departments),
        "channels": tuple(choices.channels),
        "accounts": tuple(choices.accounts),
        "listening": tuple(choices.listening),
        "templates": tuple((name, name) for name in templates),
    }

    def fields(rule: int | None, section: Section, values: Mapping[str, FormValue]) -> tuple[BoundField, ...]:
        bound = []
        for spec in SPECS[section].values():
            value = values.get(spec.key, _form_value(spec, None))
            here = (
                place is not None
                and place.rule == rule
                and place.section == ("default" if rule is None else section)
                and place.key == spec.key
            )
            bound.append(
                BoundField(
                    spec=spec,
                    name=field_name(rule, section, spec.key),
                    value=value,
                    options=_options(spec, value, lists),
                    error=error.message if here and error is not None else "",
                )
            )
        return tuple(bound)

    rules = []
    for index, rule in enumerate(form.rules):
        whole = place is not None and place.rule == index and not place.key and place.section != "default"
        rules.append(
            BoundRule(
                index=index,
                number=index + 1,
                origin=rule.origin,
                name=rule.name,
                when=fields(index, "when", rule.when),
                then=fields(index, "then", rule.then),
                error=(f"{error.path}: {error.message}" if whole and error is not None else ""),
                last=index == len(form.rules) - 1,
            )
        )
    default_error = ""
    if place is not None and place.section == "default" and not place.key and error is not None:
        default_error = error.message
    return BoundForm(
        base=form.base,
        rules=tuple(rules),
        default=fields(None, "then", form.default),
        error=error,
        place=describe_place(place) if place is not None else "",
        anchor=_anchor(place) if place is not None else "",
        default_error=default_error,
    )


def _anchor(place: Place) -> str:
    if place.key:
        section: Section = "when" if place.section == "when" else "then"
        return field_name(place.rule, section, place.key)
    return "default-actions" if place.rule is None else f"rule-{place.rule + 1}"


def _options(spec: FieldSpec, value: FormValue, lists: Mapping[str, tuple[tuple[str, str], ...]]) -> tuple[Option, ...]:
    if spec.kind not in ("choices", "choice", "number", "tristate") or not spec.choices:
        return ()  # a text box
    if spec.kind == "tristate":
        yes, no = spec.choices
        return (Option("true", yes, value == "true"), Option("false", no, value == "false"))
    known = (
        lists[spec.choices] if isinstance(spec.choices, str) else tuple((c, c.replace("_", " ")) for c in spec.choices)
    )
    chosen = value if isinstance(value, tuple) else ((value,) if value else ())
    options = [Option(v, label, v in chosen) for v, label in known]
    # A value the organization has no choice for (a typo, a deleted department) stays visible
    # and selected, so saving the form keeps it and the validator points at it.
    values = {v for v, _ in known}
    options += [Option(v, v, True, known=False) for v in chosen if v not in values]
    return tuple(options)


def _template_names(source: str) -> list[str]:
    try:
        templates = (yaml.safe_load(source) or {}).get("templates")
    except (yaml.YAMLError, AttributeError):
        return []
    return [str(name) for name in templates] if isinstance(templates, dict) else []
