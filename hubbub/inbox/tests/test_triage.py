"""Understanding in the product: the pipeline's labels and models, the triage queue, agents' corrections."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from hubbub.accounts.models import Role
from hubbub.connectors.actions import do_store_events
from hubbub.connectors.base import RawPost
from hubbub.governance.models import AuditEvent
from hubbub.inbox.actions import CaseActionError, do_correct_labels
from hubbub.inbox.models import Case
from hubbub.inbox.tests.test_pipeline import imported_account
from hubbub.inbox.tests.test_views import HOSTILE, PASSWORD, make_member, make_org
from hubbub.understanding import actions as understanding
from hubbub.understanding.models import LabelCorrection, ModelState, TrainedModel
from hubbub.worker import Worker

PRAISE = "@acme thank you so much, your team was amazing today, best service ever"
VAGUE = "@acme hmm"


@pytest.fixture(autouse=True)
def no_cached_models():
    # Ids and versions repeat from one test database to the next; the cache must not.
    understanding._loaded.clear()
    yield
    understanding._loaded.clear()


@pytest.fixture
def org(db):
    return make_org("Acme", "acme")


@pytest.fixture
def account(org):
    return imported_account(org)


def post(account, tweet_id: str, author: str, text: str) -> None:
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


def case_of(author: str) -> Case:
    Worker(poll=False).drain()
    return Case.objects.select_related("department").get(customer__identities__handle=author)


# --- the pipeline -------------------------------------------------------------------------------


def test_pipeline_stores_labels_severity_and_confidences(account):
    post(account, "1", "7", "@acme your app is down again and you charged me twice, a disgrace")
    case = case_of("7")
    assert case.intent == "complaint" and {"complaint", "outage"} <= set(case.labels)
    assert 0 < case.labels["complaint"] <= 1 and case.severity >= 3 and case.severity_confidence > 0
    assert case.sentiment == "negative" and case.sentiment_confidence > 0
    assert not case.needs_triage
    message = case.messages.get()
    assert message.classification["severity"] == case.severity
    assert message.classification["labels"] == case.labels
    assert message.classification["models"] == {}


def test_unsure_posts_go_to_triage_instead_of_being_routed(account):
    post(account, "1", "7", VAGUE)
    post(account, "2", "8", PRAISE)
    vague, praise = case_of("7"), case_of("8")
    assert vague.needs_triage and vague.department.slug == "customer-service"
    assert vague.intent_confidence < 0.25
    assert not praise.needs_triage and praise.department.slug == "marketing"


def test_triage_threshold_is_a_setting(account, settings):
    settings.HUBBUB_TRIAGE_CONFIDENCE = 1.0  # nothing is sure enough
    post(account, "1", "8", PRAISE)
    praise = case_of("8")
    # A praise post would go to marketing; unsure, it waits in customer service's triage first.
    assert praise.needs_triage and praise.department.slug == "customer-service"


def test_confirming_labels_routes_the_case_by_the_playbook(account, settings):
    settings.HUBBUB_TRIAGE_CONFIDENCE = 1.0
    post(account, "1", "8", PRAISE)
    case = case_of("8")
    agent = make_member(account.organization, "carla")
    routed = do_correct_labels(case, agent, ["praise"], "positive", 0)
    case.refresh_from_db()
    assert routed and not case.needs_triage and case.department.slug == "marketing"
    assert case.labels == {"praise": 1.0} and case.intent_confidence == 1.0
    assert case.first_response_due_at is not None and case.playbook_rule
    examples = dict(LabelCorrection.objects.filter(message__case=case).values_list("task", "label"))
    assert examples == {"complaint": "0", "sentiment": "positive", "severity": "0"}
    assert LabelCorrection.objects.filter(text=PRAISE).count() == 3
    audit = AuditEvent.objects.get(action="case.labels_corrected")
    assert audit.data["after"] == {"labels": ["praise"], "sentiment": "positive", "severity": 0}


def test_correcting_a_routed_case_keeps_its_department(account):
    post(account, "1", "8", PRAISE)
    case = case_of("8")
    agent = make_member(account.organization, "carla", departments=("marketing",))
    assert do_correct_labels(case, agent, ["complaint", "employee"], "negative", 3) == []
    case.refresh_from_db()
    assert case.department.slug == "marketing" and case.intent == "complaint"
    assert case.sentiment == "negative" and case.sentiment_score < 0 and case.severity == 3


@pytest.mark.parametrize(
    ("labels", "sentiment", "severity"),
    [
        (["furious"], "negative", 2),
        ([HOSTILE], "negative", 2),
        (["complaint"], "angry", 2),
        (["complaint"], "", 2),
        (["complaint"], "negative", 5),
        (["complaint"], "negative", -1),
        (["complaint"], "negative", "x" * 10_000),
        (["complaint"], "negative", None),
    ],
)
def test_bad_labels_are_refused_and_change_nothing(account, labels, sentiment, severity):
    post(account, "1", "8", PRAISE)
    case = case_of("8")
    agent = make_member(account.organization, "carla", departments=("marketing",))
    with pytest.raises(CaseActionError):
        do_correct_labels(case, agent, labels, sentiment, severity)
    assert not LabelCorrection.objects.exists()
    assert Case.objects.get(pk=case.pk).labels == case.labels


def test_corrections_train_the_organisations_model(account):
    org = account.organization
    agent = make_member(org, "carla")
    texts = [f"@acme my order {i} never arrived, terrible" for i in range(12)]
    texts += [f"@acme thank you for the lovely gift number {i}" for i in range(12)]
    for i, text in enumerate(texts):
        post(account, str(i + 1), str(100 + i), text)
    Worker(poll=False).drain()
    for i, case in enumerate(Case.objects.order_by("pk")):
        complaint = i < 12
        do_correct_labels(
            case, agent, ["complaint"] if complaint else ["praise"], "negative" if complaint else "positive", 2
        )
    posts = understanding.corrections(org, "complaint")
    assert sorted(posts.labels) == ["0"] * 12 + ["1"] * 12
    outcome = understanding.do_train_model(org, "complaint", posts.texts, posts.labels, force=True)
    assert outcome.promoted

    # The pipeline now answers "complaint" with the organisation's model, and says which version.
    post(account, "999", "999", "@acme my order never arrived, terrible")
    message = case_of("999").messages.get()
    assert message.classification["models"] == {"complaint": outcome.trained.version}


def test_a_newly_promoted_model_replaces_the_cached_one(account):
    org = account.organization
    texts = [f"@acme parcel {i} lost again, awful" for i in range(15)] + [
        f"@acme lovely {i}, thanks" for i in range(15)
    ]
    labels = ["1"] * 15 + ["0"] * 15
    first = understanding.do_train_model(org, "complaint", texts, labels, force=True).trained
    post(account, "1", "7", "@acme parcel lost")
    assert case_of("7").messages.get().classification["models"] == {"complaint": first.version}
    second = understanding.do_train_model(org, "complaint", texts[::-1], labels[::-1], force=True).trained
    post(account, "2", "8", "@acme parcel lost")
    assert case_of("8").messages.get().classification["models"] == {"complaint": second.version}
    understanding.do_rollback_model(org, "complaint")
    post(account, "3", "9", "@acme parcel lost")
    assert case_of("9").messages.get().classification["models"] == {"complaint": first.version}


def test_an_unreadable_model_falls_back_to_the_default(account, caplog):
    TrainedModel.objects.create(
        organization=account.organization,
        task="complaint",
        version=1,
        state=ModelState.ACTIVE,
        training_size=20,
        model=b"PK\x03\x04 not a model at all",
    )
    post(account, "1", "7", "@acme my parcel never arrived, terrible")
    case = case_of("7")
    assert case.intent == "complaint" and case.messages.get().classification["models"] == {}
    assert "unusable" in caplog.text


# --- the pages ----------------------------------------------------------------------------------


@pytest.fixture
def triaged(account, settings):
    settings.HUBBUB_TRIAGE_CONFIDENCE = 1.0
    post(account, "1", "8", PRAISE)
    return case_of("8")


def login(client, user) -> None:
    client.force_login(user)


def test_triage_queue_is_for_its_department_and_supervisors(client, account, triaged):
    org = account.organization
    cs = make_member(org, "cs")
    legal = make_member(org, "legal", departments=("legal",))
    supervisor = make_member(org, "sup", role=Role.SUPERVISOR, departments=("legal",))

    login(client, cs)
    page = client.get(reverse("inbox:queue") + "?triage=1")
    assert page.status_code == 200 and reverse("inbox:case", args=[triaged.pk]) in page.text
    # It stays in the department's own queue too, marked.
    queue = client.get(reverse("inbox:queue")).text
    assert reverse("inbox:case", args=[triaged.pk]) in queue and 'class="badge triage"' in queue

    login(client, legal)
    assert client.get(reverse("inbox:queue") + "?triage=1").status_code == 404
    assert "?triage=1" not in client.get(reverse("inbox:queue")).text
    assert client.get(reverse("inbox:case", args=[triaged.pk])).status_code == 404

    login(client, supervisor)
    assert reverse("inbox:case", args=[triaged.pk]) in client.get(reverse("inbox:queue") + "?triage=1").text
    assert client.get(reverse("inbox:case", args=[triaged.pk])).status_code == 200


def test_case_page_shows_labels_with_confidence_and_the_form(client, account):
    post(account, "1", "8", PRAISE)
    case = case_of("8")
    login(client, make_member(account.organization, "mk", departments=("marketing",)))
    page = client.get(reverse("inbox:case", args=[case.pk])).text
    assert 'id="understanding"' in page and 'hx-post="' + reverse("inbox:labels", args=[case.pk]) in page
    assert "praise" in page and "%" in page and "Severity" in page
    assert 'value="spam"' in page


def test_htmx_correction_returns_the_panel(client, account):
    post(account, "1", "8", PRAISE)
    case = case_of("8")
    login(client, make_member(account.organization, "mk", departments=("marketing",)))
    url = reverse("inbox:labels", args=[case.pk])
    response = client.post(
        url, {"labels": ["praise", "feature_request"], "sentiment": "positive", "severity": "0"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and response.text.startswith('<section id="understanding"')
    assert "Labels saved" in response.text
    assert LabelCorrection.objects.count() == 3

    hostile = client.post(url, {"labels": [HOSTILE], "sentiment": "positive", "severity": "0"}, HTTP_HX_REQUEST="true")
    assert hostile.status_code == 200 and "<script>" not in hostile.text and "&lt;script&gt;" in hostile.text
    assert LabelCorrection.objects.count() == 3


def test_triage_confirmation_that_leaves_the_members_departments_goes_back_to_the_queue(client, account, triaged):
    login(client, make_member(account.organization, "cs"))
    response = client.post(
        reverse("inbox:labels", args=[triaged.pk]),
        {"labels": ["praise"], "sentiment": "positive", "severity": "0"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 204 and response["HX-Redirect"] == reverse("inbox:queue")
    triaged.refresh_from_db()
    assert triaged.department.slug == "marketing" and not triaged.needs_triage

    plain = client.post(reverse("inbox:labels", args=[triaged.pk]), {"labels": ["praise"], "sentiment": "positive"})
    assert plain.status_code == 404  # now marketing's case


def test_members_of_other_departments_and_organizations_cannot_label(client, account):
    post(account, "1", "7", "@acme my parcel never arrived, terrible")
    case = case_of("7")
    other = make_org("Other", "other")
    outsiders = [
        make_member(account.organization, "legal", departments=("legal",)),
        User.objects.create_user("nobody", password=PASSWORD),
    ]
    outsiders.append(make_member(other, "stranger", role=Role.ADMIN))
    for user in outsiders:
        login(client, user)
        response = client.post(
            reverse("inbox:labels", args=[case.pk]), {"labels": ["spam"], "sentiment": "neutral", "severity": "0"}
        )
        assert response.status_code in (403, 404)
    assert not LabelCorrection.objects.exists() and not AuditEvent.objects.filter(action="case.labels_corrected")
    login(client, outsiders[0])
    assert client.get(reverse("inbox:labels", args=[case.pk])).status_code == 405


def test_demo_shows_the_triage_queue_and_the_labels(db):
    from hubbub.demo import load_demo

    load_demo()
    Worker(poll=False).drain()
    triage = Case.objects.filter(needs_triage=True)
    assert triage.exists() and set(triage.values_list("department__slug", flat=True)) == {"customer-service"}
    labels = {label for found in Case.objects.values_list("labels", flat=True) for label in found}
    assert {"feature_request", "press", "employee", "legal_threat"} <= labels
