"""The trainable text model on made-up posts: it learns, predicts with confidences, round-trips bytes."""

import io
import json
import random

import numpy as np
import pytest

from hubbub.lib.classify import classify
from hubbub.lib.metrics import evaluate
from hubbub.lib.textmodel import Prediction, TextModel, TextModelError

BRANDS = ["@acmeair", "@zephyrbank", "@northtel", "@shopfast", "@cloudly"]
THINGS = ["order", "parcel", "router", "flight", "card", "app", "bill", "laptop", "booking", "account"]
PROBLEMS = [
    "my {t} arrived broken and nobody answers",
    "you charged me twice for my {t}, fix it",
    "still waiting for my {t} after three weeks",
    "the {t} stopped working again, this is the worst",
    "{t} cancelled with no refund, unacceptable",
    "been on hold for an hour about my {t}",
]
OTHERS = [
    "how do I change the address on my {t}?",
    "thanks for the quick help with my {t}!",
    "is the new {t} available in blue?",
    "loving the new {t}, great job team",
    "what time does support open for {t} questions",
    "can I add a second person to my {t}",
]


def made_up_posts(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        complaint = i % 2 == 0
        template = rng.choice(PROBLEMS if complaint else OTHERS)
        texts.append(f"{rng.choice(BRANDS)} {template.format(t=rng.choice(THINGS))}")
        labels.append("1" if complaint else "0")
    return texts, labels


@pytest.fixture(scope="module")
def trained() -> TextModel:
    texts, labels = made_up_posts(200, seed=1)
    return TextModel().fit(texts, labels)


def test_learns_a_small_task_and_generalises_to_new_posts(trained):
    texts, labels = made_up_posts(60, seed=2)
    predicted = [p.label for p in trained.predict(texts)]
    assert evaluate(labels, predicted, ["0", "1"]).macro_f1 >= 0.9


def test_predictions_carry_labels_and_confidences(trained):
    predictions = trained.predict(["@shopfast my parcel arrived broken, refund now", "thanks, love the app!"])
    assert [p.label for p in predictions] == ["1", "0"]
    assert all(isinstance(p, Prediction) and 0.5 <= p.confidence <= 1.0 for p in predictions)
    proba = trained.predict_proba(["anything at all", ""])
    assert proba.shape == (2, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert trained.labels == ("0", "1")
    assert trained.predict([]) == []


def test_precomputed_classifications_give_the_same_answer(trained):
    texts, _ = made_up_posts(10, seed=3)
    assert trained.predict(texts) == trained.predict(texts, [classify(t) for t in texts])


def test_round_trips_through_bytes_without_pickle(trained):
    data = trained.to_bytes()
    texts, _ = made_up_posts(30, seed=4)
    loaded = TextModel.from_bytes(data)
    assert loaded.labels == trained.labels
    assert np.allclose(loaded.predict_proba(texts), trained.predict_proba(texts), atol=1e-5)
    # The bytes are plain arrays: numpy reads every one of them with pickling refused.
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        for name in npz.files:
            assert npz[name].dtype != object


def test_three_labels_round_trip():
    rng = random.Random(5)
    words = {"negative": "awful broken late", "neutral": "address opening hours", "positive": "love great thanks"}
    texts, labels = [], []
    for i in range(90):
        label = list(words)[i % 3]
        texts.append(f"{rng.choice(BRANDS)} {' '.join(rng.sample(words[label].split(), 2))} {rng.choice(THINGS)}")
        labels.append(label)
    model = TextModel().fit(texts, labels)
    loaded = TextModel.from_bytes(model.to_bytes())
    assert loaded.labels == ("negative", "neutral", "positive")
    assert [p.label for p in loaded.predict(["love it, thanks", "broken and late again"])] == ["positive", "negative"]
    assert np.allclose(loaded.predict_proba(texts[:5]), model.predict_proba(texts[:5]), atol=1e-5)


def test_hostile_input_is_cut_and_classified():
    model = TextModel().fit(*made_up_posts(40, seed=6))
    predictions = model.predict(["😡" * 100_000, "<div>" * 20_000, "\x00\ud800 odd"])
    assert len(predictions) == 3


def test_refuses_what_it_cannot_learn_or_read():
    with pytest.raises(TextModelError, match="two different labels"):
        TextModel().fit(["a", "b"], ["1", "1"])
    with pytest.raises(TextModelError):
        TextModel().fit(["a"], ["1", "0"])
    with pytest.raises(TextModelError, match="not trained"):
        TextModel().predict(["a"])
    for garbage in (b"", b"not a model", b"PK\x03\x04broken"):
        with pytest.raises(TextModelError):
            TextModel.from_bytes(garbage)
    buffer = io.BytesIO()
    np.savez(buffer, header=np.frombuffer(b'{"format": "other"}', dtype=np.uint8))
    with pytest.raises(TextModelError, match="not a"):
        TextModel.from_bytes(buffer.getvalue())


def test_character_hashes_are_fixed_so_stored_models_stay_valid():
    from hubbub.lib import textmodel

    def reference(gram: str) -> int:
        # the same hash in plain Python integers, as a stored model expects it
        mask = (1 << 64) - 1
        h = 0
        for ch in gram:
            h = (h * 1_000_003 + ord(ch)) & mask
        x = h ^ (len(gram) << 56)
        for k in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
            x ^= x >> 33
            x = (x * k) & mask
        x ^= x >> 33
        return x >> (64 - textmodel._CHAR_BITS)

    def expected(text: str) -> dict[int, float]:
        columns: dict[int, float] = {}
        for n in textmodel._CHAR_SIZES:
            for i in range(len(text) - n + 1):
                column = reference(text[i : i + n])
                columns[column] = columns.get(column, 0) + 1
        return columns

    texts = ["abab", "", "é😡", "a b"]
    counts = textmodel._char_counts(texts)
    assert counts.shape[0] == 4
    for row, text in enumerate(texts):
        # no n-gram crosses from one text into the next
        assert dict(zip(counts[row].indices.tolist(), counts[row].data.tolist(), strict=True)) == expected(text)


def test_label_ratio_weighs_n_grams_by_how_unevenly_they_fall_across_labels():
    from scipy import sparse

    from hubbub.lib import textmodel

    # columns: 0 only in label "1" posts, 1 in every post, 2 mostly in "0" posts, 3 in no post
    counts = sparse.csr_matrix(np.array([[2, 1, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 3, 1, 0]]))
    labels = np.array(["1", "1", "0", "0", "0"], dtype=object)
    ratio, unseen = textmodel._label_ratio(counts, labels, ["0", "1"])
    # presence, not counts: column 0 counts as in 2 of 2 posts, column 1 as in every post
    p, q = np.array([3, 3, 1, 1]) / 8, np.array([1, 4, 4, 1]) / 10
    assert np.allclose(ratio, np.abs(np.log(p / q)), atol=1e-6)
    assert ratio[0] > ratio[1] and ratio[2] > ratio[1]
    assert unseen == pytest.approx(ratio[3])
    # with three labels, a column's weight is its largest one-label-against-the-rest ratio
    three = np.array(["a", "b", "c", "c", "c"], dtype=object)
    ratio3, _ = textmodel._label_ratio(counts, three, ["a", "b", "c"])
    a_vs_rest = np.abs(np.log((np.array([2, 2, 1, 1]) / 6) / (np.array([2, 5, 4, 1]) / 12)))  # "b" alike
    c_vs_rest = np.abs(np.log((np.array([1, 4, 4, 1]) / 10) / (np.array([3, 3, 1, 1]) / 8)))
    assert np.allclose(ratio3, np.maximum(a_vs_rest, c_vs_rest), atol=1e-6)


def test_unseen_n_grams_keep_their_weight_through_bytes(trained):
    # Posts made of n-grams no training post had: their weight comes from the header alone.
    texts = ["qqqq zzzz xxxx", "völlig unbekannte wörter 😡"]
    loaded = TextModel.from_bytes(trained.to_bytes())
    assert np.allclose(loaded.predict_proba(texts), trained.predict_proba(texts), atol=1e-5)


def test_first_format_models_are_still_read_and_predict_as_before():
    # A model of the first format (TF-IDF weighting, severity's cues among the extras), as stored
    # by earlier versions, keeps working after an upgrade.
    texts, labels = made_up_posts(120, seed=7)
    old = TextModel(weighting="tfidf").fit(texts, labels)
    data = old.to_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        header = json.loads(npz["header"].tobytes().decode())
        assert header["format"] == "hubbub-textmodel-1" and "word_idf" in npz.files
    loaded = TextModel.from_bytes(data)
    probe, probe_labels = made_up_posts(40, seed=8)
    assert np.allclose(loaded.predict_proba(probe), old.predict_proba(probe), atol=1e-5)
    assert evaluate(probe_labels, [p.label for p in loaded.predict(probe)], ["0", "1"]).macro_f1 >= 0.9
    new = TextModel().fit(texts, labels)
    with np.load(io.BytesIO(new.to_bytes()), allow_pickle=False) as npz:
        assert json.loads(npz["header"].tobytes().decode())["format"] == "hubbub-textmodel-2"
    with pytest.raises(TextModelError, match="weighting"):
        TextModel(weighting="bm25")


def test_severity_cues_are_features_only_when_asked_for_and_survive_bytes():
    def header(model: TextModel) -> dict:
        with np.load(io.BytesIO(model.to_bytes()), allow_pickle=False) as npz:
            return json.loads(npz["header"].tobytes().decode())

    texts, labels = made_up_posts(80, seed=9)
    plain = TextModel().fit(texts, labels)
    cued = TextModel(reproach=True).fit(texts, labels)
    assert header(cued)["n_extra"] == header(plain)["n_extra"] + 3
    for model in (plain, cued):
        loaded = TextModel.from_bytes(model.to_bytes())
        assert np.allclose(loaded.predict_proba(texts[:10]), model.predict_proba(texts[:10]), atol=1e-5)
    # a header whose feature count matches neither is refused, not misread
    buffer = io.BytesIO()
    with np.load(io.BytesIO(plain.to_bytes()), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["header"] = np.frombuffer(json.dumps({**header(plain), "n_extra": 5}).encode(), dtype=np.uint8)
    np.savez(buffer, **arrays)
    with pytest.raises(TextModelError, match="other features"):
        TextModel.from_bytes(buffer.getvalue())


# --- with the pretrained encoder -------------------------------------------------------------


@pytest.fixture(scope="module")
def with_encoder() -> TextModel:
    texts, labels = made_up_posts(60, seed=4)
    return TextModel(encoder=True).fit(texts, labels)


def test_an_encoder_model_learns_and_round_trips_with_its_encoder_half(with_encoder):
    texts, labels = made_up_posts(40, seed=5)
    predicted = [p.label for p in with_encoder.predict(texts)]
    assert evaluate(labels, predicted, ["0", "1"]).macro_f1 > 0.9
    again = TextModel.from_bytes(with_encoder.to_bytes())
    assert again.encoder
    assert np.allclose(again.predict_proba(texts), with_encoder.predict_proba(texts), atol=1e-5)
    # The encoder half counts: the average differs from the n-gram half alone.
    ngrams_only = TextModel.from_bytes(with_encoder.to_bytes())
    ngrams_only.encoder = False
    assert not np.allclose(ngrams_only.predict_proba(texts), with_encoder.predict_proba(texts), atol=1e-3)


def test_embeddings_given_by_the_caller_are_the_ones_it_would_compute(with_encoder):
    from hubbub.lib import encoder

    texts, _ = made_up_posts(10, seed=6)
    given = with_encoder.predict_proba(texts, embeddings=encoder.load().layer_means(texts))
    assert np.allclose(given, with_encoder.predict_proba(texts), atol=1e-5)
    with pytest.raises(TextModelError, match="shape"):
        TextModel(encoder=True).fit(texts, ["0", "1"] * 5, embeddings=np.zeros((3, 4)))


def test_an_encoder_model_without_its_weights_answers_from_its_ngrams(with_encoder, monkeypatch, caplog):
    from hubbub.lib import encoder

    texts, _ = made_up_posts(10, seed=7)
    ngrams_only = TextModel.from_bytes(with_encoder.to_bytes())
    ngrams_only.encoder = False

    def missing():
        raise encoder.EncoderUnavailable("not installed")

    monkeypatch.setattr(encoder, "load", missing)
    assert np.allclose(with_encoder.predict_proba(texts), ngrams_only.predict_proba(texts))
    assert "n-grams alone" in caplog.text and "not installed" in caplog.text
    with pytest.raises(TextModelError, match="not installed"):
        TextModel(encoder=True).fit(texts, ["0", "1"] * 5)


def test_a_model_made_with_other_encoder_weights_or_broken_encoder_arrays_is_refused(with_encoder):
    def altered(change) -> bytes:
        with np.load(io.BytesIO(with_encoder.to_bytes()), allow_pickle=False) as npz:
            arrays = dict(npz)
        header = json.loads(arrays["header"].tobytes())
        change(header, arrays)
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        out = io.BytesIO()
        np.savez_compressed(out, **arrays)
        return out.getvalue()

    with pytest.raises(TextModelError, match="other encoder weights"):
        TextModel.from_bytes(altered(lambda header, arrays: header["encoder"].update(sha256="0" * 64)))
    with pytest.raises(TextModelError, match="another encoder"):
        TextModel.from_bytes(altered(lambda header, arrays: header["encoder"].update(layers=[6])))
    with pytest.raises(TextModelError, match="inconsistent encoder shapes"):
        TextModel.from_bytes(altered(lambda header, arrays: arrays.update(encoder_coef=arrays["encoder_coef"][:5])))
    with pytest.raises(TextModelError, match="unreadable"):
        TextModel.from_bytes(altered(lambda header, arrays: arrays.pop("encoder_mean")))
