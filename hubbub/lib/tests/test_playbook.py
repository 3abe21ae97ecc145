from pathlib import Path

import pytest

from hubbub.lib.noise import DEFAULT_RULES
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


UNDERSTOOD = """
default: {department: customer-service, priority: normal, first_response_minutes: 60}
rules:
  - name: Blame goes to supervisors
    when: {min_severity: 4}
    then: {priority: urgent}
  - name: Press
    when: {labels: [press, legal_threat]}
    then: {department: marketing}
  - name: Recall watch
    when: {listening: [Battery recall]}
    then: {department: operations, priority: high}
"""


def test_severity_labels_and_listening_conditions():
    playbook = compile_playbook(parse_yaml(UNDERSTOOD))
    assert playbook.route(PostFacts(text="x", severity=4)).rule == "Blame goes to supervisors"
    assert playbook.route(PostFacts(text="x", severity=3)).rule == "default"
    # Any one of the listed labels is enough; the main intent need not be one of them.
    assert playbook.route(PostFacts(text="x", intent="complaint", labels=frozenset({"complaint", "press"}))).rule == (
        "Press"
    )
    assert playbook.route(PostFacts(text="x", labels=frozenset({"complaint"}))).rule == "default"
    assert playbook.route(PostFacts(text="x", listening=frozenset({"Battery recall"}))).rule == "Recall watch"
    assert playbook.route(PostFacts(text="x", listening=frozenset({"battery recall"}))).rule == "default"


@pytest.mark.parametrize(
    ("source", "path"),
    [
        (
            "default: {department: a, priority: low, first_response_minutes: 5}\n"
            "rules: [{when: {min_severity: 5}, then: {priority: high}}]",
            "rules[0].when.min_severity",
        ),
        (
            "default: {department: a, priority: low, first_response_minutes: 5}\n"
            "rules: [{when: {labels: [gossip]}, then: {priority: high}}]",
            "rules[0].when.labels",
        ),
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


# --- the noise section ------------------------------------------------------------------------

NOISE_BASE = """
default: {department: customer-service, priority: normal, first_response_minutes: 60}
"""


def test_a_playbook_without_noise_section_runs_the_default_noise_rules():
    assert compile_playbook(parse_yaml(NOISE_BASE)).noise == DEFAULT_RULES


def test_the_default_playbook_spells_out_the_default_noise_rules():
    source = (Path(__file__).parents[2] / "playbook" / "default_playbook.yaml").read_text()
    assert compile_playbook(parse_yaml(source)).noise == DEFAULT_RULES


def test_noise_rules_are_switched_off_and_tuned():
    source = (
        NOISE_BASE
        + """
noise:
  reposts: false
  duplicates: {enabled: false}
  campaigns: {min_authors: 3, window_minutes: 5, min_length: 20}
  bots: {handle_patterns: ["*bot"], max_posts_per_hour: 0}
"""
    )
    noise = compile_playbook(parse_yaml(source)).noise
    assert (noise.reposts, noise.duplicates, noise.campaigns, noise.bots) == (False, False, True, True)
    assert (noise.campaign_min_authors, noise.campaign_window_minutes, noise.campaign_min_length) == (3, 5, 20)
    assert noise.bot_handle_patterns == ("*bot",)
    assert noise.bot_max_posts_per_hour == 0


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ("noise: [reposts]", "noise", "must be a mapping"),
        ("noise: {retweets: false}", "noise.retweets", "unknown noise rule"),
        ("noise: {reposts: maybe}", "noise.reposts", "true, false or a mapping"),
        ("noise: {duplicates: {window: 5}}", "noise.duplicates.window", "unknown setting"),
        ("noise: {duplicates: {window_minutes: 0}}", "noise.duplicates.window_minutes", "from 1 to"),
        ("noise: {campaigns: {min_authors: 1}}", "noise.campaigns.min_authors", "from 2 to"),
        ("noise: {campaigns: {min_authors: true}}", "noise.campaigns.min_authors", "whole number"),
        ("noise: {campaigns: {enabled: 1}}", "noise.campaigns.enabled", "true or false"),
        ("noise: {bots: {handle_patterns: ['*']}}", "noise.bots.handle_patterns", "every handle"),
        ("noise: {bots: {handle_patterns: [3]}}", "noise.bots.handle_patterns", "word"),
        ("noise: {reposts: {handle_patterns: ['*_bot']}}", "noise.reposts.handle_patterns", "unknown setting"),
    ],
)
def test_a_bad_noise_section_is_rejected_with_its_place(section, path, message):
    with pytest.raises(PlaybookError) as caught:
        parse_yaml(NOISE_BASE + section)
    assert caught.value.path == path
    assert message in str(caught.value)


def test_hostile_bot_patterns_cannot_backtrack():
    source = NOISE_BASE + "noise: {bots: {handle_patterns: ['" + "*a" * 40 + "*b']}}"
    noise = compile_playbook(parse_yaml(source)).noise
    assert noise.bot_pattern_for("a" * 200) is None
