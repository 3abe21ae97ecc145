import pytest

from hubbub.lib.playbook import PRIORITIES, PlaybookError, PostFacts, compile_playbook, parse_yaml

SOURCE = """
default: {department: customer-service, priority: normal, first_response_minutes: 60}
rules:
  - name: Legal
    when: {intent: legal_threat}
    then: {department: legal, priority: urgent, first_response_minutes: 30}
  - name: Outage
    when: {terms: ["is down", outage]}
    then: {department: operations, priority: high}
  - name: Big angry accounts
    when: {sentiment: negative, min_followers: 10000, channel: [mastodon, twitter]}
    then: {priority: urgent}
"""


def route(**facts):
    return compile_playbook(parse_yaml(SOURCE)).route(PostFacts(**facts))


def test_first_matching_rule_wins_and_fills_the_rest_from_the_default():
    decision = route(text="the app is down again", intent="legal_threat")
    assert (decision.department, decision.priority, decision.rule) == ("legal", PRIORITIES["urgent"], "Legal")
    outage = route(text="Is the app DOWN? outage in Leeds")
    assert (outage.department, outage.first_response_minutes) == ("operations", 60)


def test_terms_match_whole_words_only():
    assert route(text="the shutdown is done").rule == "default"
    assert route(text="total outage!").rule == "Outage"


def test_reach_and_channel_conditions():
    assert route(text="awful", sentiment="negative", followers=20000, channel="mastodon").rule == "Big angry accounts"
    assert route(text="awful", sentiment="negative", followers=20000, channel="rss").rule == "default"
    assert route(text="awful", sentiment="negative", followers=50, channel="mastodon").rule == "default"


def test_regex_characters_in_terms_are_plain_text():
    playbook = compile_playbook(
        parse_yaml(
            "default: {department: a, priority: low, first_response_minutes: 5}\n"
            "rules: [{when: {terms: ['(a+)+$', 'c++']}, then: {priority: high}}]"
        )
    )
    assert playbook.route(PostFacts(text="I code in c++ daily")).priority == PRIORITIES["high"]
    assert playbook.route(PostFacts(text="a" * 5000 + "!")).rule == "default"


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("default: [1, 2", "line 1, column 15"),
        ("- just a list", ""),
        ("rules: []", "default"),
        ("default: {department: a, priority: normal}", "default.first_response_minutes"),
        ("default: {department: a, priority: asap, first_response_minutes: 5}", "default.priority"),
        (
            "default: {department: a, priority: low, first_response_minutes: 5}\n"
            "rules: [{when: {intnet: complaint}, then: {priority: high}}]",
            "rules[0].when.intnet",
        ),
        (
            "default: {department: a, priority: low, first_response_minutes: 5}\n"
            "rules: [{when: {intent: angry}, then: {priority: high}}]",
            "rules[0].when.intent",
        ),
        (
            "default: {department: a, priority: low, first_response_minutes: 5}\n"
            "rules: [{when: {min_followers: lots}, then: {priority: high}}]",
            "rules[0].when.min_followers",
        ),
        ("default: {department: a, priority: low, first_response_minutes: 5}\nrules: [{when: {}}]", "rules[0].then"),
        ("default: {department: a, priority: low, first_response_minutes: -5}", "default.first_response_minutes"),
    ],
)
def test_mistakes_are_reported_with_their_place(source, path):
    with pytest.raises(PlaybookError) as error:
        parse_yaml(source)
    assert error.value.path == path


def test_unknown_department_is_refused_when_departments_are_known():
    data = parse_yaml(SOURCE)
    with pytest.raises(PlaybookError, match="no department 'operations'") as error:
        compile_playbook(data, departments={"customer-service", "legal"})
    assert error.value.path == "rules[1].then.department"


def test_yaml_tags_cannot_build_python_objects():
    with pytest.raises(PlaybookError):
        parse_yaml("default: !!python/object/apply:os.system ['echo hi']")
