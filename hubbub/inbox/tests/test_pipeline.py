"""Import -> events -> cases: threading, routing, brand replies, dead letters, no loss, no doubles."""

from pathlib import Path

import pytest

from hubbub.accounts.actions import do_create_organization
from hubbub.accounts.models import Department
from hubbub.connectors.actions import do_import_file, do_store_events
from hubbub.connectors.base import RawPost
from hubbub.connectors.models import EventState, InboundEvent, Network, SocialAccount
from hubbub.inbox import pipeline
from hubbub.inbox.actions import do_retry_event
from hubbub.inbox.models import Case, CaseStatus, Direction, Identity, Message
from hubbub.listening.actions import do_save_query
from hubbub.listening.models import ListeningQuery
from hubbub.playbook.actions import do_publish_default_playbook
from hubbub.worker import Worker

FIXTURE = Path(__file__).parents[2] / "connectors" / "twcs" / "tests" / "fixtures" / "sample.csv"


def imported_account(org) -> SocialAccount:
    """The brand's X account as `hubbub import` makes it: posts come from a file, nothing is polled."""
    return SocialAccount.objects.create(
        organization=org, network=Network.TWITTER, handle="acme", settings={"imported": True}, polling_enabled=False
    )


@pytest.fixture
def org(db):
    organization = do_create_organization("Acme", "acme")
    do_publish_default_playbook(organization)
    return organization


def drain():
    return Worker(poll=False).drain()


def test_import_then_drain_builds_threads(org):
    report = do_import_file(FIXTURE, org)
    assert (report.read, report.stored, len(report.rejected)) == (9, 8, 1)
    assert report.accounts == {"acmeair", "shopco"}
    drain()

    acme = SocialAccount.objects.get(handle="acmeair")
    cancelled = Case.objects.get(account=acme, customer__identities__handle="500")
    messages = list(cancelled.messages.values_list("external_id", "direction"))
    # Question, the brand's answer and the customer's follow-up are one conversation, in time order.
    assert messages == [("9", Direction.INBOUND), ("10", Direction.OUTBOUND), ("11", Direction.INBOUND)]
    assert cancelled.intent == "complaint"
    assert cancelled.first_responded_at.isoformat() == "2017-11-06T09:05:00+00:00"
    # The customer wrote again after the answer: the case is back with the agents.
    assert cancelled.status == CaseStatus.OPEN
    assert cancelled.first_response_due_at is not None

    question = Case.objects.get(customer__identities__handle="501")
    assert question.intent == "question" and question.status == CaseStatus.NEW
    assert question.department.slug == "customer-service"

    praise = Case.objects.get(customer__identities__handle="502")
    # Two posts from the same customer within the window: one case, answered by the brand.
    assert praise.messages.count() == 3
    assert praise.department.slug == "marketing"
    hostile = praise.messages.get(external_id="31")
    assert hostile.text.endswith("<script>alert(1)</script>")  # stored as written; escaped when shown


def test_bad_event_goes_to_dead_letters_and_the_rest_goes_on(org):
    do_import_file(FIXTURE, org)
    tally = drain()
    assert tally.processed == 8
    failed = InboundEvent.objects.get(state=EventState.FAILED)
    assert failed.external_id == "50" and "not a date" in failed.error
    assert InboundEvent.objects.filter(state=EventState.DONE).count() == 7
    # The raw payload is kept for the agent to see and for a retry after a fix.
    assert failed.payload["text"] == "@acmeair this row has a bad date"


def test_retry_after_fixing_a_dead_letter(org):
    do_import_file(FIXTURE, org)
    drain()
    failed = InboundEvent.objects.get(state=EventState.FAILED)
    failed.payload["created_at"] = "Mon Nov 06 14:00:00 +0000 2017"
    failed.save()
    do_retry_event(failed, None)
    drain()
    failed.refresh_from_db()
    assert failed.state == EventState.DONE
    assert Message.objects.filter(external_id="50").count() == 1


def test_importing_twice_doubles_nothing(org):
    do_import_file(FIXTURE, org)
    drain()
    counts = (Case.objects.count(), Message.objects.count(), Identity.objects.count())
    again = do_import_file(FIXTURE, org)
    assert (again.stored, again.duplicates) == (0, 8)
    drain()
    assert (Case.objects.count(), Message.objects.count(), Identity.objects.count()) == counts


def test_redelivered_post_under_a_new_event_is_not_threaded_twice(org):
    account = imported_account(org)
    row = {
        "tweet_id": "1",
        "author_id": "9",
        "inbound": "True",
        "created_at": "2017-11-06T09:00:00Z",
        "text": "@acme where is my parcel?",
        "response_tweet_id": "",
        "in_response_to_tweet_id": "",
    }
    do_store_events(account, [RawPost("1", row)])
    drain()
    # The same post arrives again under another event key (as a network's retry might).
    do_store_events(account, [RawPost("1-again", row)])
    drain()
    assert Message.objects.count() == 1
    assert InboundEvent.objects.filter(state=EventState.DONE).count() == 2


def test_a_batch_killed_midway_is_done_again_whole(org, monkeypatch):
    do_import_file(FIXTURE, org)
    calls = {"n": 0}
    real_save = pipeline._Threader._save

    def dying_save(self):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("worker killed")  # not an Exception: nothing catches it
        return real_save(self)

    monkeypatch.setattr(pipeline._Threader, "_save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        drain()
    assert Case.objects.count() == 0
    assert InboundEvent.objects.filter(state=EventState.PENDING).count() == 8
    drain()
    assert InboundEvent.objects.filter(state=EventState.PENDING).count() == 0
    assert Message.objects.filter(external_id="9").count() == 1


def test_new_post_outside_the_window_opens_a_new_case(org, settings):
    settings.HUBBUB_THREAD_WINDOW_HOURS = 1
    account = imported_account(org)

    def row(tweet_id, when):
        return RawPost(
            tweet_id,
            {
                "tweet_id": tweet_id,
                "author_id": "9",
                "inbound": "True",
                "created_at": when,
                "text": "@acme hello?",
                "response_tweet_id": "",
                "in_response_to_tweet_id": "",
            },
        )

    do_store_events(
        account, [row("1", "2017-11-06T09:00:00Z"), row("2", "2017-11-06T09:30:00Z"), row("3", "2017-11-06T12:00:00Z")]
    )
    drain()
    assert Case.objects.count() == 2
    assert Identity.objects.count() == 1


def test_playbook_routes_legal_threats_and_private_data(org):
    account = imported_account(org)

    def row(tweet_id, author, text):
        return RawPost(
            tweet_id,
            {
                "tweet_id": tweet_id,
                "author_id": author,
                "inbound": "True",
                "created_at": "2017-11-06T09:00:00Z",
                "text": text,
                "response_tweet_id": "",
                "in_response_to_tweet_id": "",
            },
        )

    do_store_events(
        account,
        [
            row("1", "7", "@acme I will sue you, my lawyer is drafting the claim"),
            row("2", "8", "@acme my card 4111 1111 1111 1111 was charged twice"),
        ],
    )
    drain()
    legal = Case.objects.get(customer__identities__handle="7")
    assert (legal.department.slug, legal.get_priority_display()) == ("legal", "Urgent")
    leaked = Case.objects.get(customer__identities__handle="8")
    assert "card_number" in leaked.private_data and leaked.get_priority_display() == "Urgent"


def _customer_post(account, tweet_id: str, author: str, text: str) -> None:
    row = {
        "tweet_id": tweet_id,
        "author_id": author,
        "inbound": "True",
        "created_at": "2017-11-06T09:00:00Z",
        "text": text,
        "response_tweet_id": "",
        "in_response_to_tweet_id": "",
    }
    do_store_events(account, [RawPost(tweet_id, row)])


def test_listening_queries_mark_cases_and_route_what_no_rule_claims(org):
    account = imported_account(org)
    operations = Department.objects.get(organization=org, slug="operations")
    do_save_query(org, None, name="Battery", query='battery NEAR/3 hot OR "battery swollen"', department=operations)
    _customer_post(account, "1", "7", "my phone battery got really hot overnight, is that normal?")
    _customer_post(account, "2", "8", "where is my parcel?")
    drain()
    matched = Case.objects.get(customer__identities__handle="7")
    assert matched.listening == ["Battery"] and matched.department == operations
    assert matched.messages.get().classification["listening"] == ["Battery"]
    other = Case.objects.get(customer__identities__handle="8")
    assert other.listening == [] and other.department.slug == "customer-service"

    # An edit applies to the next batch without restarting anything.
    query = ListeningQuery.objects.get(organization=org)
    do_save_query(org, None, name="Battery", query="parcel", department=operations, listening_query=query)
    _customer_post(account, "3", "9", "parcel lost again")
    drain()
    assert Case.objects.get(customer__identities__handle="9").listening == ["Battery"]


def test_noise_is_filtered_before_threading_and_kept_for_review(org):
    account = imported_account(org)
    text = "Boycott @acme until they stop testing on animals, share this everywhere now please!"
    for n in range(6):
        _customer_post(account, str(n + 1), f"user{n}", text)
    drain()
    # The first post of the copy-paste campaign is a case; the five copies are filtered, not lost.
    assert Case.objects.count() == 1
    filtered = InboundEvent.objects.filter(state=EventState.FILTERED)
    assert filtered.count() == 5 and set(filtered.values_list("noise_rule", flat=True)) == {"campaign"}
    assert InboundEvent.objects.filter(state=EventState.DONE).count() == 1


def test_what_a_post_says_can_raise_the_playbook_priority_but_never_lower_it(org):
    account = imported_account(org)
    _customer_post(account, "1", "7", "@acme you stole my money, you liars, a disgrace, I blame you entirely")
    _customer_post(account, "2", "8", "@acme what time does the Leeds store open on Sunday?")
    drain()
    angry = Case.objects.get(customer__identities__handle="7")
    calm = Case.objects.get(customer__identities__handle="8")
    assert angry.severity >= 3 and angry.priority < 3  # the default playbook alone says normal (3)
    # A calm question scores low, but the playbook's normal is the floor.
    assert calm.severity == 0 and calm.priority == 3


def test_playbook_tags_and_approval_reach_the_case(org):
    account = imported_account(org)
    _customer_post(account, "1", "7", "@acme I will sue you, my lawyer is preparing a lawsuit over this")
    drain()
    case = Case.objects.get(customer__identities__handle="7")
    assert case.department.slug == "legal"
    assert case.tags == ["legal-risk"] and case.requires_approval


def test_first_response_due_counts_business_hours_only(org):
    from hubbub.playbook.actions import do_publish_playbook

    do_publish_playbook(
        org,
        "business_hours:\n"
        "  timezone: Europe/London\n"
        '  hours: {mon: "09:00-17:00", tue: "09:00-17:00", wed: "09:00-17:00", thu: "09:00-17:00",\n'
        '          fri: "09:00-17:00"}\n'
        "default: {department: customer-service, priority: normal, first_response_minutes: 60}\n",
    )
    account = imported_account(org)
    # Saturday 4 November 2017, 10:00 UTC: the clock starts on Monday at 09:00 London time (GMT).
    row = {
        "tweet_id": "1",
        "author_id": "7",
        "inbound": "True",
        "created_at": "2017-11-04T10:00:00Z",
        "text": "where is my parcel?",
        "response_tweet_id": "",
        "in_response_to_tweet_id": "",
    }
    do_store_events(account, [RawPost("1", row)])
    drain()
    case = Case.objects.get()
    assert case.first_response_due_at.isoformat() == "2017-11-06T10:00:00+00:00"
