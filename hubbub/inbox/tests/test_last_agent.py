"""Customer.last_agent: whose reply to the customer is the latest, kept by Message.save and filled
for replies stored before it by migration 0011."""

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from hubbub.accounts.actions import do_create_organization
from hubbub.connectors.models import Network, SocialAccount
from hubbub.inbox.models import Case, Customer, Direction, Message

BEFORE = [("inbox", "0010_escalation_by_playbook_rule")]
AFTER = [("inbox", "0011_customer_last_agent")]


@pytest.fixture
def case(db):
    org = do_create_organization("Acme", "acme")
    account = SocialAccount.objects.create(organization=org, network=Network.MASTODON, handle="@acme")
    customer = Customer.objects.create(organization=org)
    return Case.objects.create(organization=org, department=org.departments.first(), account=account, customer=customer)


def message(case: Case, minutes_ago: int, direction: str = Direction.OUTBOUND, author: User | None = None) -> Message:
    return Message.objects.create(
        case=case,
        account=case.account,
        direction=direction,
        author_user=author,
        text="hello",
        created_at=timezone.now() - dt.timedelta(minutes=minutes_ago),
    )


def last_agent(case: Case) -> tuple[int | None, dt.datetime | None]:
    return Customer.objects.filter(pk=case.customer_id).values_list("last_agent_id", "last_answered_at").get()


def test_the_latest_agent_reply_names_the_customers_agent(case):
    ada, bob = User.objects.create_user("ada"), User.objects.create_user("bob")
    assert last_agent(case) == (None, None)
    message(case, 30, author=ada)
    latest = message(case, 20, author=bob)
    assert last_agent(case) == (bob.pk, latest.created_at)
    # A reply recorded late, older than the one on record, changes nothing; nor do the customer's
    # own posts or the brand's posts written outside hubbub (no agent).
    message(case, 25, author=ada)
    message(case, 10, direction=Direction.INBOUND)
    message(case, 5)
    assert last_agent(case) == (bob.pk, latest.created_at)
    # Another of the customer's cases: still the customer's agent.
    other = Case.objects.create(
        organization=case.organization, department=case.department, account=case.account, customer=case.customer
    )
    newest = message(other, 1, author=ada)
    assert last_agent(case) == (ada.pk, newest.created_at)


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_in_the_agent_of_replies_stored_before_it():
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        apps = executor.loader.project_state(BEFORE).apps
        org = apps.get_model("accounts", "Organization").objects.create(name="Acme", slug="acme")
        department = apps.get_model("accounts", "Department").objects.create(organization=org, slug="cs", name="CS")
        account = apps.get_model("connectors", "SocialAccount").objects.create(
            organization=org, network="mastodon", handle="@acme"
        )
        users = apps.get_model("auth", "User")
        ada, bob = users.objects.create(username="ada"), users.objects.create(username="bob")
        customers = apps.get_model("inbox", "Customer")
        cases, messages = apps.get_model("inbox", "Case"), apps.get_model("inbox", "Message")
        answered, unanswered = customers.objects.create(organization=org), customers.objects.create(organization=org)
        now = timezone.now()
        for customer in (answered, unanswered):
            for minutes, author in ((30, ada), (20, bob), (10, None)):
                case = cases.objects.create(organization=org, department=department, account=account, customer=customer)
                messages.objects.create(
                    case=case,
                    account=account,
                    direction="out" if customer == answered else "in",
                    author_user=author if customer == answered else None,
                    text="hello",
                    created_at=now - dt.timedelta(minutes=minutes),
                )

        executor.loader.build_graph()
        executor.migrate(AFTER)

        after = executor.loader.project_state(AFTER).apps.get_model("inbox", "Customer")
        filled = dict(after.objects.values_list("pk", "last_agent_id"))
        assert filled == {answered.pk: bob.pk, unanswered.pk: None}
        assert after.objects.get(pk=answered.pk).last_answered_at == now - dt.timedelta(minutes=20)
    finally:
        # The tests that follow share this database: leave it at the latest schema, pass or fail.
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
