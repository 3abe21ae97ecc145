"""What hubbub understands of one post: the shipped classifier's reading, overridden task by task
by the organisation's trained models where it has them. Pure code, no database.

Every prediction keeps a confidence. The routing confidence is the confidence of what the playbook
routes on (the main intent, or the trained complaint model's verdict when that decided it); a post
below the triage threshold is shown to a person before it is routed.
"""

from __future__ import annotations

from dataclasses import dataclass

from hubbub.lib.classify import LABELS, Classification
from hubbub.lib.textmodel import Prediction

SENTIMENTS = ("negative", "neutral", "positive")
SEVERITIES = range(5)
# When several labels hold, the main intent (what a playbook routes on) is the first of these.
INTENT_PRECEDENCE = ("legal_threat", "complaint", "sales_lead", "question", "praise")
_COMPLAINT_INTENTS = frozenset(("complaint", "legal_threat"))


@dataclass(slots=True)  # not frozen, for speed, like Post: one per post, never changed
class Understanding:
    intent: str
    intent_confidence: float
    labels: dict[str, float]  # label -> confidence, for every label of LABELS that holds
    sentiment: str
    sentiment_score: float  # -1..1, the intensity
    sentiment_confidence: float
    severity: int  # 0..4
    severity_confidence: float
    language: str
    language_confidence: float
    private_data: tuple[str, ...]
    models: dict[str, int]  # task -> version of the trained model that answered it

    @property
    def routing_confidence(self) -> float:
        return self.intent_confidence

    def needs_triage(self, threshold: float) -> bool:
        return self.routing_confidence < threshold

    def as_json(self) -> dict:
        """What a Message keeps of it (a JSON object)."""
        return {
            "intent": self.intent,
            "intent_confidence": round(self.intent_confidence, 3),
            "labels": {label: round(conf, 3) for label, conf in self.labels.items()},
            "sentiment": self.sentiment,
            "sentiment_score": round(self.sentiment_score, 3),
            "sentiment_confidence": round(self.sentiment_confidence, 3),
            "severity": self.severity,
            "severity_confidence": round(self.severity_confidence, 3),
            "language": self.language,
            "language_confidence": round(self.language_confidence, 3),
            "private_data": list(self.private_data),
            "models": self.models,
        }


def main_intent(labels: dict[str, float] | list[str] | tuple[str, ...] | set[str]) -> str:
    """The routing intent of a set of labels: the first of INTENT_PRECEDENCE present, else "other"."""
    return next((intent for intent in INTENT_PRECEDENCE if intent in labels), "other")


def combine(
    c: Classification,
    severity: int,
    *,
    complaint: Prediction | None = None,
    sentiment: Prediction | None = None,
    severity_model: Prediction | None = None,
    models: dict[str, int] | None = None,
) -> Understanding:
    """One post's understanding: classify() and the default severity, with each trained model's
    prediction (when given) taking the place of the default answer for its task."""
    labels = dict(c.labels)
    intent, intent_conf = c.intent, c.intent_confidence
    if complaint is not None:
        # The trained model is the better judge of complaint or not: its doubt is the routing doubt.
        if complaint.label == "1":
            labels["complaint"] = complaint.confidence
            if intent != "legal_threat":
                intent, intent_conf = "complaint", complaint.confidence
        else:
            labels.pop("complaint", None)
            if intent == "complaint":
                intent = main_intent(labels)
                intent_conf = labels.get(intent, complaint.confidence)
    sentiment_label, score, s_conf = c.sentiment, c.sentiment_score, c.sentiment_confidence
    if sentiment is not None and sentiment.label in SENTIMENTS:
        s_conf = sentiment.confidence
        if sentiment.label != sentiment_label:
            sentiment_label = sentiment.label
            # the lexicon's intensity has the wrong sign: use the model's confidence as the intensity
            score = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}[sentiment.label] * sentiment.confidence
    sev, sev_conf = severity, c.intent_confidence
    if complaint is not None:
        # a complaint is at least severity 1, anything else is 0
        if complaint.label == "1":
            sev = max(sev, 1)
        elif intent != "legal_threat":
            sev = 0
        sev_conf = complaint.confidence
    if severity_model is not None and severity_model.label.isdigit() and int(severity_model.label) in SEVERITIES:
        sev, sev_conf = int(severity_model.label), severity_model.confidence
    return Understanding(
        intent=intent,
        intent_confidence=round(intent_conf, 3),
        labels={label: labels[label] for label in LABELS if label in labels},
        sentiment=sentiment_label,
        sentiment_score=score,
        sentiment_confidence=s_conf,
        severity=sev,
        severity_confidence=sev_conf,
        language=c.language,
        language_confidence=c.language_confidence,
        private_data=c.private_data,
        models=models or {},
    )


# How the case page names the labels and severity levels.
LABEL_NAMES = {
    "complaint": "Complaint",
    "question": "Question / support",
    "praise": "Praise",
    "sales_lead": "Purchase intent",
    "legal_threat": "Legal risk",
    "feature_request": "Feature request / feedback",
    "outage": "Outage / incident",
    "employee": "Employee matter",
    "press": "Press / PR",
    "spam": "Spam / irrelevant",
}
SEVERITY_NAMES = ("none", "no explicit reproach", "disapproval", "accusation", "blame")
