import pytest
from django.core.management import CommandError, call_command

from hubbub.accounts.actions import do_create_organization
from hubbub.governance.models import AuditEvent
from hubbub.lib.playbook import PlaybookError
from hubbub.playbook.actions import active_playbook, do_publish_default_playbook, do_publish_playbook
from hubbub.playbook.models import Playbook

GOOD = "default: {department: sales, priority: high, first_response_minutes: 10}\n"


@pytest.fixture
def org(db):
    organization = do_create_organization("Acme", "acme")
    do_publish_default_playbook(organization)
    return organization


def test_publishing_makes_a_new_active_version_and_keeps_the_old(org):
    playbook = do_publish_playbook(org, GOOD)
    assert playbook.version == 2
    assert list(Playbook.objects.filter(organization=org).values_list("version", "is_active")) == [
        (2, True),
        (1, False),
    ]
    version, compiled = active_playbook(org.pk)
    assert version == 2 and compiled.default.department == "sales"
    assert AuditEvent.objects.filter(action="playbook.published", organization=org).count() == 2


def test_a_bad_playbook_is_refused_and_the_running_version_stays(org):
    with pytest.raises(PlaybookError, match="no department 'pr'"):
        do_publish_playbook(org, "default: {department: pr, priority: high, first_response_minutes: 10}")
    with pytest.raises(PlaybookError):
        do_publish_playbook(org, "default: [unclosed")
    assert active_playbook(org.pk)[0] == 1


def test_the_command_publishes_a_file_and_explains_a_mistake(org, tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    call_command("playbook", str(good), organization="acme")
    assert active_playbook(org.pk)[0] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + "rules: [{when: {intent: furious}, then: {priority: high}}]\n")
    with pytest.raises(CommandError, match=r"rules\[0\]\.when\.intent.*running version stays"):
        call_command("playbook", str(bad), organization="acme")
    assert active_playbook(org.pk)[0] == 2


def test_the_command_publishes_a_department_playbook_and_refuses_a_loop(org, tmp_path):
    sales = tmp_path / "sales.yaml"
    sales.write_text("rules: [{when: {terms: [contract]}, then: {department: legal}}]\n")
    call_command("playbook", str(sales), organization="acme", department="sales")
    assert Playbook.objects.get(organization=org, is_active=True, department__slug="sales").version == 2
    legal = tmp_path / "legal.yaml"
    legal.write_text("rules: [{when: {terms: [renewal]}, then: {department: sales}}]\n")
    with pytest.raises(CommandError, match="hand-offs loop.*running version stays"):
        call_command("playbook", str(legal), organization="acme", department="legal", check=True)
    with pytest.raises(CommandError, match="no department 'pr'"):
        call_command("playbook", str(legal), organization="acme", department="pr")
    assert active_playbook(org.pk)[0] == 2
