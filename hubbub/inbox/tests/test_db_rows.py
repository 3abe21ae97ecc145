"""The pipeline's plain-INSERT helpers (hubbub/db.py) must write what the ORM would have written."""

import datetime as dt

import pytest
from django.db import connection

from hubbub.accounts.actions import do_create_organization
from hubbub.connectors.models import SocialAccount
from hubbub.db import db_value, insert_objects, unsaved
from hubbub.inbox.models import Case, CaseStatus, Customer, Identity

pytestmark = pytest.mark.django_db


@pytest.fixture
def organization():
    return do_create_organization("Northwind Air", "northwind")


def test_an_unsaved_row_has_the_defaults_the_model_would_give_it():
    given = {"organization_id": 1, "department_id": 2, "account_id": 3, "status": CaseStatus.NEW, "priority": 2}
    built, reference = unsaved(Case, **given), Case(**given)
    for field in Case._meta.concrete_fields:
        if field.attname in ("last_message_at", "opened_at"):
            continue  # default=timezone.now: a few microseconds apart
        assert getattr(built, field.attname) == getattr(reference, field.attname), field.attname
    # A callable default is called for each row: two rows never share one list.
    other = unsaved(Case, **given)
    assert built.tags is not other.tags


def test_an_unknown_field_is_refused_as_the_model_would():
    with pytest.raises(TypeError, match="nonsense"):
        unsaved(Customer, organization_id=1, nonsense=1)


def test_rows_inserted_in_one_batch_get_their_ids_and_read_back_equal(organization):
    when = dt.datetime(2026, 3, 29, 0, 59, 59, 123456, tzinfo=dt.UTC)
    customer = unsaved(Customer, organization_id=organization.pk, display_name="Zoë <script>", created_at=when)
    identity = unsaved(
        Identity, organization_id=organization.pk, network="mastodon", handle="zoe@example.social", updated_at=when
    )
    identity.customer = customer
    insert_objects([customer])
    insert_objects([identity])
    assert customer.pk and identity.customer_id == customer.pk
    stored = Identity.objects.select_related("customer").get(pk=identity.pk)
    assert stored.customer.display_name == "Zoë <script>"
    assert stored.updated_at == when


def test_json_and_datetime_columns_of_a_case_read_back_as_the_orm_wrote_them(organization):
    account = SocialAccount.objects.create(organization=organization, network="mastodon", handle="brand")
    customer = unsaved(Customer, organization_id=organization.pk, display_name="c")
    insert_objects([customer])
    paris = dt.timezone(dt.timedelta(hours=1))
    values = dict(
        organization_id=organization.pk,
        department_id=organization.departments.first().pk,
        account_id=account.pk,
        customer_id=customer.pk,
        status=CaseStatus.NEW,
        priority=3,
        labels={"complaint": 0.91, 'ünïcode "quoted"': 0.5},
        tags=[],
        private_data=["email"],
        reply_templates=[{"name": "apology", "text": "Sorry </script>"}],
        opened_at=dt.datetime(2026, 3, 29, 1, 0, 0, 5, tzinfo=dt.UTC),
        last_message_at=dt.datetime(2026, 3, 29, 3, 0, tzinfo=paris),
        first_response_due_at=None,
    )
    built = unsaved(Case, **values)
    insert_objects([built])
    by_orm = Case.objects.create(**values)
    stored, reference = Case.objects.get(pk=built.pk), Case.objects.get(pk=by_orm.pk)
    for name in ("labels", "tags", "private_data", "reply_templates", "opened_at", "last_message_at"):
        assert getattr(stored, name) == getattr(reference, name) == values[name], name
    assert stored.first_response_due_at is None


def test_an_insert_that_refers_to_an_unsaved_row_is_refused(organization):
    customer = unsaved(Customer, organization_id=organization.pk, display_name="x")
    identity = unsaved(Identity, organization_id=organization.pk, network="mastodon", handle="x")
    identity.customer = customer
    with pytest.raises(ValueError, match="not saved yet"):
        insert_objects([identity])


def test_values_are_prepared_as_the_driver_takes_them():
    assert db_value([]) == "[]" and db_value({}) == "{}"
    assert db_value({"é": [1]}) == '{"é": [1]}'
    paris = dt.timezone(dt.timedelta(hours=1))
    moment = dt.datetime(2026, 1, 1, 13, 0, tzinfo=paris)
    # SQLite stores UTC text in Django's format; PostgreSQL's driver takes the aware datetime itself.
    expected = "2026-01-01 12:00:00" if connection.vendor == "sqlite" else moment
    assert db_value(moment) == expected
    # UTC datetimes (what timezone.now() gives) take a shorter path: the same text Django writes.
    for utc in (dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC), dt.datetime(2026, 3, 29, 1, 0, 0, 5, tzinfo=dt.UTC)):
        assert db_value(utc) == connection.ops.adapt_datetimefield_value(utc)


def test_among_finds_the_same_rows_as_in_for_hostile_and_many_values(organization):
    names = ["plain", "O'Brien", 'say "hi"', "]}[{", "Zoë 🙂", "1); DROP TABLE inbox_customer; --", "\\", ""]
    when = dt.datetime(2026, 3, 29, tzinfo=dt.UTC)
    rows = [unsaved(Customer, organization_id=organization.pk, display_name=name, created_at=when) for name in names]
    insert_objects(rows)
    for wanted in (names, names[1:4], ["nobody"], []):
        among = set(Customer.objects.filter(display_name__among=wanted).values_list("display_name", flat=True))
        assert among == set(Customer.objects.filter(display_name__in=wanted).values_list("display_name", flat=True))
        assert among == set(wanted) & set(names)
    # Integers, many more than SQLite's limit of parameters in one statement, in one parameter.
    ids = [row.pk for row in rows]
    assert set(Customer.objects.filter(pk__among=[*range(-40_000, 0), *ids]).values_list("pk", flat=True)) == set(ids)
    assert Customer.objects.filter(pk__among=ids[:2]).update(display_name="merged") == 2
    assert Customer.objects.filter(display_name="merged").count() == 2
