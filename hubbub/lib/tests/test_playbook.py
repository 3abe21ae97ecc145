import datetime as dt
from pathlib import Path

import pytest

from hubbub.lib.noise import DEFAULT_RULES
from hubbub.lib.playbook import (
    PRIORITIES,
    PlaybookError,
    PlaybookSet,
    PostFacts,
    ReplayedPost,
    check_accounts,
    check_set,
    compile_playbook,
    dry_run,
    parse_yaml,
)

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


# --- rule actions -----------------------------------------------------------------------------

ACTIONS_SOURCE = """
default: {department: customer-service, priority: normal, first_response_minutes: 60}
templates:
  sorry: "Sorry {customer_name}, case {case_id} is with {department}. {{not a placeholder}}"
  received: "Thanks, we have your message."
rules:
  - name: Legal
    when: {intent: legal_threat}
    then:
      department: legal
      priority: urgent
      next_response_minutes: 120
      resolution_minutes: 2880
      tags: [legal, risk, legal]
      requires_approval: true
      private: true
      acknowledge: received
      templates: [sorry]
      notify: [marketing]
      escalate: true
"""


def test_a_rule_sets_every_action_and_the_default_sets_none_of_the_extras():
    playbook = compile_playbook(parse_yaml(ACTIONS_SOURCE))
    legal = playbook.route(PostFacts(text="see you in court", intent="legal_threat"))
    assert (legal.department, legal.priority, legal.first_response_minutes) == ("legal", 1, 60)
    assert (legal.next_response_minutes, legal.resolution_minutes) == (120, 2880)
    assert legal.tags == ("legal", "risk")
    assert legal.requires_approval and legal.private and legal.escalate
    assert legal.acknowledge is not None and legal.acknowledge.name == "received"
    assert [t.name for t in legal.templates] == ["sorry"]
    assert legal.notify == ("marketing",)
    plain = playbook.route(PostFacts(text="hello"))
    assert plain.tags == () and plain.notify == () and plain.templates == () and plain.acknowledge is None
    assert not (plain.requires_approval or plain.private or plain.escalate)
    assert plain.next_response_minutes is None


def test_templates_fill_placeholders_and_never_evaluate_anything():
    template = compile_playbook(parse_yaml(ACTIONS_SOURCE)).templates["sorry"]
    hostile = "{case_id.__class__} <script>alert(1)</script> {customer_name}"
    text = template.render({"customer_name": hostile, "case_id": 42})
    # The customer's text comes out as plain text, once: its braces are not read as placeholders.
    assert text == f"Sorry {hostile}, case 42 is with . {{not a placeholder}}"


@pytest.mark.parametrize(
    ("then", "path", "message"),
    [
        ("{tags: [ok, '']}", "rules[0].then.tags", "tags of 1 to"),
        ("{tags: 5}", "rules[0].then.tags", "word"),
        ("{requires_approval: 'yes'}", "rules[0].then.requires_approval", "true or false"),
        ("{private: 1}", "rules[0].then.private", "true or false"),
        ("{escalate: null, priority: high, notify: [[legal]]}", "rules[0].then.notify", "word"),
        ("{next_response_minutes: 0}", "rules[0].then.next_response_minutes", "from 1 to"),
        ("{resolution_minutes: 99999999}", "rules[0].then.resolution_minutes", "from 1 to"),
        ("{resolution_minutes: 1.5}", "rules[0].then.resolution_minutes", "whole number"),
        ("{templates: [nope]}", "rules[0].then.templates", "no template 'nope'"),
        ("{acknowledge: nope}", "rules[0].then.acknowledge", "no template 'nope'"),
        ("{acknowledge: [ok]}", "rules[0].then.acknowledge", "name of a template"),
        ("{sla: gold}", "rules[0].then.sla", "unknown action"),
    ],
)
def test_bad_actions_are_rejected_with_their_place(then, path, message):
    source = (
        "default: {department: a, priority: low, first_response_minutes: 5}\n"
        "templates: {ok: 'Hello {customer_name}'}\n"
        f"rules: [{{when: {{intent: complaint}}, then: {then}}}]"
    )
    with pytest.raises(PlaybookError) as caught:
        parse_yaml(source)
    assert caught.value.path == path
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("templates", "path", "message"),
    [
        ("{hi: 'Hello {customer_nme}'}", "templates.hi", "unknown placeholder {customer_nme}"),
        ("{hi: 'Hello {customer_name.__class__}'}", "templates.hi", "unknown placeholder"),
        ("{hi: 'Hello {0}'}", "templates.hi", "unknown placeholder"),
        ("{hi: 'Hello {customer_name'}", "templates.hi", "brace without its pair"),
        ("{hi: 'Hello }'}", "templates.hi", "brace without its pair"),
        ("{hi: ''}", "templates.hi", "text of the reply"),
        ("{'bad name': 'x'}", "templates.bad name", "template name"),
        ("[hi]", "templates", "must map"),
    ],
)
def test_bad_templates_are_rejected_with_their_place(templates, path, message):
    source = f"default: {{department: a, priority: low, first_response_minutes: 5}}\ntemplates: {templates}\n"
    with pytest.raises(PlaybookError) as caught:
        parse_yaml(source)
    assert caught.value.path == path
    assert message in str(caught.value)


def test_a_huge_template_is_refused():
    source = "default: {department: a, priority: low, first_response_minutes: 5}\ntemplates: {hi: '" + "x" * 5000 + "'}"
    with pytest.raises(PlaybookError, match="longer than"):
        parse_yaml(source)


def test_notified_departments_must_exist():
    with pytest.raises(PlaybookError, match="no department 'marketing'") as caught:
        compile_playbook(parse_yaml(ACTIONS_SOURCE), departments={"customer-service", "legal"})
    assert caught.value.path == "rules[0].then.notify"


# --- department playbooks and hand-offs ------------------------------------------------------

INTAKE = """
default: {department: customer-service, priority: normal, first_response_minutes: 60}
rules:
  - name: Sales leads
    when: {intent: sales_lead}
    then: {department: sales, priority: high}
"""
SALES = """
rules:
  - name: Enterprise
    when: {terms: [enterprise]}
    then: {priority: urgent, tags: [enterprise], first_response_minutes: 15}
  - name: Contracts are legal's
    when: {terms: [contract]}
    then: {department: legal, tags: [contract]}
"""
LEGAL = """
default: {requires_approval: true, tags: [legal]}
"""
DEPARTMENTS = {"customer-service", "sales", "legal", "marketing"}


def playbook_set(**by_department: str) -> PlaybookSet:
    return PlaybookSet(
        intake=compile_playbook(parse_yaml(INTAKE)),
        by_department={
            slug.replace("_", "-"): compile_playbook(
                parse_yaml(source, department=slug.replace("_", "-")), department=slug
            )
            for slug, source in by_department.items()
        },
    )


def test_the_departments_playbook_refines_the_intakes_decision():
    routed = playbook_set(sales=SALES).route(PostFacts(text="an enterprise plan?", intent="sales_lead"))
    assert (routed.department, routed.priority, routed.first_response_minutes) == ("sales", 1, 15)
    assert routed.tags == ("enterprise",)
    assert routed.rule == "Sales leads › sales: Enterprise"
    # No rule of the department's matched and it has no default: the intake's decision stands.
    assert playbook_set(sales=SALES).route(PostFacts(text="a quote?", intent="sales_lead")).rule == "Sales leads"


def test_a_hand_off_runs_the_next_departments_playbook():
    routed = playbook_set(sales=SALES, legal=LEGAL).route(PostFacts(text="your contract", intent="sales_lead"))
    assert routed.department == "legal"
    assert routed.handoffs == ("sales",)
    assert routed.tags == ("contract", "legal")
    assert routed.requires_approval
    assert routed.rule == "Sales leads › sales: Contracts are legal's › legal: default"


def test_hand_offs_that_loop_are_refused_naming_the_loop():
    back_to_sales = "rules: [{name: Back, when: {terms: [renewal]}, then: {department: sales}}]"
    looping = playbook_set(sales=SALES, legal=back_to_sales)
    with pytest.raises(PlaybookError, match="hand-offs loop between departments: legal → sales → legal"):
        check_set(looping, DEPARTMENTS)
    # Even if such a set ran, routing would stop instead of spinning.
    assert looping.route(PostFacts(text="contract renewal", intent="sales_lead")).department == "legal"
    check_set(playbook_set(sales=SALES, legal=LEGAL), DEPARTMENTS)


def test_a_set_naming_a_missing_department_is_refused_with_the_playbooks_name():
    with pytest.raises(PlaybookError) as caught:
        check_set(playbook_set(sales=SALES), {"customer-service", "sales"})
    assert caught.value.path == "sales: rules[1].then.department"
    with pytest.raises(PlaybookError, match="no department 'pr' to own"):
        check_set(playbook_set(pr=LEGAL), DEPARTMENTS)


def test_a_departments_playbook_has_no_noise_section_and_a_partial_default():
    with pytest.raises(PlaybookError, match="only the intake") as caught:
        parse_yaml("noise: {reposts: false}", department="sales")
    assert caught.value.path == "noise"
    assert parse_yaml("", department="sales") == {}
    with pytest.raises(PlaybookError) as caught:
        parse_yaml("default: {tags: [x]}")
    assert caught.value.path == "default.department"


# --- dry runs ---------------------------------------------------------------------------------


def test_a_dry_run_counts_moves_priority_and_sla_changes_with_examples():
    before = playbook_set()
    after = playbook_set(sales=SALES, legal=LEGAL)
    posts = [
        ReplayedPost(1, "contract?", PostFacts(text="contract please", intent="sales_lead")),
        ReplayedPost(2, "enterprise?", PostFacts(text="enterprise pricing", intent="sales_lead")),
        ReplayedPost(3, "hello", PostFacts(text="hello")),
        ReplayedPost(4, "contract 2", PostFacts(text="another contract", intent="sales_lead")),
    ]
    report = dry_run(posts, before, after, examples=1)
    assert (report.posts, report.changed) == (4, 3)
    assert report.moved == {("sales", "legal"): 2}
    assert report.priority_rows() == [("high", "urgent", 1)]
    assert report.sla == {"first_response_minutes": 1}
    assert report.other["tags"] == 3 and report.other["requires_approval"] == 2
    assert [c.post.case_id for c in report.examples["moved"]] == [1]
    assert dry_run(posts, before, before).changed == 0


def test_a_dry_run_over_hostile_posts_stays_bounded():
    # Regex characters are plain text, and a term past the first MAX_TEXT characters is not read.
    huge = ReplayedPost(1, "x", PostFacts(text="(a+)+$ " * 200_000 + "contract", intent="sales_lead"))
    report = dry_run([huge], playbook_set(), playbook_set(sales=SALES))
    assert (report.posts, report.changed, report.moved) == (1, 0, {})


def test_the_default_playbook_asks_approval_for_legal_threats_and_moves_private_data_private():
    source = (Path(__file__).parents[2] / "playbook" / "default_playbook.yaml").read_text()
    playbook = compile_playbook(parse_yaml(source))
    legal = playbook.route(PostFacts(text="see you in court", intent="legal_threat"))
    assert legal.department == "legal" and legal.requires_approval and legal.tags == ("legal-risk",)
    exposed = playbook.route(PostFacts(text="my card is 4111", private_data=True))
    assert exposed.private and exposed.templates[0].name == "move_private"


def test_business_hours_become_the_sla_calendar():
    source = (
        "business_hours:\n"
        "  timezone: Europe/London\n"
        '  hours: {mon: "09:00-17:00", tue: "09:00-17:00", wed: "09:00-17:00", thu: "09:00-17:00",\n'
        '          fri: "09:00-17:00"}\n'
        "  holidays: [2026-12-25]\n"
        "default: {department: customer-service, priority: normal, first_response_minutes: 60}\n"
    )
    data = parse_yaml(source)
    assert data["business_hours"]["holidays"] == ["2026-12-25"]  # stored as JSON text, not a date
    calendar = compile_playbook(data).calendar
    assert not calendar.is_always_open and calendar.timezone == "Europe/London"
    assert compile_playbook(parse_yaml(SOURCE)).calendar.is_always_open


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ("business_hours: [mon]", "business_hours"),
        ("business_hours: {timezone: Mars/Olympus, hours: {mon: '09:00-17:00'}}", "business_hours"),
        ("business_hours: {hours: {funday: '09:00-17:00'}}", "business_hours"),
        ("business_hours: {hours: {mon: '17:00-09:00'}}", "business_hours"),
        ("business_hours: {hours: {mon: '09:00-17:00'}, open: always}", "business_hours.open"),
        ("business_hours: {timezone: UTC}", "business_hours.hours"),
    ],
)
def test_bad_business_hours_are_rejected_with_their_place(section, path):
    with pytest.raises(PlaybookError) as error:
        parse_yaml(section + "\ndefault: {department: a, priority: low, first_response_minutes: 5}")
    assert error.value.path == path


# --- customer tier, account and business hours -----------------------------------------------

OFFICE_HOURS = """
business_hours:
  timezone: Europe/London
  hours: {mon: "09:00-17:00", tue: "09:00-17:00", wed: "09:00-17:00", thu: "09:00-17:00", fri: "09:00-17:00"}
"""
WHO_AND_WHEN = """
default: {department: customer-service, priority: normal, first_response_minutes: 60}
rules:
  - name: VIPs
    when: {tier: vip}
    then: {priority: urgent}
  - name: Good customers
    when: {tier: [premium, vip]}
    then: {priority: high}
  - name: The help account on Mastodon
    when: {account: "mastodon:@Acme_Help"}
    then: {department: support}
  - name: Any account called acme
    when: {account: [acme]}
    then: {department: brand}
  - name: After hours
    when: {business_hours: false}
    then: {tags: [after-hours]}
  - name: In hours
    when: {business_hours: true, intent: question}
    then: {tags: [in-hours]}
"""
# Monday 2026-07-06, London summer time (UTC+1).
IN_HOURS = dt.datetime(2026, 7, 6, 10, tzinfo=dt.UTC)
AFTER_HOURS = dt.datetime(2026, 7, 6, 20, tzinfo=dt.UTC)


def test_tier_and_account_conditions():
    playbook = compile_playbook(parse_yaml(WHO_AND_WHEN))
    assert playbook.route(PostFacts(text="x", tier="vip")).rule == "VIPs"
    assert playbook.route(PostFacts(text="x", tier="premium")).rule == "Good customers"
    assert playbook.route(PostFacts(text="x")).rule == "default"  # standard by default
    assert playbook.route(PostFacts(text="x", tier="VIP")).rule == "default"  # tiers are exact names
    # network:handle is that one account; a handle alone is that handle on any network.
    assert playbook.route(PostFacts(text="x", channel="mastodon", account="acme_help")).rule == (
        "The help account on Mastodon"
    )
    assert playbook.route(PostFacts(text="x", channel="twitter", account="acme_help")).rule == "default"
    assert playbook.route(PostFacts(text="x", channel="twitter", account="acme")).rule == "Any account called acme"
    assert playbook.route(PostFacts(text="x", channel="rss", account="acme")).rule == "Any account called acme"
    assert playbook.route(PostFacts(text="x", channel="rss", account="acme2")).rule == "default"


def test_business_hours_condition_reads_the_intakes_calendar_at_the_posts_time():
    playbook = compile_playbook(parse_yaml(OFFICE_HOURS + WHO_AND_WHEN))
    assert playbook.route(PostFacts(text="x", posted_at=AFTER_HOURS)).tags == ("after-hours",)
    assert playbook.route(PostFacts(text="x", posted_at=IN_HOURS)).rule == "default"
    assert playbook.route(PostFacts(text="x", intent="question", posted_at=IN_HOURS)).tags == ("in-hours",)
    saturday = IN_HOURS + dt.timedelta(days=5)
    assert playbook.route(PostFacts(text="x", intent="question", posted_at=saturday)).tags == ("after-hours",)
    # A post of unknown time is neither in nor out of business hours.
    assert playbook.route(PostFacts(text="x", intent="question")).rule == "default"
    # Without business hours every hour is one.
    always = compile_playbook(parse_yaml(WHO_AND_WHEN))
    assert always.route(PostFacts(text="x", intent="question", posted_at=AFTER_HOURS)).tags == ("in-hours",)


def test_a_departments_playbook_uses_the_intakes_business_hours():
    intake = compile_playbook(parse_yaml(OFFICE_HOURS + INTAKE))
    sales = "rules: [{name: Late leads, when: {business_hours: false}, then: {tags: [late-lead]}}]"
    routed = PlaybookSet(
        intake=intake, by_department={"sales": compile_playbook(parse_yaml(sales, "sales"), department="sales")}
    )
    assert routed.route(PostFacts(text="x", intent="sales_lead", posted_at=AFTER_HOURS)).tags == ("late-lead",)
    assert routed.route(PostFacts(text="x", intent="sales_lead", posted_at=IN_HOURS)).tags == ()


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("{tier: gold}", "'gold' is not one of premium, standard, vip"),
        ("{tier: [vip, 3]}", "word or a list of words"),
        ("{tier: []}", "word or a list of words"),
        ("{business_hours: 'no'}", "must be true (in business hours) or false"),
        ("{business_hours: 0}", "must be true"),
        ("{account: ':acme'}", "write network:handle"),
        ("{account: 'twitter:@'}", "is not an account handle"),
        ("{account: ['acme', '']}", "is not an account handle"),
        ("{account: ['x" + "a" * 300 + "']}", "is not an account handle"),
        ("{account: {twitter: acme}}", "word or a list of words"),
    ],
)
def test_bad_tier_account_and_business_hours_conditions_are_refused_with_their_place(when, message):
    source = (
        "default: {department: a, priority: low, first_response_minutes: 5}\n"
        "rules: [{when: {intent: complaint}, then: {priority: high}},\n"
        f"        {{when: {when}, then: {{priority: high}}}}]"
    )
    key = when.strip("{").split(":")[0]
    with pytest.raises(PlaybookError) as caught:
        parse_yaml(source)
    assert caught.value.path == f"rules[1].when.{key}"
    assert message in str(caught.value)


def test_an_account_condition_must_name_one_of_the_organizations_accounts():
    playbook = compile_playbook(parse_yaml(WHO_AND_WHEN))
    check_accounts(playbook, [("mastodon", "@ACME_help"), ("rss", "acme")])
    with pytest.raises(PlaybookError) as caught:
        check_accounts(playbook, [("twitter", "acme_help"), ("rss", "acme")], prefix="sales: ")
    assert caught.value.path == "sales: rules[2].when.account"
    assert "no account 'mastodon:acme_help' (known: rss:acme, twitter:acme_help)" in str(caught.value)
    with pytest.raises(PlaybookError, match="no account 'acme' .known: mastodon:acme_help.") as caught:
        check_accounts(playbook, [("mastodon", "acme_help")])
    assert caught.value.path == "rules[3].when.account"
    with pytest.raises(PlaybookError, match="known: none yet"):
        check_accounts(playbook, [])


def test_the_default_playbook_hurries_a_vips_complaint_but_not_their_praise():
    source = (Path(__file__).parents[2] / "playbook" / "default_playbook.yaml").read_text()
    playbook = compile_playbook(parse_yaml(source))
    vip = playbook.route(PostFacts(text="my bag is lost", intent="complaint", tier="vip"))
    assert (vip.rule, vip.priority, vip.first_response_minutes, vip.tags) == ("VIP customers", 2, 15, ("vip",))
    assert playbook.route(PostFacts(text="my bag is lost", intent="complaint")).rule == "Complaints"
    assert playbook.route(PostFacts(text="great crew!", intent="praise", tier="vip")).department == "marketing"
    # Legal threats still go to legal first, whoever writes them.
    assert playbook.route(PostFacts(text="my lawyer", intent="legal_threat", tier="vip")).department == "legal"


def test_a_dry_run_tells_business_hours_by_each_sets_own_calendar():
    rule = "rules: [{name: After hours, when: {business_hours: false}, then: {priority: low}}]\n"
    default = "default: {department: customer-service, priority: normal, first_response_minutes: 60}\n"
    before = PlaybookSet(intake=compile_playbook(parse_yaml(default + rule)))
    after = PlaybookSet(intake=compile_playbook(parse_yaml(OFFICE_HOURS + default + rule)))
    posts = [
        ReplayedPost(1, "late", PostFacts(text="x", posted_at=AFTER_HOURS)),
        ReplayedPost(2, "day", PostFacts(text="x", posted_at=IN_HOURS)),
    ]
    report = dry_run(posts, before, after)
    assert (report.changed, report.priority_rows()) == (1, [("normal", "low", 1)])
    assert [c.post.case_id for c in report.examples["priority"]] == [1]
