"""Customer tiers: a VIP list loaded ahead of the first post, set on the case page, and what the
pipeline, the priority score and triage make of them."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from hubbub.accounts.models import Role
from hubbub.connectors.models import Network
from hubbub.governance.models import AuditEvent
from hubbub.inbox import actions as inbox_actions
from hubbub.inbox.actions import CaseActionError, do_correct_labels, do_import_tiers, do_set_customer_tier
from hubbub.inbox.models import Case, CaseStatus, Customer, Identity, Priority, Tier
from hubbub.inbox.tests.test_pipeline import _customer_post, drain, imported_account
from hubbub.inbox.tests.test_views import HOSTILE, PASSWORD, make_account, make_case, make_member, make_org
from hubbub.lib.priority import TIERS
from hubbub.lib.tierlist import TierRow


@pytest.fixture
def org(db):
    return make_org("Acme", "acme")


@pytest.fixture
def twitter(org):
    return imported_account(org)


def write_csv(tmp_path, text: str, name="vips.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def import_tiers(path, organization="acme") -> tuple[str, str]:
    out, err = _Buffer(), _Buffer()
    call_command("import_tiers", str(path), organization=organization, stdout=out, stderr=err)
    return out.text, err.text


class _Buffer:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_the_models_tiers_are_the_ones_scoring_and_playbooks_read():
    assert tuple(Tier.values) == TIERS


# --- the VIP list -------------------------------------------------------------------------------


def test_a_listed_vip_is_recognised_on_their_first_post(org, twitter, tmp_path):
    out, err = import_tiers(write_csv(tmp_path, "network,handle,tier\ntwitter,@7,vip\ntwitter,8,standard\n"))
    assert "tiers set: 1 vip (1 new customers for handles not seen yet); 1 unchanged" in out and err == ""
    _customer_post(twitter, "1", "7", "@acme my parcel is late and nobody answers the phone")
    _customer_post(twitter, "2", "9", "@acme my parcel is late and nobody answers the phone")
    drain()
    vip = Case.objects.get(customer__identities__handle="7")
    assert vip.customer.tier == Tier.VIP
    assert Identity.objects.filter(handle="7").count() == 1  # the post found the listed identity
    # The starter playbook's VIP rule, and the tier in the priority score.
    assert (vip.playbook_rule, vip.tags, vip.priority) == ("VIP customers", ["vip"], Priority.HIGH)
    assert "vip customer" in {reason.detail for reason in _reasons(vip)}
    other = Case.objects.get(customer__identities__handle="9")
    assert other.customer.tier == Tier.STANDARD and other.playbook_rule == "Complaints"
    assert "tier" not in {reason.factor for reason in _reasons(other)}


def test_the_tier_counts_in_the_priority_score_at_opening(org, twitter):
    from hubbub.playbook.actions import do_publish_playbook

    do_publish_playbook(org, "default: {department: customer-service, priority: low, first_response_minutes: 60}")
    do_import_tiers(org, [TierRow(1, "twitter", "7", "vip")])
    _customer_post(twitter, "1", "7", "@acme what time does the Leeds store open on Sunday?")
    _customer_post(twitter, "2", "8", "@acme what time does the Leeds store open on Sunday?")
    drain()
    # No rule mentions tiers: the score alone lifts the VIP's calm question above the playbook's low.
    assert Case.objects.get(customer__identities__handle="7").priority == Priority.NORMAL
    assert Case.objects.get(customer__identities__handle="8").priority == Priority.LOW


def _reasons(case: Case):
    from hubbub.lib.priority import score

    return score(case.priority_signals(case.customer.tier)).reasons


def test_the_list_sets_known_customers_and_reports_bad_rows_with_their_line(org, twitter, tmp_path):
    _customer_post(twitter, "1", "7", "@acme hello")
    drain()
    known = Customer.objects.get(identities__handle="7")
    csv = (
        "twitter,7,premium\n"
        "twitter,8,platinum\n"
        "myspace,tom,vip\n"
        "twitter,7,vip\n"
        "mastodon,newbie@social.example,vip\n"
        f"twitter,{HOSTILE},vip,oops\n"
    )
    out, err = import_tiers(write_csv(tmp_path, csv))
    assert "1 premium, 1 vip (1 new customers" in out and "4 rows skipped" in out
    assert err.splitlines() == [
        "  line 2: unknown tier 'platinum' (known: standard, premium, vip)",
        "  line 3: unknown network 'myspace' (known: bluesky, email, mastodon, meta, reddit, rss, twitter)",
        "  line 4: twitter,7 is already on line 1",
        "  line 6: expected network,handle,tier; found 4 values",
    ]
    known.refresh_from_db()
    assert known.tier == Tier.PREMIUM
    assert Customer.objects.get(identities__handle="newbie@social.example").tier == Tier.VIP
    audit = AuditEvent.objects.filter(action="customer.tier_set", target_id=str(known.pk)).get()
    assert audit.data == {"before": "standard", "after": "premium", "source": "vips.csv"}
    summary = AuditEvent.objects.get(action="customer.tiers_imported")
    assert summary.data == {
        "source": "vips.csv",
        "rows": 2,
        "changed": {"premium": 1, "vip": 1},
        "created": 1,
        "unchanged": 0,
    }
    # Loading the same list again changes nothing.
    again, _ = import_tiers(write_csv(tmp_path, csv))
    assert "tiers set: none (0 new customers for handles not seen yet); 2 unchanged" in again


def test_one_customer_cannot_get_two_tiers_through_two_identities(org):
    customer = Customer.objects.create(organization=org)
    for network in (Network.TWITTER, Network.MASTODON):
        Identity.objects.create(organization=org, customer=customer, network=network, handle="sam")
    rows = [TierRow(1, "twitter", "sam", "vip"), TierRow(2, "mastodon", "sam", "premium")]
    report = do_import_tiers(org, rows)
    assert [(r.line, r.reason) for r in report.rejected] == [(2, "the same customer is vip on line 1")]
    customer.refresh_from_db()
    assert customer.tier == Tier.VIP


def test_another_organizations_customers_are_untouched(org, tmp_path):
    other = make_org("Globex", "globex")
    theirs = Customer.objects.create(organization=other)
    Identity.objects.create(organization=other, customer=theirs, network=Network.TWITTER, handle="7")
    import_tiers(write_csv(tmp_path, "twitter,7,vip\n"))
    theirs.refresh_from_db()
    assert theirs.tier == Tier.STANDARD
    assert Identity.objects.filter(organization=org, handle="7").get().customer.tier == Tier.VIP


def test_a_failed_import_writes_nothing(org, twitter, tmp_path, monkeypatch):
    _customer_post(twitter, "1", "7", "@acme hello")
    drain()

    def broken(tiers):
        raise RuntimeError("disk full")

    monkeypatch.setattr(inbox_actions, "_rescore_open_cases", broken)
    with pytest.raises(RuntimeError):
        import_tiers(write_csv(tmp_path, "twitter,7,vip\ntwitter,new,vip\n"))
    assert set(Customer.objects.values_list("tier", flat=True)) == {Tier.STANDARD}
    assert not Identity.objects.filter(handle="new").exists()
    assert not AuditEvent.objects.filter(action__startswith="customer.").exists()


def test_the_command_refuses_what_it_cannot_read(org, tmp_path):
    with pytest.raises(CommandError, match="no organization 'nope'"):
        import_tiers(write_csv(tmp_path, "twitter,7,vip\n"), organization="nope")
    with pytest.raises(CommandError, match="nothing was changed"):
        import_tiers(tmp_path / "missing.csv")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("twitter,josé,vip\n".encode("latin-1"))
    with pytest.raises(CommandError, match="nothing was changed"):
        import_tiers(latin1)
    # A byte-order mark, as spreadsheets write, is not part of the first network's name.
    out, err = import_tiers(write_csv(tmp_path, "\ufefftwitter,7,vip\r\n"))
    assert "1 vip" in out and err == ""


# --- setting a tier on the case page ----------------------------------------------------------


def test_a_new_tier_raises_the_customers_open_cases_but_never_lowers_them(org):
    account = make_account(org)
    case = make_case(account, priority=Priority.LOW)  # severity 0, negative: scores normal (3) unaided
    customer = case.customer
    overridden = make_case(account, priority=Priority.LOW)
    Case.objects.filter(pk=overridden.pk).update(customer=customer, priority_overridden=True)
    closed = make_case(account, priority=Priority.LOW, status=CaseStatus.CLOSED)
    Case.objects.filter(pk=closed.pk).update(customer=customer)
    Case.objects.filter(pk=case.pk).update(severity=3)

    raised = do_set_customer_tier(customer, None, Tier.VIP)
    assert raised == [case.pk]
    priorities = dict(Case.objects.values_list("pk", "priority"))
    assert priorities[case.pk] < Priority.LOW
    assert (priorities[overridden.pk], priorities[closed.pk]) == (Priority.LOW, Priority.LOW)
    # Back to standard: the customer changes, the raised priority stays (the playbook's floor is not kept).
    assert do_set_customer_tier(customer, None, Tier.STANDARD) == []
    assert Case.objects.get(pk=case.pk).priority == priorities[case.pk]
    events = AuditEvent.objects.filter(action="customer.tier_set", target_id=str(customer.pk)).order_by("id")
    assert [(e.data["before"], e.data["after"]) for e in events] == [("standard", "vip"), ("vip", "standard")]
    assert events[0].data["raised"] == [case.pk]


@pytest.mark.parametrize("tier", ["gold", "", "VIP", HOSTILE])
def test_an_unknown_tier_is_refused(org, tier):
    case = make_case(make_account(org))
    with pytest.raises(CaseActionError, match="is not a customer tier"):
        do_set_customer_tier(case.customer, None, tier)
    assert Customer.objects.get(pk=case.customer_id).tier == Tier.STANDARD


def login(client, user):
    assert client.login(username=user.username, password=PASSWORD)


def test_supervisors_set_the_tier_from_the_case_page_and_see_why_the_priority_moved(client, org):
    case = make_case(make_account(org))
    supervisor = make_member(org, "sue", Role.SUPERVISOR)
    login(client, supervisor)
    page = client.get(reverse("inbox:case", args=[case.pk])).content.decode()
    assert reverse("inbox:customer_tier", args=[case.pk]) in page
    response = client.post(reverse("inbox:customer_tier", args=[case.pk]), {"tier": "vip"})
    assert response.status_code == 302 and response.url == reverse("inbox:case", args=[case.pk])
    assert Customer.objects.get(pk=case.customer_id).tier == Tier.VIP
    page = client.get(reverse("inbox:case", args=[case.pk])).content.decode()
    assert '<span class="badge tier">VIP</span>' in page
    assert "vip customer: +15" in page
    assert '<option value="vip" selected>VIP</option>' in page
    queue = client.get(reverse("inbox:queue")).content.decode()
    assert '<span class="badge tier">VIP</span>' in queue
    # A bad value is refused with a message and changes nothing.
    client.post(reverse("inbox:customer_tier", args=[case.pk]), {"tier": "gold"})
    assert Customer.objects.get(pk=case.customer_id).tier == Tier.VIP
    assert "is not a customer tier" in client.get(reverse("inbox:case", args=[case.pk])).content.decode()


def test_agents_and_other_organizations_cannot_set_a_tier(client, org):
    case = make_case(make_account(org))
    url = reverse("inbox:customer_tier", args=[case.pk])
    agent = make_member(org, "alice")
    login(client, agent)
    assert url not in client.get(reverse("inbox:case", args=[case.pk])).content.decode()
    assert client.post(url, {"tier": "vip"}).status_code == 404
    other = make_org("Globex", "globex")
    login(client, make_member(other, "boss", Role.ADMIN, departments=()))
    assert client.post(url, {"tier": "vip"}).status_code == 404
    assert client.get(url).status_code == 405
    assert Customer.objects.get(pk=case.customer_id).tier == Tier.STANDARD
    assert not AuditEvent.objects.filter(action="customer.tier_set").exists()


# --- triage routes by the tier too ------------------------------------------------------------


def test_a_vips_case_leaving_triage_is_routed_by_the_tier(org, twitter):
    _customer_post(twitter, "1", "7", "@acme hmm")
    drain()
    case = Case.objects.get()
    Case.objects.filter(pk=case.pk).update(needs_triage=True)
    do_set_customer_tier(case.customer, None, Tier.VIP)
    do_correct_labels(Case.objects.get(pk=case.pk), None, ["complaint"], "negative", 2)
    case.refresh_from_db()
    assert (case.needs_triage, case.playbook_rule, case.tags) == (False, "VIP customers", ["vip"])
