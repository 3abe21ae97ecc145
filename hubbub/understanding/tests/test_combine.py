"""Combining the shipped classifier with trained models: pure code, no database."""

from __future__ import annotations

import pytest

from hubbub.lib.classify import LABELS, classify
from hubbub.lib.severity import severity
from hubbub.lib.textmodel import Prediction
from hubbub.understanding.combine import LABEL_NAMES, combine, main_intent

ANGRY = "@acme you charged me twice and nobody answers, this is a disgrace"
HAPPY = "@acme thank you, the new app is brilliant"


def default(text: str):
    c = classify(text)
    return combine(c, severity(text, c))


def test_without_models_the_default_answers_every_task():
    u = default(ANGRY)
    c = classify(ANGRY)
    assert (u.intent, u.intent_confidence, u.sentiment) == (c.intent, c.intent_confidence, c.sentiment)
    assert u.intent == "complaint" and u.labels["complaint"] == c.intent_confidence
    assert u.severity == severity(ANGRY) >= 3
    assert u.models == {}
    assert set(u.as_json()) >= {"intent", "labels", "sentiment", "severity", "severity_confidence", "private_data"}


def test_a_trained_complaint_model_decides_complaint_or_not():
    c = classify(HAPPY)
    u = combine(c, 0, complaint=Prediction("1", 0.8), models={"complaint": 3})
    assert (u.intent, u.intent_confidence, u.labels["complaint"]) == ("complaint", 0.8, 0.8)
    assert u.severity >= 1 and u.severity_confidence == 0.8
    assert u.models == {"complaint": 3}

    c = classify("@acme my order is late, how do I track it?")
    assert c.intent == "complaint"
    u = combine(c, 1, complaint=Prediction("0", 0.7))
    assert "complaint" not in u.labels and u.intent != "complaint" and u.severity == 0


def test_a_legal_threat_stays_a_legal_threat():
    text = "@acme I am calling my lawyer, see you in court"
    c = classify(text)
    assert c.intent == "legal_threat"
    assert combine(c, 4, complaint=Prediction("1", 0.6)).intent == "legal_threat"


def test_a_trained_sentiment_model_flips_the_sign_of_the_intensity():
    c = classify(HAPPY)
    assert c.sentiment == "positive" and c.sentiment_score > 0
    u = combine(c, 0, sentiment=Prediction("negative", 0.9))
    assert (u.sentiment, u.sentiment_confidence) == ("negative", 0.9) and u.sentiment_score < 0
    assert combine(c, 0, sentiment=Prediction("positive", 0.4)).sentiment_score == c.sentiment_score


def test_severity_model_and_bad_predictions():
    c = classify(ANGRY)
    assert combine(c, 2, severity_model=Prediction("4", 0.55)).severity == 4
    # a model that answers something outside the task's labels is ignored
    assert combine(c, 2, severity_model=Prediction("9", 0.9)).severity == 2
    assert combine(c, 2, sentiment=Prediction("furious", 0.9)).sentiment == c.sentiment


def test_triage_threshold():
    u = default("hmm")
    assert u.routing_confidence < 0.25
    assert u.needs_triage(0.25) and not u.needs_triage(0.0)
    assert not default("@acmebank how do I change the phone number on my account?").needs_triage(0.25)


@pytest.mark.parametrize(
    ("labels", "intent"),
    [
        (["praise", "complaint"], "complaint"),
        (["question", "legal_threat", "complaint"], "legal_threat"),
        (["outage", "spam"], "other"),
        ([], "other"),
        (["sales_lead", "question"], "sales_lead"),
    ],
)
def test_main_intent(labels, intent):
    assert main_intent(labels) == intent


def test_every_label_has_a_name():
    assert set(LABEL_NAMES) == set(LABELS)
