"""The playbook's `sla:` section: targets per priority and channel, the warning and the escalation
chain, and errors that point at the mistake. No database."""

from datetime import timedelta

import pytest

from hubbub.lib.playbook import PlaybookError, PlaybookSet, check_set, compile_playbook, parse_yaml
from hubbub.lib.sla import DEFAULT_ESCALATION, ReassignTo, StepKind

BASE = "default: {department: customer-service, priority: normal, first_response_minutes: 60}\n"
SLA = """
sla:
  warn_at: 0.75
  targets:
    public:
      urgent: {first_response: 15, next_response: 30, resolution: 240}
      normal: {first_response: 60, next_response: 120, resolution: 1440}
    private:
      normal: {first_response: 120, next_response: 240, resolution: 2880}
  escalation:
    - notify_supervisor
    - raise_priority: true
    - reassign: supervisor
    - notify_department: legal
      after_minutes: 30
"""


def test_targets_warning_and_chain_are_read():
    playbook = compile_playbook(parse_yaml(BASE + SLA))
    policy = playbook.sla
    assert policy.warn_at == pytest.approx(0.75)
    assert policy.target(1, "public", "first_response") == timedelta(minutes=15)
    assert policy.target(2, "public", "resolution") == timedelta(minutes=240)  # high takes urgent's
    assert policy.target(3, "private", "next_response") == timedelta(minutes=240)
    assert policy.target(1, "private", "first_response") == timedelta(minutes=120)  # the laxest there is
    assert [step.kind for step in policy.escalation] == [
        StepKind.NOTIFY_SUPERVISOR,
        StepKind.RAISE_PRIORITY,
        StepKind.REASSIGN,
        StepKind.NOTIFY_DEPARTMENT,
    ]
    assert policy.escalation[2].to == ReassignTo.SUPERVISOR
    assert policy.escalation[3].department == "legal"
    assert policy.escalation[3].after == timedelta(minutes=30)
    assert "30 min after the breach" in policy.escalation[3].describe()
    # The set routes with the intake's policy, in the intake's business hours.
    assert PlaybookSet(intake=playbook).sla is policy


def test_no_sla_section_means_no_targets_and_the_default_chain():
    policy = compile_playbook(parse_yaml(BASE)).sla
    assert policy.targets == {}
    assert policy.target(3, "public", "first_response") is None
    assert policy.escalation == DEFAULT_ESCALATION
    assert policy.warn_at == pytest.approx(0.8)
    assert compile_playbook(parse_yaml(BASE + "sla: {escalation: []}")).sla.escalation == ()


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ("sla: [1]", "sla", "mapping"),
        ("sla: {deadline: 5}", "sla.deadline", "unknown key"),
        ("sla: {warn_at: 80}", "sla.warn_at", "fraction"),
        ("sla: {warn_at: true}", "sla.warn_at", "fraction"),
        ("sla: {targets: {carrier-pigeon: {}}}", "sla.targets.carrier-pigeon", "public, private"),
        ("sla: {targets: {public: {}}}", "sla.targets.public", "priorities"),
        ("sla: {targets: {public: {asap: {}}}}", "sla.targets.public.asap", "unknown priority"),
        (
            "sla: {targets: {public: {normal: {first_response: 5, next_response: 5}}}}",
            "sla.targets.public.normal.resolution",
            "required",
        ),
        (
            "sla: {targets: {public: {normal: {first_response: 0, next_response: 5, resolution: 5}}}}",
            "sla.targets.public.normal.first_response",
            "minutes from 1",
        ),
        (
            "sla: {targets: {public: {normal: {first_respons: 5}}}}",
            "sla.targets.public.normal.first_respons",
            "unknown target",
        ),
        ("sla: {escalation: notify_supervisor}", "sla.escalation", "list of steps"),
        ("sla: {escalation: [page_the_ceo]}", "sla.escalation[0].page_the_ceo", "unknown step"),
        ("sla: {escalation: [raise_priority, {reassign: manager}]}", "sla.escalation[1].reassign", "queue or"),
        ("sla: {escalation: [{notify_department: ''}]}", "sla.escalation[0].notify_department", "slug"),
        ("sla: {escalation: [{raise_priority: 2}]}", "sla.escalation[0].raise_priority", "takes no value"),
        ("sla: {escalation: [{raise_priority: null, reassign: queue}]}", "sla.escalation[0]", "one of"),
        ("sla: {escalation: [{raise_priority: null, after_minutes: -5}]}", "sla.escalation[0].after_minutes", "0 to"),
    ],
)
def test_mistakes_are_refused_with_their_place(section, path, message):
    with pytest.raises(PlaybookError) as caught:
        parse_yaml(BASE + section)
    assert caught.value.path == path
    assert message in caught.value.message


def test_a_department_playbook_cannot_set_sla():
    with pytest.raises(PlaybookError, match="intake playbook"):
        parse_yaml("sla: {warn_at: 0.5}", department="legal")


def test_notifying_an_unknown_department_is_refused_when_the_set_is_checked():
    playbook = compile_playbook(parse_yaml(BASE + "sla: {escalation: [{notify_department: legall}]}"))
    with pytest.raises(PlaybookError) as caught:
        check_set(PlaybookSet(intake=playbook), {"customer-service", "legal"})
    assert caught.value.path == "sla.escalation[0].notify_department"
    assert "no department 'legall'" in caught.value.message
