"""The structured playbook form: YAML -> form -> YAML keeps what the form does not show, writes
every condition and action the validator knows, and leaves all judgement to the validator."""

from pathlib import Path

import pytest
import yaml

from hubbub.lib.playbook import ACTIONS, CONDITIONS, PlaybookError, compile_playbook, parse_yaml
from hubbub.lib.playbook_form import (
    ACTION_FIELDS,
    CONDITION_FIELDS,
    MAX_RULES,
    Choices,
    Place,
    PlaybookForm,
    RuleForm,
    apply_op,
    bind,
    describe_place,
    empty_value,
    field_name,
    form_from_post,
    form_from_yaml,
    place_of,
    yaml_from_form,
)

STARTER = (Path(__file__).parents[2] / "playbook" / "default_playbook.yaml").read_text()
HOSTILE = [
    "<script>alert(1)</script>",
    "yes",
    "no",
    "on",
    "~",
    "null",
    "1e3",
    "0x1F",
    "2026-12-25",
    "[unclosed",
    "{a: b}",
    "a: b",
    "# not a comment",
    "- dash",
    "'quoted'",
    '"double"',
    "back\\slash",
    "tab\there",
    "ünïcødé ✓",
    "&anchor",
    "*alias",
    "!tag",
    "%directive",
    "@handle",
    "`tick`",
    "ends with colon:",
    "{{customer_name}}",
]


def post(form: PlaybookForm):
    """The form as a browser posts it: (mapping, getlist)."""
    data: dict[str, list[str]] = {"base": [form.base]}

    def put(name, spec, value):
        if spec.kind == "choices":
            data[name] = list(value)
        elif spec.kind == "words":
            data[name] = [", ".join(value)]
        elif spec.kind == "lines":
            data[name] = ["\r\n".join(value)]
        elif spec.kind == "flag":
            data[name] = ["true"] if value else []
        else:
            data[name] = [value]

    for index, rule in enumerate(form.rules):
        data[f"rules-{index}-origin"] = ["" if rule.origin is None else str(rule.origin)]
        data[f"rules-{index}-name"] = [rule.name]
        for section, specs in (("when", CONDITION_FIELDS), ("then", ACTION_FIELDS)):
            for spec in specs:
                put(field_name(index, section, spec.key), spec, getattr(rule, section).get(spec.key, empty_value(spec)))
    for spec in ACTION_FIELDS:
        put(field_name(None, "then", spec.key), spec, form.default[spec.key])
    flat = {name: values[-1] for name, values in data.items() if values}
    return flat, lambda name: data.get(name, [])


def round_trip(form: PlaybookForm) -> PlaybookForm:
    return form_from_post(*post(form))


def test_the_form_knows_every_condition_and_action_the_validator_accepts():
    assert {spec.key for spec in CONDITION_FIELDS} == CONDITIONS
    assert {spec.key for spec in ACTION_FIELDS} == ACTIONS


def test_an_untouched_form_gives_back_the_yaml_byte_for_byte():
    for source in [STARTER, "rules: [{when: {intent: praise}, then: {priority: low}}]\n", ""]:
        form = round_trip(form_from_yaml(source))
        assert yaml_from_form(form) == source


def test_comments_unknown_sections_and_style_survive_edits_moves_and_removals():
    form = round_trip(form_from_yaml(STARTER))
    names = [rule.name for rule in form.rules]
    assert names[5:7] == ["Influential and angry", "VIP customers"]
    form = apply_op(form, "up:6")  # VIP customers above Influential and angry
    form = apply_op(form, "remove:6")  # … which goes
    form = apply_op(form, "add")
    form.rules[-1].name = "Refund talk"
    form.rules[-1].when["terms"] = ("refund", "money back")
    form.rules[-1].then["tags"] = ("refund",)
    form.rules[0].when["intent"] = ("legal_threat", "complaint")
    form.default["priority"] = "high"
    source = yaml_from_form(round_trip(form))

    data = parse_yaml(source)
    assert [rule["name"] for rule in data["rules"]] == [n for n in names if n != "Influential and angry"] + [
        "Refund talk"
    ]
    assert data["rules"][0]["when"]["intent"] == ["legal_threat", "complaint"]
    assert data["default"]["priority"] == "high"
    # Every comment line of the starter is still there, but the removed rule's own (it had none).
    comments = [line.strip() for line in STARTER.splitlines() if line.strip().startswith("#")]
    assert [line.strip() for line in source.splitlines() if line.strip().startswith("#")] == comments
    # The comment written above a rule moved with it.
    lines = source.splitlines()
    vip = lines.index("  - name: VIP customers")
    assert lines[vip - 2].strip().startswith("# Customers a supervisor marked VIP")
    assert "  - name: Influential and angry" not in lines
    # The sections the form does not edit are as written, quoting and flow style included.
    for kept in ['    handle_patterns: ["*_bot", "*-bot"]', "  holding: \"Thanks {customer_name}, we've passed"]:
        assert any(line.startswith(kept) for line in lines), kept
    assert '      terms: [outage, "is down", "not working"' in source
    assert yaml.safe_load(source)["noise"] == yaml.safe_load(STARTER)["noise"]


def test_keys_the_form_does_not_know_inside_a_rule_stay_for_the_validator_to_name():
    source = "rules:\n  - name: Odd\n    when: {intent: praise, mood: sunny}  # mood?\n    then: {priority: low}\n"
    form = round_trip(form_from_yaml(source))
    form.rules[0].then["priority"] = "high"
    written = yaml_from_form(form)
    assert "mood: sunny" in written and "# mood?" in written
    with pytest.raises(PlaybookError) as refused:
        parse_yaml(written, department="sales")
    assert refused.value.path == "rules[0].when.mood"


def every_field_rule() -> RuleForm:
    return RuleForm(
        origin=None,
        name="Everything",
        when={
            "intent": ("complaint", "question"),
            "labels": ("outage",),
            "sentiment": ("negative",),
            "min_severity": "3",
            "language": ("en", "fr"),
            "channel": ("mastodon", "twitter"),
            "account": ("mastodon:acme", "acme_help"),
            "tier": ("vip", "premium"),
            "min_followers": "100",
            "max_followers": "5000",
            "listening": ("Brand mentions",),
            "terms": ("refund", "money back"),
            "business_hours": "false",
            "private_data": "true",
        },
        then={
            "department": "legal",
            "priority": "urgent",
            "first_response_minutes": "15",
            "next_response_minutes": "30",
            "resolution_minutes": "240",
            "tags": ("vip", "refund"),
            "templates": ("apology",),
            "acknowledge": "apology",
            "requires_approval": True,
            "private": True,
            "escalate": True,
            "notify": ("marketing", "legal"),
        },
    )


def test_every_condition_and_action_is_written_as_the_validator_reads_it():
    base = "templates:\n  apology: Sorry, {customer_name}.\nrules: []\n"
    form = form_from_yaml(base)
    form.rules.append(every_field_rule())
    source = yaml_from_form(round_trip(form))
    rule = parse_yaml(source, department="sales")["rules"][0]
    assert rule["when"] == {
        "intent": ["complaint", "question"],
        "labels": ["outage"],
        "sentiment": ["negative"],
        "min_severity": 3,
        "language": ["en", "fr"],
        "channel": ["mastodon", "twitter"],
        "account": ["mastodon:acme", "acme_help"],
        "tier": ["vip", "premium"],
        "min_followers": 100,
        "max_followers": 5000,
        "listening": ["Brand mentions"],
        "terms": ["refund", "money back"],
        "business_hours": False,
        "private_data": True,
    }
    assert rule["then"] == {
        "department": "legal",
        "priority": "urgent",
        "first_response_minutes": 15,
        "next_response_minutes": 30,
        "resolution_minutes": 240,
        "tags": ["vip", "refund"],
        "templates": ["apology"],
        "acknowledge": "apology",
        "requires_approval": True,
        "private": True,
        "escalate": True,
        "notify": ["marketing", "legal"],
    }
    compiled = compile_playbook(parse_yaml(source, department="sales"), department="sales")
    assert compiled.rules[0].accounts == frozenset({("mastodon", "acme"), ("", "acme_help")})
    # Read back, the form shows what was written; cleared, the rule keeps only its name.
    again = form_from_yaml(source)
    assert again.rules[0].when == round_trip(form).rules[0].when
    assert again.rules[0].then == round_trip(form).rules[0].then
    cleared = round_trip(again)
    cleared.rules[0] = RuleForm(origin=0, name="Everything")
    assert yaml.safe_load(yaml_from_form(cleared))["rules"] == [{"name": "Everything"}]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_in_names_terms_and_tags_reads_back_as_written(text):
    form = form_from_yaml("rules: []\n")
    form.rules.append(
        RuleForm(origin=None, name=text, when={"terms": (text, "plain")}, then={"tags": (text,), "priority": "low"})
    )
    source = yaml_from_form(round_trip(form))
    rule = parse_yaml(source, department="sales")["rules"][0]
    assert rule["name"] == text.strip()
    assert rule["when"]["terms"] == [text.strip(), "plain"]
    assert rule["then"]["tags"] == [text.strip()]


def test_a_value_the_validator_refuses_is_written_as_typed_and_refused_at_its_field():
    form = form_from_yaml("rules: []\n")
    form.rules.append(RuleForm(origin=None, name="Big", when={"min_followers": "lots"}, then={"priority": "asap"}))
    form.rules.append(RuleForm(origin=None, name="No action"))
    source = yaml_from_form(round_trip(form))
    with pytest.raises(PlaybookError) as refused:
        parse_yaml(source, department="sales")
    place = place_of(refused.value.path, "sales")
    assert place == Place(rule=0, section="then", key="priority")
    assert describe_place(place) == "Rule 1 › Actions › Priority"
    bound = bind(round_trip(form_from_yaml(source)), Choices(), refused.value, department="sales")
    assert [f.error for f in bound.rules[0].then if f.error] == ["must be one of urgent, high, normal, low"]
    assert bound.anchor == "rules-0-then-priority"
    assert not any(f.error for f in bound.rules[0].when) and not bound.rules[1].has_error

    form.rules[0].then["priority"] = "high"
    with pytest.raises(PlaybookError) as refused:
        parse_yaml(yaml_from_form(round_trip(form)), department="sales")
    assert place_of(refused.value.path) == Place(rule=0, section="when", key="min_followers")
    form.rules[0].when["min_followers"] = "10"
    with pytest.raises(PlaybookError) as refused:
        parse_yaml(yaml_from_form(round_trip(form)), department="sales")
    assert refused.value.path == "rules[1].then"
    bound = bind(form, Choices(), refused.value, department="sales")
    assert bound.rules[1].error.startswith("rules[1].then: required") and bound.place == "Rule 2 › Actions"
    assert bound.anchor == "rule-2"


def test_error_paths_map_to_the_form_or_to_nowhere():
    assert place_of("sales: rules[3].when.account", "sales") == Place(rule=3, section="when", key="account")
    assert place_of("legal: rules[3].when.account", "sales") is None  # another playbook of the set
    assert place_of("default.priority") == Place(rule=None, section="default", key="priority")
    assert place_of("rules[0].when.mood") == Place(rule=0, section="when", key="")
    assert place_of("templates.apology") is None and place_of("line 3, column 4") is None


def test_values_outside_the_organizations_choices_stay_selected():
    form = form_from_yaml("rules: [{then: {department: legl, notify: [marketing, pr]}}]")
    bound = bind(form, Choices(departments=[("legal", "Legal"), ("marketing", "Marketing")]))
    department = next(f for f in bound.rules[0].then if f.spec.key == "department")
    assert [(o.value, o.selected, o.known) for o in department.options] == [
        ("legal", False, True),
        ("marketing", False, True),
        ("legl", True, False),
    ]
    assert yaml_from_form(round_trip(form)) == "rules: [{then: {department: legl, notify: [marketing, pr]}}]"


def test_template_names_come_from_the_playbook():
    bound = bind(form_from_yaml(STARTER), Choices())
    templates = next(f for f in bound.rules[0].then if f.spec.key == "templates")
    assert [(o.value, o.selected) for o in templates.options] == [
        ("apology", False),
        ("move_private", False),
        ("holding", True),
        ("out_of_hours", False),
    ]


def test_yaml_the_form_cannot_show_is_refused_with_where():
    for source, path in [
        ("rules: [unclosed", "line 1, column 17"),
        ("- a list", ""),
        ("rules: {a: 1}", "rules"),
        ("rules: [just text]", "rules[0]"),
        ("rules: [{when: [intent]}]", "rules[0].when"),
        ("default: high", "default"),
        ("base: &b {priority: high}\ndefault: *b", ""),
        ("rules: []\nrules: []", ""),
        ("rules: [" + ", ".join(["{then: {priority: low}}"] * (MAX_RULES + 1)) + "]", "rules"),
    ]:
        with pytest.raises(PlaybookError) as refused:
            form_from_yaml(source)
        assert refused.value.path == path, source
        assert "YAML view" in refused.value.message


def test_moves_and_removals_past_the_ends_change_nothing_and_stale_origins_become_new_rules():
    form = form_from_yaml("rules:\n  - {name: a, then: {priority: low}}\n  - {name: b, then: {priority: low}}\n")
    for op in ["up:0", "down:1", "remove:9", "up:x", "explode", "remove:-1"]:
        assert [r.name for r in apply_op(form, op).rules] == ["a", "b"]
    flat, getlist = post(form)
    flat["rules-1-origin"] = "0"  # the same rule twice, e.g. from a doctored post
    doubled = form_from_post(flat, getlist)
    doubled.rules[1].then["priority"] = "high"
    assert yaml.safe_load(yaml_from_form(doubled))["rules"] == [
        {"name": "a", "then": {"priority": "low"}},
        {"name": "b", "then": {"priority": "high"}},
    ]
