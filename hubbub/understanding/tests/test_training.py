"""evaluate and train end to end, with small made-up CSVs written to tmp_path.

The made-up task: posts whose sentiment is carried by invented words the shipped lexicon doesn't
know ("zorp" good, "blick" bad, "quen" neither), so a trained model beats the default.
"""

import csv
import io
import json
import random

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from hubbub.accounts.actions import do_create_organization
from hubbub.governance.models import AuditEvent
from hubbub.understanding import actions
from hubbub.understanding.actions import (
    UnderstandingError,
    active_model,
    do_rollback_model,
    do_train_model,
    predict,
    split_key,
    stratified_split,
    understand,
)
from hubbub.understanding.models import LabelCorrection, ModelState, TrainedModel

WORDS = {"positive": "zorp", "negative": "blick", "neutral": "quen"}
FILLER = ["the parcel", "my booking", "this update", "the router", "our bill", "your shop", "the app", "a flight"]


def made_up(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = list(WORDS)[i % 3]
        texts.append(f"@brand {rng.choice(FILLER)} was {WORDS[label]} {rng.choice(FILLER)} #{i}")
        labels.append(label)
    return texts, labels


def write_csv(path, texts, labels, label_column="label"):
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", label_column])
        writer.writerows(zip(texts, labels, strict=True))
    return path


@pytest.fixture(autouse=True)
def fresh_cache():
    # Rolled-back test transactions reuse ids, so a cached model could belong to another test.
    actions._loaded.clear()
    yield
    actions._loaded.clear()


@pytest.fixture
def org(db):
    return do_create_organization("Acme", "acme")


def evaluate_json(capsys, *args) -> dict:
    capsys.readouterr()
    call_command("evaluate", *args, "--json")
    return json.loads(capsys.readouterr().out)


# --- evaluate --------------------------------------------------------------------------------


def test_evaluate_prints_one_json_object_with_the_figures(org, tmp_path, capsys):
    path = write_csv(
        tmp_path / "s.csv",
        ["I love it, thanks!", "Broken again, awful", "  ", "Opening hours?"],
        ["positive", "negative", "neutral", "neutral"],
        "sentiment",
    )
    data = evaluate_json(capsys, "sentiment", str(path), "--label-column", "sentiment")
    assert {"accuracy", "macro_f1", "macro_recall", "per_class", "confusion"} <= set(data)
    assert data["model"] == "default" and data["posts"] == 3 and data["skipped"] == 1
    assert set(data["per_class"]) == {"negative", "neutral", "positive"}
    assert sum(map(sum, data["confusion"])) == 3


def test_evaluate_prints_a_readable_report(org, tmp_path, capsys):
    path = write_csv(tmp_path / "c.csv", ["my order never arrived, refund me now", "thanks for the help!"], ["1", "0"])
    call_command("evaluate", "complaint", str(path))
    out = capsys.readouterr().out
    for part in ("accuracy", "macro-F1", "macro recall", "precision", "confusion matrix"):
        assert part in out


def test_evaluate_refuses_bad_input_with_a_clear_message(org, tmp_path):
    cases = {
        "missing.csv": (None, "no such file"),
        "empty.csv": (b"", "empty"),
        "nolabel.csv": (b"text,other\nhello,1\n", "no 'complaint' label column"),
        "notext.csv": (b"body,label\nhello,1\n", "no 'text' column"),
        "latin1.csv": ("text,label\ncaf\u00e9 ok,1\n".encode("latin-1"), "not UTF-8"),
        "outside.csv": (b"text,label\nhello,1\nworld,yes\n", "line 3: label 'yes' is not one of 0, 1"),
        "onlyblank.csv": (b"text,label\n,1\n", "no rows with text"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(CommandError, match=message):
            call_command("evaluate", "complaint", str(path))
    good = write_csv(tmp_path / "good.csv", ["hello there"], ["0"])
    with pytest.raises(CommandError, match="no complaint model version 9"):
        call_command("evaluate", "complaint", str(good), "--model", "9")
    with pytest.raises(CommandError, match="use current, default or a version"):
        call_command("evaluate", "complaint", str(good), "--model", "best")


# --- train, promote, refuse, roll back --------------------------------------------------------


def test_train_promotes_a_better_model_and_evaluate_then_uses_it(org, tmp_path, capsys):
    texts, labels = made_up(90)
    path = write_csv(tmp_path / "train.csv", texts, labels)
    call_command("train", "sentiment", str(path), "--organization", "acme")
    out = capsys.readouterr().out
    assert "Version 1 is now active" in out and "current (default)" in out
    trained = TrainedModel.objects.get(organization=org, task="sentiment")
    assert (trained.version, trained.state, trained.training_size) == (1, ModelState.ACTIVE, 72)
    assert trained.metrics["held_out"]["size"] == 18
    assert trained.metrics["summary"]["macro_f1"] >= trained.metrics["compared_with"]["macro_f1"]

    test_texts, test_labels = made_up(30, seed=9)
    test = write_csv(tmp_path / "test.csv", test_texts, test_labels)
    current = evaluate_json(capsys, "sentiment", str(test))
    default = evaluate_json(capsys, "sentiment", str(test), "--model", "default")
    by_version = evaluate_json(capsys, "sentiment", str(test), "--model", "1")
    assert current["model"] == "acme sentiment version 1" and default["model"] == "default"
    assert current["macro_f1"] == by_version["macro_f1"] > default["macro_f1"]
    assert [p.label for p in predict(org.pk, "sentiment", ["the app was zorp", "the app was blick"])] == [
        "positive",
        "negative",
    ]
    assert AuditEvent.objects.filter(organization=org, action="model.promoted").count() == 1


def unlearnable(labels: list[str]) -> list[str]:
    """Posts whose training part says nothing about the labels, while the held-out part does.

    Which posts are held out depends on their split_key; these texts are chosen so that the ones
    meant for the held-out part have the lowest keys of their label. A model trained on them can't
    learn the labels, while one trained on made_up() knows the held-out answers.
    """
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    held = {i for indices in by_label.values() for i in indices[: round(len(indices) * 0.2)]}
    texts = []
    for i, label in enumerate(labels):
        for attempt in range(10_000):
            if i in held:
                text = f"@brand {WORDS[label]} {FILLER[i % len(FILLER)]} #{i}.{attempt}"
                if split_key(text) < 0.1:
                    break
            else:
                text = f"@brand {FILLER[i % len(FILLER)]} #{i}.{attempt}"
                if split_key(text) > 0.5:
                    break
        texts.append(text)
    assert set(stratified_split(texts, labels)[1]) == held
    return texts


def test_a_worse_model_stays_a_candidate_unless_forced(org):
    texts, labels = made_up(90)
    do_train_model(org, "sentiment", texts, labels)
    outcome = do_train_model(org, "sentiment", unlearnable(labels), labels)
    assert not outcome.promoted and outcome.new.macro_f1 < outcome.current.macro_f1
    assert outcome.current_name == "version 1"
    states = dict(TrainedModel.objects.filter(organization=org).values_list("version", "state"))
    assert states == {1: ModelState.ACTIVE, 2: ModelState.CANDIDATE}
    forced = do_train_model(org, "sentiment", unlearnable(labels), labels, force=True)
    assert forced.promoted and active_model(org.pk, "sentiment")[0] == 3


def test_a_model_stored_in_the_first_format_stays_in_use_and_is_compared_with(org, tmp_path, capsys):
    from hubbub.lib.textmodel import TextModel

    # What an earlier hubbub stored: TF-IDF weighting, the first model format.
    old = TextModel(weighting="tfidf").fit(*made_up(90))
    TrainedModel.objects.create(
        organization=org, task="sentiment", version=1, state=ModelState.ACTIVE, training_size=90, model=old.to_bytes()
    )
    assert active_model(org.pk, "sentiment")[0] == 1
    assert [p.label for p in predict(org.pk, "sentiment", ["the app was zorp", "the app was blick"])] == [
        "positive",
        "negative",
    ]
    test = write_csv(tmp_path / "test.csv", *made_up(30, seed=9))
    assert evaluate_json(capsys, "sentiment", str(test), "--model", "1")["macro_f1"] > 0.9
    outcome = do_train_model(org, "sentiment", *made_up(90, seed=1))
    assert outcome.current_name == "version 1" and outcome.current.macro_f1 > 0.9


def test_only_severity_models_take_severity_cues_as_features():
    def n_extra(model) -> int:
        with np.load(io.BytesIO(model.to_bytes()), allow_pickle=False) as npz:
            return json.loads(npz["header"].tobytes().decode())["n_extra"]

    texts = [f"@brand {w} {f}" for w in ("awful", "fine", "you lied", "thanks") for f in FILLER]
    severity_labels = ["2", "0", "3", "0"] * len(FILLER)
    complaint_labels = ["1", "0", "1", "0"] * len(FILLER)
    severity_model = actions.new_model("severity").fit(texts, severity_labels)
    complaint_model = actions.new_model("complaint").fit(texts, complaint_labels)
    assert n_extra(severity_model) == n_extra(complaint_model) + 3


def test_train_command_reports_the_refusal(org, tmp_path, capsys):
    texts, labels = made_up(60)
    do_train_model(org, "sentiment", texts, labels)
    call_command("train", "sentiment", str(write_csv(tmp_path / "bad.csv", unlearnable(labels), labels)))
    out = capsys.readouterr().out
    assert "kept as a candidate" in out and "current (version 1)" in out
    assert active_model(org.pk, "sentiment")[0] == 1


def test_rollback_walks_back_through_the_versions_then_to_the_default(org, capsys):
    texts, labels = made_up(60)
    for _ in range(3):
        do_train_model(org, "sentiment", texts, labels, force=True)
    assert active_model(org.pk, "sentiment")[0] == 3
    call_command("train", "sentiment", "--rollback")
    assert "version 2 is active again" in capsys.readouterr().out
    assert active_model(org.pk, "sentiment")[0] == 2
    # The version rolled back from is a candidate again: the next rollback skips it.
    assert do_rollback_model(org, "sentiment").version == 1
    assert do_rollback_model(org, "sentiment") is None
    assert active_model(org.pk, "sentiment") == (None, None)
    with pytest.raises(UnderstandingError, match="already in use"):
        do_rollback_model(org, "sentiment")
    assert set(TrainedModel.objects.values_list("state", flat=True)) == {ModelState.CANDIDATE}
    assert AuditEvent.objects.filter(organization=org, action="model.rolled_back").count() == 3


def test_only_one_active_model_per_organization_and_task(org):
    from django.db import IntegrityError, transaction

    texts, labels = made_up(30)
    first = do_train_model(org, "sentiment", texts, labels, force=True).trained
    second = do_train_model(org, "sentiment", texts, labels).trained
    TrainedModel.objects.filter(pk=second.pk).update(state=ModelState.CANDIDATE)
    TrainedModel.objects.filter(pk=first.pk).update(state=ModelState.ACTIVE)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainedModel.objects.filter(pk=second.pk).update(state=ModelState.ACTIVE)
    assert TrainedModel.objects.get(pk=first.pk).state == ModelState.ACTIVE


def test_train_from_label_corrections(org, capsys):
    texts, labels = made_up(30)
    LabelCorrection.objects.bulk_create(
        LabelCorrection(organization=org, task="sentiment", text=t, label=label)
        for t, label in zip(texts, labels, strict=True)
    )
    # a later correction of the same post wins
    LabelCorrection.objects.create(organization=org, task="sentiment", text=texts[0], label="negative")
    call_command("train", "sentiment", "--organization", "acme", "--force")
    out = capsys.readouterr().out
    assert "30 sentiment label corrections of acme" in out
    assert TrainedModel.objects.get().training_size == 24
    assert actions.corrections(org, "sentiment").labels[0] == "negative"


def test_too_few_examples_are_refused_clearly(org, tmp_path):
    texts, labels = made_up(30)
    cases = [
        (texts[:15], labels[:15], "at least 20"),
        (texts[:25], ["positive"] * 25, "two labels"),
        (texts[:25], ["positive"] * 12 + ["negative"] * 12 + ["neutral"], "neutral have fewer than 2"),
    ]
    for i, (t, lab, message) in enumerate(cases):
        with pytest.raises(CommandError, match=message):
            call_command("train", "sentiment", str(write_csv(tmp_path / f"{i}.csv", t, lab)))
    with pytest.raises(CommandError, match="at least 20"):
        call_command("train", "sentiment")  # no corrections yet
    assert not TrainedModel.objects.exists()


def test_cross_validation_reports_and_stores_nothing(org, tmp_path, capsys):
    texts, labels = made_up(60)
    call_command("train", "sentiment", str(write_csv(tmp_path / "cv.csv", texts, labels)), "--cross-validate", "3")
    out = capsys.readouterr().out
    assert "3-fold cross-validated macro-F1" in out and "Nothing was stored" in out
    assert not TrainedModel.objects.exists()


def test_train_needs_an_organization_when_there_are_several(org, tmp_path):
    do_create_organization("Other", "other")
    texts, labels = made_up(30)
    with pytest.raises(CommandError, match="several organizations"):
        call_command("train", "sentiment", str(write_csv(tmp_path / "t.csv", texts, labels)))
    with pytest.raises(CommandError, match="no organization 'nope'"):
        call_command("train", "sentiment", "--organization", "nope")


def test_split_is_stratified_repeatable_and_keeps_held_out_posts_held_out():
    labels = ["a"] * 10 + ["b"] * 5 + ["c"] * 2
    texts = [f"post {i}" for i in range(17)]
    train, held = stratified_split(texts, labels, 0.2, seed=3)
    assert sorted(train + held) == list(range(17))
    assert sorted(labels[i] for i in held) == ["a", "a", "b", "c"]
    assert stratified_split(texts, labels, 0.2, seed=3) == (train, held)
    assert stratified_split(texts, labels, 0.2, seed=4) != (train, held)
    # More posts later: most of the posts held out before are held out again.
    more_texts, more_labels = made_up(300, seed=1)
    before = {more_texts[i] for i in stratified_split(more_texts[:150], more_labels[:150])[1]}
    after = {more_texts[i] for i in stratified_split(more_texts, more_labels)[1]}
    assert len(before & after) >= 0.8 * len(before)


def test_train_uses_the_pretrained_encoder_when_installed_and_says_so(org, tmp_path, capsys, encoder_models):
    texts, labels = made_up(45)
    call_command("train", "sentiment", str(write_csv(tmp_path / "train.csv", texts, labels)), "--force")
    out = capsys.readouterr().out
    assert "and the pretrained encoder" in out
    version, model = active_model(org.pk, "sentiment")
    assert version == 1 and model is not None and model.encoder
    assert [p.label for p in predict(org.pk, "sentiment", ["the app was zorp", "the app was blick"])] == [
        "positive",
        "negative",
    ]


def test_without_the_encoders_weights_train_says_why_and_trains_ngrams(
    org, tmp_path, capsys, encoder_models, monkeypatch
):
    from hubbub.lib import encoder

    def missing():
        raise encoder.EncoderUnavailable("not installed: make .venv/bin/.installed")

    monkeypatch.setattr(encoder, "load", missing)
    texts, labels = made_up(45)
    call_command("train", "sentiment", str(write_csv(tmp_path / "train.csv", texts, labels)), "--force")
    assert "n-grams only; the pretrained encoder is not installed" in capsys.readouterr().out
    _, model = active_model(org.pk, "sentiment")
    assert model is not None and not model.encoder


def test_the_pipeline_encodes_a_batch_once_for_all_its_encoder_models(org, monkeypatch, encoder_models):
    from hubbub.lib import encoder

    texts, labels = made_up(45)
    do_train_model(org, "sentiment", texts, labels, force=True)
    do_train_model(org, "complaint", texts, ["1" if label == "negative" else "0" for label in labels], force=True)
    encoded = []
    real = encoder.Encoder.layer_means

    def counting(self, batch, *args, **kwargs):
        encoded.append(len(batch))
        return real(self, batch, *args, **kwargs)

    monkeypatch.setattr(encoder.Encoder, "layer_means", counting)
    found = understand(org.pk, ["the app was zorp", "the app was blick", "the app was quen"])
    assert encoded == [3]
    assert [u.sentiment for u in found][:2] == ["positive", "negative"]


def test_with_an_encoder_model_active_the_pipeline_takes_small_batches(org, encoder_models):
    from hubbub.connectors.models import EventState, InboundEvent, Network, SocialAccount
    from hubbub.inbox import pipeline

    account = SocialAccount.objects.create(organization=org, network=Network.TWITTER, handle="acme")
    InboundEvent.objects.bulk_create(
        InboundEvent(account=account, external_id=str(i), payload={"not": "a post"}) for i in range(150)
    )
    texts, labels = made_up(45)
    do_train_model(org, "sentiment", texts, labels, force=True, seed=1)
    assert pipeline.process_pending() == pipeline.ENCODER_BATCH_SIZE == 100
    assert InboundEvent.objects.filter(state=EventState.PENDING).count() == 50
    # Back to n-gram models: whole batches again.
    TrainedModel.objects.filter(organization=org).update(state=ModelState.RETIRED)
    assert pipeline.process_pending() == 50
