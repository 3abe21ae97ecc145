"""Listening queries in the database: validation, audit, the workers' matcher and network rules."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from hubbub.accounts.actions import do_create_organization
from hubbub.connectors.base import Post
from hubbub.governance.models import AuditEvent
from hubbub.lib.query import QuerySyntaxError
from hubbub.listening import actions
from hubbub.listening.actions import ListeningError, do_delete_query, do_save_query, do_set_enabled, matcher_for
from hubbub.listening.models import ListeningQuery


def post(text: str, author: str = "someone", url: str = "", language: str = "") -> Post:
    return Post(external_id="1", author_handle=author, text=text, created_at=timezone.now(), url=url, language=language)


@pytest.fixture
def org(db):
    return do_create_organization("Acme", "acme")


@pytest.fixture
def other_org(db):
    return do_create_organization("Globex", "globex")


@pytest.fixture
def user(db):
    return User.objects.create_user("sam")


def save(org, user, name, query, **kwargs) -> ListeningQuery:
    return do_save_query(org, user, name=name, query=query, **kwargs)


def test_a_bad_query_is_refused_with_its_position(org, user):
    with pytest.raises(QuerySyntaxError) as caught:
        save(org, user, "Refunds", "acme AND (refund")
    assert caught.value.position == 9 and "never closed" in caught.value.message
    assert not ListeningQuery.objects.exists()
    assert not AuditEvent.objects.exists()
    # The model refuses it too, whoever saves it.
    with pytest.raises(QuerySyntaxError):
        ListeningQuery.objects.create(organization=org, name="x", query="-spam")


def test_names_are_unique_per_organization(org, other_org, user):
    save(org, user, "Refunds", "acme refund")
    with pytest.raises(ListeningError):
        save(org, user, " Refunds ", "acme late")
    save(other_org, user, "Refunds", "globex refund")  # another organization may use the name
    with pytest.raises(ListeningError):
        save(org, user, "   ", "acme")


def test_a_department_of_another_organization_is_refused(org, other_org, user):
    with pytest.raises(ListeningError):
        save(org, user, "Refunds", "acme", department=other_org.departments.first())
    query = save(org, user, "Refunds", "acme", department=org.departments.get(slug="legal"))
    assert query.department.slug == "legal"


def test_saves_toggles_and_deletes_are_audited(org, user):
    query = save(org, user, "Refunds", "acme refund")
    save(org, user, "Refunds", "acme refund*", listening_query=query)
    do_set_enabled(query, user, False)
    do_delete_query(query, user)
    events = list(AuditEvent.objects.filter(organization=org).order_by("id"))
    assert [e.action for e in events] == ["listening.create", "listening.edit", "listening.disable", "listening.delete"]
    assert events[1].data == {
        "before": {"name": "Refunds", "query": "acme refund", "enabled": True},
        "after": {"name": "Refunds", "query": "acme refund*", "enabled": True},
    }
    assert events[3].data["query"] == "acme refund*"
    assert all(e.actor == user for e in events)
    assert not ListeningQuery.objects.exists()


def test_matcher_reads_fields_from_the_post(org, user):
    save(org, user, "Refunds", "acme refund*")
    save(org, user, "Help account", "author:acmehelp")
    save(org, user, "German", "acme lang:de")
    save(org, user, "Reddit", "acme channel:reddit")
    save(org, user, "Site", "url:acme.com/support")
    save(org, user, "Off", "acme", enabled=False)
    matcher = matcher_for(org.pk)
    assert matcher.match(post("ACME refunded me"), "mastodon") == ["Refunds"]
    assert matcher.match(post("hello", author="@AcmeHelp"), "mastodon") == ["Help account"]
    assert matcher.match(post("acme kaputt", language="de"), "mastodon") == ["German"]
    assert matcher.match(post("acme kaputt"), "mastodon", language="de-AT") == ["German"]
    assert matcher.match(post("acme"), "reddit") == ["Reddit"]
    assert matcher.match(post("x", url="https://www.acme.com/support/1"), "rss") == ["Site"]
    assert matcher.match(post("nothing here"), "mastodon") == []


def test_an_edit_reaches_a_cached_matcher_on_the_next_call(org, other_org, user):
    query = save(org, user, "Refunds", "acme refund")
    save(other_org, user, "Refunds", "globex")
    first = matcher_for(org.pk)
    assert first.match(post("acme refund"), "x") == ["Refunds"]
    assert matcher_for(org.pk) is first  # unchanged: the compiled set is reused

    save(org, user, "Refunds", "acme late", listening_query=query)
    assert matcher_for(org.pk).match(post("acme refund"), "x") == []
    assert matcher_for(org.pk).match(post("acme late"), "x") == ["Refunds"]

    save(org, user, "Renamed", "acme late", listening_query=query)
    assert matcher_for(org.pk).match(post("acme late"), "x") == ["Renamed"]

    do_set_enabled(query, user, False)
    assert matcher_for(org.pk).match(post("acme late"), "x") == []
    do_set_enabled(query, user, True)
    assert matcher_for(org.pk).match(post("acme late"), "x") == ["Renamed"]

    do_delete_query(query, user)
    assert len(matcher_for(org.pk)) == 0
    created = save(org, user, "New", "acme")
    assert matcher_for(org.pk).match(post("acme"), "x") == ["New"]
    # The other organization's queries never leak in.
    assert matcher_for(other_org.pk).match(post("acme globex"), "x") == ["Refunds"]
    assert created.pk


def test_an_edit_is_seen_even_when_another_machine_writes_an_older_updated_at(org, user):
    query = save(org, user, "Refunds", "acme refund")
    matcher_for(org.pk)
    earlier = query.updated_at - dt.timedelta(hours=1)
    # A web server whose clock is behind: updated_at goes backwards, the revision still moves.
    ListeningQuery.objects.filter(pk=query.pk).update(
        query="acme late", updated_at=earlier, revision=query.revision + 1
    )
    assert matcher_for(org.pk).match(post("acme late"), "x") == ["Refunds"]


def test_a_broken_query_in_the_database_is_skipped_not_fatal(org, user, caplog):
    good = save(org, user, "Good", "acme")
    bad = save(org, user, "Bad", "globex")
    ListeningQuery.objects.filter(pk=bad.pk).update(query="globex AND (", revision=bad.revision + 1)
    matcher = matcher_for(org.pk)
    assert matcher.match(post("acme globex"), "x") == ["Good"]
    assert "skipped" in caplog.text and "Bad" in caplog.text
    assert good.pk


def test_network_rules(org, user, caplog):
    caplog.set_level(logging.INFO, logger="hubbub.listening.actions")
    save(org, user, "Refunds", '(acme OR @acmehelp) (refund* OR "money back") -job')
    save(org, user, "Near", "acme NEAR/2 broken")
    save(org, user, "Mastodon only", "acme channel:mastodon")
    save(org, user, "Wildcard", "refu*")
    save(org, user, "Off", "acme", enabled=False)
    assert actions.network_rules(org.pk, "twitter") == {
        "Near": "acme broken",
        "Refunds": "(acme OR acmehelp) -job",
    }
    assert "'Wildcard' has no twitter rule" in caplog.text
    assert actions.network_rules(org.pk, "bluesky") == {"Near": "acme broken"}
    assert actions.network_rules(org.pk, "mastodon") == {"Mastodon only": "acme", "Near": "acme broken"}


def test_matcher_updates_in_place_or_rebuilds_with_the_same_result(caplog):
    matcher = actions.Matcher()
    rows = [(i, f"q{i}", f"word{i} acme", None) for i in range(1, 41)] + [(99, "bad", "acme AND (", None)]
    matcher.update(rows)  # 41 new queries: built in one go
    assert len(matcher) == 40 and "('bad') skipped" in caplog.text
    assert matcher.match(post("acme word7"), "x") == ["q7"]
    caplog.clear()
    # A few changes are applied one by one: an edit, a rename, a removal, a bad edit, an addition.
    rows[6] = (7, "q7", "word7 globex", None)
    rows[7] = (8, "renamed", "word8 acme", 3)
    del rows[8]
    rows[10] = (11, "q11", "(broken", None)
    rows.append((100, "new", "fresh", None))
    matcher.update(rows)
    assert matcher.match(post("acme word7"), "x") == []
    assert matcher.match(post("globex word7 word8 acme word9 word11 fresh"), "x") == ["new", "q7", "renamed"]
    assert "('q11') skipped" in caplog.text
    assert matcher.departments["renamed"] == 3 and "q9" not in matcher.departments
    fresh = actions.Matcher()
    fresh.update(rows)
    for text in ["acme word1 word8", "globex word7", "fresh", "word11 acme", "word9 acme"]:
        assert fresh.match(post(text), "x") == matcher.match(post(text), "x")
