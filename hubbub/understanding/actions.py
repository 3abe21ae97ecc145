"""Training, evaluating and choosing an organisation's classifiers; predicting with the chosen one.

A task (complaint, sentiment, severity) is answered by the organisation's active TrainedModel when
it has one, else by the shipped default built on hubbub.lib.classify. A new model is trained on 80 %
of the labelled posts, compared with the model in use on the other 20 %, stored as a candidate and
made active only when it is at least as good (or when forced). A rollback returns to the version
that was active before, or to the shipped default.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max

from hubbub.accounts.models import Organization
from hubbub.governance.actions import do_audit
from hubbub.lib import encoder
from hubbub.lib.classify import Classification, classify
from hubbub.lib.metrics import Report, evaluate
from hubbub.lib.severity import severity
from hubbub.lib.textmodel import Prediction, TextModel, TextModelError
from hubbub.understanding.combine import Understanding, combine
from hubbub.understanding.models import TASK_LABELS, LabelCorrection, ModelState, Task, TrainedModel

log = logging.getLogger(__name__)

MIN_EXAMPLES = 20
MIN_PER_CLASS = 2
HELD_OUT = 0.2
_BATCH = 2000  # posts per prediction batch: bounds the memory of the feature matrices


class UnderstandingError(ValueError):
    """Data or a request that cannot be evaluated or trained on; the message says why."""


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledPosts:
    texts: list[str]
    labels: list[str]
    skipped: int = 0  # rows with empty text


def normalise_label(task: str, raw: str) -> str:
    label = raw.strip()
    return label.lower() if task == Task.SENTIMENT else label


def check_task(task: str) -> tuple[str, ...]:
    if task not in TASK_LABELS:
        raise UnderstandingError(f"unknown task {task!r}: use one of {', '.join(TASK_LABELS)}")
    return TASK_LABELS[task]


def read_labelled_csv(path: Path, task: str, label_column: str = "") -> LabelledPosts:
    """Posts and labels from a CSV with a `text` column and a label column.

    The label column is `label_column` if given, else `label`, else the one named after the task.
    """
    allowed = check_task(task)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames
            if not columns:
                raise UnderstandingError(f"{path}: the file is empty")
            if "text" not in columns:
                raise UnderstandingError(f"{path}: no 'text' column (columns: {', '.join(columns)})")
            column = label_column or ("label" if "label" in columns else task)
            if column not in columns:
                raise UnderstandingError(
                    f"{path}: no {column!r} label column (columns: {', '.join(columns)}); name it with --label-column"
                )
            texts: list[str] = []
            labels: list[str] = []
            skipped = 0
            for row in reader:
                text = (row.get("text") or "").strip()
                if not text:
                    skipped += 1
                    continue
                label = normalise_label(task, row.get(column) or "")
                if label not in allowed:
                    raise UnderstandingError(
                        f"{path}, line {reader.line_num}: label {label!r} is not one of {', '.join(allowed)}"
                    )
                texts.append(text)
                labels.append(label)
    except FileNotFoundError as exc:
        raise UnderstandingError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise UnderstandingError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (OSError, csv.Error) as exc:
        raise UnderstandingError(f"{path}: {exc}") from exc
    if not texts:
        raise UnderstandingError(f"{path}: no rows with text")
    return LabelledPosts(texts, labels, skipped)


def corrections(organization: Organization, task: str) -> LabelledPosts:
    """The organisation's label corrections for a task; a text corrected twice counts once, as last labelled."""
    allowed = check_task(task)
    latest: dict[str, str] = {}
    rows = LabelCorrection.objects.filter(organization=organization, task=task).order_by("created_at", "id")
    for text, label in rows.values_list("text", "label").iterator():
        if text.strip() and label in allowed:
            latest[text] = label
    return LabelledPosts(list(latest), list(latest.values()))


def check_trainable(task: str, labels: Sequence[str], per_class: int = MIN_PER_CLASS) -> None:
    counts = Counter(labels)
    if len(labels) < MIN_EXAMPLES:
        raise UnderstandingError(f"{len(labels)} labelled posts for {task}: training needs at least {MIN_EXAMPLES}")
    if len(counts) < 2:
        raise UnderstandingError(f"every post is labelled {labels[0]!r}: training needs at least two labels")
    few = sorted(label for label, n in counts.items() if n < per_class)
    if few:
        raise UnderstandingError(f"labels {', '.join(few)} have fewer than {per_class} posts each: label more")


def split_key(text: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by the post's text and the seed."""
    digest = hashlib.blake2b(f"{seed}\x00{text}".encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def stratified_split(
    texts: Sequence[str], labels: Sequence[str], fraction: float = HELD_OUT, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices for training and held-out, each label split in the same proportion, the same every run.

    Within each label the posts with the lowest split_key are held out. A post's key depends on its
    text, not on its place in the data, so when a model is retrained on more posts the posts held
    out before stay held out (but for a few at the edge): the model in use is judged on posts it
    did not learn from, and a new model is not refused only because the old one has seen the test.
    """
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    train: list[int] = []
    held: list[int] = []
    for label in sorted(by_label):
        indices = sorted(by_label[label], key=lambda i: (split_key(texts[i], seed), i))
        # at least one of each label on both sides, so both models are judged on every label
        n_held = min(len(indices) - 1, max(1, round(len(indices) * fraction)))
        held.extend(indices[:n_held])
        train.extend(indices[n_held:])
    return sorted(train), sorted(held)


# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------


def new_model(task: str) -> TextModel:
    """An untrained model for a task: grading severity uses severity's reproach cues as features too,
    and every task the pretrained encoder where it is switched on and installed."""
    return TextModel(reproach=task == Task.SEVERITY, encoder=encoder_in_use() is None)


def encoder_in_use() -> str | None:
    """None when new models train with the pretrained encoder; otherwise why not."""
    if not settings.HUBBUB_TEXT_ENCODER:
        return "switched off (HUBBUB_TEXT_ENCODER=0)"
    try:
        encoder.load()
    except encoder.EncoderUnavailable as exc:
        return str(exc)
    return None


def default_predict(
    task: str, texts: Sequence[str], classifications: Sequence[Classification] | None = None
) -> list[Prediction]:
    """The shipped default for a task: rules on classify() output."""
    check_task(task)
    out: list[Prediction] = []
    for i, text in enumerate(texts):
        c = classifications[i] if classifications is not None else classify(text)
        if task == Task.COMPLAINT:
            label = "1" if c.intent in ("complaint", "legal_threat") else "0"
            out.append(Prediction(label, c.intent_confidence))
        elif task == Task.SENTIMENT:
            out.append(Prediction(c.sentiment, c.sentiment_confidence))
        else:
            out.append(Prediction(str(severity(text, c)), c.intent_confidence))
    return out


# (organization id, task) -> (version, model). A version's bytes never change, so a cached
# model is good until another version becomes active. None: the version cannot be read.
_loaded: dict[tuple[int, str], tuple[int, TextModel | None]] = {}


def _load(organization_id: int, task: str, trained_id: int, version: int) -> TextModel | None:
    key = (organization_id, task)
    cached = _loaded.get(key)
    if cached is None or cached[0] != version:
        data = TrainedModel.objects.values_list("model", flat=True).get(pk=trained_id)
        try:
            model: TextModel | None = TextModel.from_bytes(bytes(data))
        except TextModelError as exc:
            # Made with other features (an older hubbub) or damaged: the default answers until the
            # organisation trains again, rather than every post of every batch failing.
            log.warning("organization %s: %s model version %s unusable (%s)", organization_id, task, version, exc)
            model = None
        cached = (version, model)
        _loaded[key] = cached
    return cached[1]


def active_model(organization_id: int, task: str) -> tuple[int | None, TextModel | None]:
    """The organisation's active trained model for a task and its version, or (None, None)."""
    row = (
        TrainedModel.objects.filter(organization_id=organization_id, task=task, state=ModelState.ACTIVE)
        .values_list("id", "version")
        .first()
    )
    if row is None:
        return None, None
    trained_id, version = row
    model = _load(organization_id, task, trained_id, version)
    return (version, model) if model is not None else (None, None)


def active_models(organization_id: int) -> dict[str, tuple[int, TextModel]]:
    """Every task's usable active trained model of the organisation, by task, in one query.

    Models are cached per process by version: a promotion or a rollback is seen by the next call.
    """
    rows = TrainedModel.objects.filter(organization_id=organization_id, state=ModelState.ACTIVE).values_list(
        "task", "id", "version"
    )
    found: dict[str, tuple[int, TextModel]] = {}
    for task, trained_id, version in rows:
        model = _load(organization_id, task, trained_id, version)
        if model is not None:
            found[task] = (version, model)
    return found


def predict_with(
    model: TextModel | None,
    task: str,
    texts: Sequence[str],
    classifications: Sequence[Classification] | None = None,
    embeddings: np.ndarray | None = None,
) -> list[Prediction]:
    """Predictions of a trained model, or of the shipped default when model is None, in batches."""
    if model is None:
        return default_predict(task, texts, classifications)
    out: list[Prediction] = []
    for start in range(0, len(texts), _BATCH):
        end = start + _BATCH
        out.extend(
            model.predict(
                texts[start:end],
                classifications[start:end] if classifications else None,
                embeddings=None if embeddings is None else embeddings[start:end],
            )
        )
    return out


def encoder_models_active() -> bool:
    """Whether some organisation's active model uses the encoder (the pipeline then takes smaller batches)."""
    return TrainedModel.objects.filter(state=ModelState.ACTIVE, metrics__encoder=True).exists()


def _embeddings(models: Sequence[TextModel], texts: Sequence[str]) -> np.ndarray | None:
    """The encoder's reading of the posts, once for every model that uses it, or None."""
    if not any(model.encoder for model in models):
        return None
    try:
        return encoder.load().layer_means(texts)
    except encoder.EncoderUnavailable:
        return None  # each model then answers from its n-grams and says why


def understand(organization_id: int, texts: Sequence[str]) -> list[Understanding]:
    """What the pipeline calls once per batch: each post classified once, and each task answered by
    the organisation's active trained model where it has one (in batches), else by the default."""
    classifications = [classify(text) for text in texts]
    severities = [severity(text, c) for text, c in zip(texts, classifications, strict=True)]
    trained = active_models(organization_id) if texts else {}
    embeddings = _embeddings([model for _, model in trained.values()], texts)
    predicted: dict[str, list[Prediction]] = {
        task: predict_with(model, task, texts, classifications, embeddings) for task, (_, model) in trained.items()
    }
    versions = {task: version for task, (version, _) in trained.items()}
    none: list[None] = [None] * len(texts)
    return [
        combine(c, sev, complaint=comp, sentiment=sent, severity_model=sev_model, models=versions)
        for c, sev, comp, sent, sev_model in zip(
            classifications,
            severities,
            predicted.get(Task.COMPLAINT, none),
            predicted.get(Task.SENTIMENT, none),
            predicted.get(Task.SEVERITY, none),
            strict=True,
        )
    ]


def predict(
    organization_id: int, task: str, texts: Sequence[str], classifications: Sequence[Classification] | None = None
) -> list[Prediction]:
    """What the pipeline calls: the organisation's active model for the task, else the shipped default."""
    _, model = active_model(organization_id, task)
    return predict_with(model, task, texts, classifications)


def evaluate_model(
    model: TextModel | None,
    task: str,
    texts: Sequence[str],
    labels: Sequence[str],
    classifications: Sequence[Classification] | None = None,
    embeddings: np.ndarray | None = None,
) -> Report:
    predicted = [p.label for p in predict_with(model, task, texts, classifications, embeddings)]
    return evaluate(labels, predicted, TASK_LABELS[task])


# --------------------------------------------------------------------------------------------
# Training and choosing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingOutcome:
    trained: TrainedModel
    new: Report  # the new model on the held-out posts
    current: Report  # the model in use until now, on the same posts
    current_name: str  # "default" or "version N"
    promoted: bool


@transaction.atomic
def _store_candidate(
    organization: Organization, task: str, model: TextModel, training_size: int, metrics: dict, user=None
) -> TrainedModel:
    # Lock the organization so two trainers can't take the same version number.
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    latest = TrainedModel.objects.filter(organization=organization, task=task).aggregate(v=Max("version"))["v"] or 0
    trained = TrainedModel.objects.create(
        organization=organization,
        task=task,
        version=latest + 1,
        created_by=user,
        training_size=training_size,
        metrics=metrics,
        model=model.to_bytes(),
    )
    do_audit(organization, user, "model.trained", trained, task=task, version=trained.version, **metrics["summary"])
    return trained


def _summary(report: Report) -> dict:
    return {"macro_f1": round(report.macro_f1, 4), "accuracy": round(report.accuracy, 4)}


def do_train_model(
    organization: Organization,
    task: str,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    user=None,
    force: bool = False,
    seed: int = 0,
    source: str = "",
) -> TrainingOutcome:
    """Train on 80 %, compare with the model in use on the other 20 %, store, promote if not worse."""
    allowed = check_task(task)
    outside = sorted({label for label in labels if label not in allowed})
    if outside:
        raise UnderstandingError(f"labels {', '.join(outside)} are not {task} labels ({', '.join(allowed)})")
    check_trainable(task, labels)
    train_idx, held_idx = stratified_split(texts, labels, HELD_OUT, seed)
    model = new_model(task).fit([texts[i] for i in train_idx], [labels[i] for i in train_idx])

    held_texts = [texts[i] for i in held_idx]
    held_labels = [labels[i] for i in held_idx]
    classifications = [classify(t) for t in held_texts]
    new = evaluate_model(model, task, held_texts, held_labels, classifications)
    current_version, current_model = active_model(organization.pk, task)
    current = evaluate_model(current_model, task, held_texts, held_labels, classifications)
    current_name = f"version {current_version}" if current_version else "default"

    metrics = {
        "summary": _summary(new),
        "held_out": {"size": len(held_idx), "seed": seed, **new.as_dict()},
        "compared_with": {"model": current_name, **current.as_dict()},
        "source": source,
        "encoder": model.encoder,
    }
    trained = _store_candidate(organization, task, model, len(train_idx), metrics, user)
    promoted = force or new.macro_f1 >= current.macro_f1
    if promoted:
        trained = do_promote_model(trained, user)
    return TrainingOutcome(trained, new, current, current_name, promoted)


@transaction.atomic
def do_promote_model(trained: TrainedModel, user=None) -> TrainedModel:
    """Make a version the active one; the one it replaces is retired (and can be rolled back to)."""
    Organization.objects.select_for_update().filter(pk=trained.organization_id).first()
    TrainedModel.objects.filter(
        organization_id=trained.organization_id, task=trained.task, state=ModelState.ACTIVE
    ).exclude(pk=trained.pk).update(state=ModelState.RETIRED)
    TrainedModel.objects.filter(pk=trained.pk).update(state=ModelState.ACTIVE)
    trained.state = ModelState.ACTIVE
    do_audit(trained.organization, user, "model.promoted", trained, task=trained.task, version=trained.version)
    return trained


@transaction.atomic
def do_rollback_model(organization: Organization, task: str, user=None) -> TrainedModel | None:
    """Re-activate the version active before the current one; None means back to the shipped default.

    The version rolled back from becomes a candidate again, so a later rollback never returns to it.
    """
    check_task(task)
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    current = TrainedModel.objects.filter(organization=organization, task=task, state=ModelState.ACTIVE).first()
    if current is None:
        raise UnderstandingError(f"no trained {task} model is active: the shipped default is already in use")
    TrainedModel.objects.filter(pk=current.pk).update(state=ModelState.CANDIDATE)
    previous = (
        TrainedModel.objects.filter(
            organization=organization, task=task, state=ModelState.RETIRED, version__lt=current.version
        )
        .order_by("-version")
        .first()
    )
    if previous is not None:
        TrainedModel.objects.filter(pk=previous.pk).update(state=ModelState.ACTIVE)
        previous.state = ModelState.ACTIVE
    do_audit(
        organization,
        user,
        "model.rolled_back",
        current,
        task=task,
        from_version=current.version,
        to_version=previous.version if previous else None,
    )
    return previous


def cross_validate(task: str, texts: Sequence[str], labels: Sequence[str], k: int = 5, seed: int = 0) -> list[float]:
    """Macro-F1 of the trainable model on each of k stratified folds. Trains nothing that is kept."""
    from sklearn.model_selection import StratifiedKFold

    check_task(task)
    if k < 2:
        raise UnderstandingError("cross-validation needs at least 2 folds")
    check_trainable(task, labels, per_class=max(MIN_PER_CLASS, k))
    scores: list[float] = []
    # The encoder is the slow part: each post is encoded once, not once per fold it is in.
    embeddings = encoder.load().layer_means(texts) if new_model(task).encoder else None
    for train_idx, test_idx in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(texts, labels):
        model = new_model(task).fit(
            [texts[i] for i in train_idx],
            [labels[i] for i in train_idx],
            embeddings=None if embeddings is None else embeddings[train_idx],
        )
        report = evaluate_model(
            model,
            task,
            [texts[i] for i in test_idx],
            [labels[i] for i in test_idx],
            embeddings=None if embeddings is None else embeddings[test_idx],
        )
        scores.append(report.macro_f1)
    return scores


def describe_scores(scores: Sequence[float]) -> str:
    spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return f"{statistics.mean(scores):.4f} ± {spread:.4f}"
