"""A trainable text classifier for an organisation's own labelled posts.

Features: hashed word 1–2-grams and character 1–4-grams, each present/absent and scaled by how
unevenly it falls across the labels in the training posts (the log-count ratio of NB-SVM, Wang &
Manning 2012: |log p(n-gram | label) / p(n-gram | other labels)|, the largest over the labels), then
L2-normalised; plus a few numbers from the offline classifiers (lexicon sentiment score, intent, the
taxonomy labels' confidences). A logistic regression on top gives calibrated-enough probabilities
for a confidence.

On a 2,029-post labelled complaints set, 5-fold cross-validated complaint macro-F1 (seeds 0, 1, 2)
went from 0.812 ± 0.015, 0.816 ± 0.021, 0.809 ± 0.023 with TF-IDF weighting (the first model format)
to 0.826 ± 0.012, 0.827 ± 0.018, 0.827 ± 0.017, and predict() from 3,100 to 5,200 posts/s on one
core (bench/textmodel_cv.py). Models of the first format (TF-IDF weighting and severity's reproach
cues) are still read and predict as before; `TextModel(weighting="tfidf")` still trains one.

With `encoder=True` the model also learns from a pretrained sentence encoder (all-MiniLM-L6-v2,
hubbub/lib/encoder.py): its six hidden layers, each averaged over the post's tokens, standardised,
feed a second logistic regression, and the two models' probabilities are averaged. On the same
folds that took complaint macro-F1 to 0.875 / 0.877 / 0.869 (seeds 0, 1, 2), at about 20-40
posts/s instead of 5,000 (bench/textmodel_cv.py --encoder). If the encoder's weights are missing
when such a model predicts, it answers with its n-gram half alone and logs why.

Hashing instead of a vocabulary keeps the model small and its serialisation simple: a model is a
compressed .npz of plain arrays (the weights and coefficients of the columns seen in training) plus
a JSON header, read back with allow_pickle=False, so loading a model can never run code, whoever
wrote the bytes.
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

from hubbub.lib import encoder
from hubbub.lib.classify import INTENTS, LABELS, MAX_TEXT, Classification, classify
from hubbub.lib.severity import reproach_cues

__all__ = ["FORMAT", "WEIGHTINGS", "Prediction", "TextModel", "TextModelError"]

log = logging.getLogger(__name__)

FORMAT = "hubbub-textmodel-2"  # n-grams weighted by label ratio; n_extra in the header tells feature sets apart
_TFIDF_FORMAT = "hubbub-textmodel-1"  # the first format, TF-IDF weighted: still read
_WORD_BITS = 18
_CHAR_BITS = 18
_N_WORD = 1 << _WORD_BITS
_N_CHAR = 1 << _CHAR_BITS
_N_HASHED = _N_WORD + _N_CHAR
# classify() features: sentiment score, its sign, confidence-weighted intent one-hot, a question mark,
# each taxonomy label's confidence; then, in models of the first format and in those asked for them
# (severity's), severity's blame, accusation and disapproval cues. (Adding them took 5-fold CV
# complaint macro-F1 on the shared complaints set from 0.801 to 0.812 with TF-IDF. With label-ratio
# weighting they made no difference to complaints, 0.827 with vs 0.824 without, 0.826 vs 0.827 and
# 0.828 vs 0.828 on other folds, and cost 40 % of the prediction time; grading severity 0-4 they
# do count: macro-F1 0.430 with, 0.415 without.)
_LABELS_AT = 3 + len(INTENTS) + 1
_REPROACH_AT = _LABELS_AT + len(LABELS)
_N_EXTRA = _REPROACH_AT
_N_EXTRA_TFIDF = _REPROACH_AT + 3
_LABEL_INDEX = {name: i for i, name in enumerate(LABELS)}
_EXTRA_WEIGHT = 0.5  # the hashed blocks have unit norm each; this keeps the extras in proportion
_ALPHA = 1.0  # add-one smoothing of the label ratios
# The n-gram weightings a model can be trained with, and the regularisation C chosen for each (by 5-fold
# cross-validation on a labelled complaints set: ratio 4 vs 1 and 16; tfidf 16 vs 4 and 64, the same within noise).
WEIGHTINGS = {"ratio": 4.0, "tfidf": 16.0}

# The encoder half's regularisation: inner 5-fold CV on the training folds chose 0.01 in most folds
# (of 0.01, 0.03, 0.1, 0.3) on the labelled complaints set; it is strong because the layers have
# 2,304 correlated dimensions for a few thousand posts.
_ENCODER_C = 0.01

_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@\w+")
_NUMBER = re.compile(r"\d+")

_WORD = HashingVectorizer(
    n_features=_N_WORD,
    analyzer="word",
    ngram_range=(1, 2),
    token_pattern=r"(?u)[#]?\b\w+\b|[!?]",  # noqa: S106 - a regex, not a password
    alternate_sign=False,
    norm=None,
    dtype=np.float64,
)
_CHAR_SIZES = (1, 2, 3, 4)
_SEPARATOR = "\x00"


class TextModelError(ValueError):
    """Training data or serialised bytes that cannot make a model."""


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float  # probability of the label, 0..1


def _prepare(text: str) -> str:
    # Handles, links and numbers differ in every post; their presence is what carries meaning.
    text = text[:MAX_TEXT].lower()
    if not text.isascii():
        # A lone surrogate (JSON can carry one) cannot be hashed: it becomes "?".
        text = text.encode("utf-8", "replace").decode("utf-8")
    text = _URL.sub(" httpurl ", text)
    text = _MENTION.sub(" @user ", text)
    text = _NUMBER.sub("0", text)
    return " ".join(text.replace(_SEPARATOR, " ").split())


def _mix(x: np.ndarray) -> np.ndarray:
    # MurmurHash3's 64-bit finaliser: spreads similar n-grams over the whole hashed space.
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


def _char_counts(prepared: Sequence[str]) -> sparse.csr_matrix:
    """Hashed counts of the character n-grams of each text, computed for the whole batch at once.

    scikit-learn builds character n-grams one Python string at a time, which took two thirds of
    the prediction time; here all texts become one array of code points and every n-gram's hash
    is a few vectorised operations. uint64 arithmetic wraps, so the hashes are the same everywhere.
    """
    joined = _SEPARATOR.join(prepared) + _SEPARATOR
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    is_separator = codes == 0
    doc = np.cumsum(is_separator) - is_separator  # the text each position belongs to
    separators_before = np.concatenate(([0], np.cumsum(is_separator)))
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    h = np.zeros(len(codes), dtype=np.uint64)
    for n in range(1, _CHAR_SIZES[-1] + 1):
        starts = len(codes) - n + 1
        # h[i] is the hash of codes[i:i+n]: extend the (n-1)-gram by one character
        h = h[:starts] * np.uint64(1_000_003) + codes[n - 1 : n - 1 + starts]
        if n < _CHAR_SIZES[0]:
            continue
        inside = separators_before[n : n + starts] == separators_before[:starts]  # no separator in the window
        index = _mix(h[inside] ^ np.uint64(n << 56)) >> np.uint64(64 - _CHAR_BITS)
        rows.append(doc[:starts][inside])
        cols.append(index)
    row = np.concatenate(rows)
    col = np.concatenate(cols).astype(np.int64)
    counts = sparse.csr_matrix((np.ones(len(row)), (row, col)), shape=(len(prepared), _N_CHAR))
    counts.sum_duplicates()
    return counts


def _extras(texts: Sequence[str], classifications: Sequence[Classification] | None, n_extra: int) -> np.ndarray:
    extra = np.zeros((len(texts), n_extra))
    for row, text in enumerate(texts):
        c = classifications[row] if classifications is not None else classify(text)
        extra[row, 0] = c.sentiment_score
        extra[row, 1] = c.sentiment_score < 0
        extra[row, 2] = c.sentiment_score > 0
        extra[row, 3 + INTENTS.index(c.intent)] = 0.5 + c.intent_confidence
        extra[row, 3 + len(INTENTS)] = "?" in text[:MAX_TEXT]
        for name, confidence in c.labels:
            extra[row, _LABELS_AT + _LABEL_INDEX[name]] = confidence
        if n_extra > _REPROACH_AT:
            extra[row, _REPROACH_AT : _REPROACH_AT + 3] = reproach_cues(text)
    return extra * _EXTRA_WEIGHT


def _counts(texts: Sequence[str]) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    prepared = [_prepare(t) for t in texts]
    return _WORD.transform(prepared), _char_counts(prepared)


def _idf(counts: sparse.csr_matrix, n_docs: int) -> np.ndarray:
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    # smooth idf as in scikit-learn; features never seen get the highest weight
    return (np.log((1.0 + n_docs) / (1.0 + df)) + 1.0).astype(np.float32)


def _label_ratio(counts: sparse.csr_matrix, labels: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, float]:
    """Each column's weight: how much likelier the n-gram is in one label's posts than in the others'.

    |log((p / |p|) / (q / |q|))| with p the smoothed number of the label's posts that have the n-gram
    and q the same for the other posts, the largest over the labels. With two labels both give the
    same value, and a logistic regression on n-grams scaled by it is NB-SVM's NB-LR: the sign that
    the ratio drops is learnt by the regression. Returns the ratios and that of an n-gram no
    training post has (from the smoothing alone), which every unseen column has.
    """
    present = counts.copy()
    present.data = np.ones_like(present.data)
    ratio = np.zeros(counts.shape[1])
    unseen = 0.0
    for label in classes:
        mine = labels == label
        p = _ALPHA + np.asarray(present[mine].sum(axis=0)).ravel()
        q = _ALPHA + np.asarray(present[~mine].sum(axis=0)).ravel()
        log_p, log_q = np.log(p.sum()), np.log(q.sum())
        np.maximum(ratio, np.abs(np.log(p) - log_p - np.log(q) + log_q), out=ratio)
        unseen = max(unseen, abs(log_q - log_p))
    ratio = ratio.astype(np.float32)
    return ratio, float(np.float32(unseen))


def _weigh(counts: sparse.csr_matrix, scale: np.ndarray, tfidf: bool) -> sparse.csr_matrix:
    # The first format: sublinear counts times idf. Now: presence times the label ratio.
    counts.data = (np.log1p(counts.data) if tfidf else np.ones_like(counts.data)) * scale[counts.indices]
    return normalize(counts, copy=False)


class TextModel:
    """Logistic regression over label-ratio-weighted hashed n-grams and classify() features.

    Fit, predict, to/from bytes.
    """

    def __init__(
        self,
        C: float | None = None,
        balanced: bool = True,
        weighting: str = "ratio",
        reproach: bool = False,
        encoder: bool = False,
    ) -> None:
        """weighting: "ratio" (label-ratio-weighted presence), or "tfidf" as models of the first format.

        reproach: add severity's blame, accusation and disapproval cues to the features (models of
        the first format always have them): they help to grade severity, not to tell complaints.
        encoder: average with a regression on the pretrained encoder's layers (slower, better).
        """
        if weighting not in WEIGHTINGS:
            raise TextModelError(f"weighting {weighting!r}: use one of {', '.join(WEIGHTINGS)}")
        self.C = WEIGHTINGS[weighting] if C is None else C
        self.balanced = balanced
        self.labels: tuple[str, ...] = ()
        self._tfidf = weighting == "tfidf"
        self._n_extra = _N_EXTRA_TFIDF if self._tfidf or reproach else _N_EXTRA
        self._scale_word = np.empty(0, dtype=np.float32)
        self._scale_char = np.empty(0, dtype=np.float32)
        self._unseen = (0.0, 0.0)  # the weight of a word and of a character column no training post had
        self._coef: sparse.csr_matrix | None = None  # (features, classes or 1)
        self._intercept = np.empty(0)
        self.encoder = encoder
        self._encoder_mean = np.empty(0, dtype=np.float32)
        self._encoder_scale = np.empty(0, dtype=np.float32)
        self._encoder_coef = np.empty((0, 0), dtype=np.float32)  # (encoder dimensions, classes or 1)
        self._encoder_intercept = np.empty(0)

    # --- training -------------------------------------------------------------------------

    def fit(self, texts: Sequence[str], labels: Sequence[str], *, embeddings: np.ndarray | None = None) -> TextModel:
        """Train. `embeddings`: the encoder's layer_means() of the texts, when the caller has them already."""
        if len(texts) != len(labels):
            raise TextModelError(f"{len(texts)} texts but {len(labels)} labels")
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise TextModelError("training needs at least two different labels")
        word, char = _counts(texts)
        if self._tfidf:
            self._scale_word, self._scale_char = _idf(word, len(texts)), _idf(char, len(texts))
            self._unseen = (float(self._scale_word.max()), float(self._scale_char.max()))
        else:
            y = np.asarray(labels, dtype=object)
            (self._scale_word, unseen_word), (self._scale_char, unseen_char) = (
                _label_ratio(word, y, classes),
                _label_ratio(char, y, classes),
            )
            self._unseen = (unseen_word, unseen_char)
        x = self._matrix(word, char, texts, None)
        clf = LogisticRegression(
            C=self.C, class_weight="balanced" if self.balanced else None, max_iter=2000, random_state=0
        )
        # Only the columns some training post has can get a weight: fitting on those alone is
        # much faster than on the whole hashed space, and the model stores them alone.
        used = np.unique(x.indices)
        clf.fit(x[:, used], list(labels))
        self.labels = tuple(str(c) for c in clf.classes_)
        coef = sparse.coo_matrix(clf.coef_.T)
        self._coef = sparse.csr_matrix((coef.data, (used[coef.row], coef.col)), shape=(x.shape[1], coef.shape[1]))
        self._intercept = clf.intercept_.astype(np.float64)
        if self.encoder:
            self._fit_encoder(texts, labels, embeddings)
        return self

    def _fit_encoder(self, texts: Sequence[str], labels: Sequence[str], embeddings: np.ndarray | None) -> None:
        try:
            found = encoder.load().layer_means(texts) if embeddings is None else embeddings
        except encoder.EncoderUnavailable as exc:
            raise TextModelError(f"cannot train with the encoder: {exc}") from exc
        if found.shape != (len(texts), encoder.DIM):
            raise TextModelError(f"embeddings of shape {found.shape}, expected {(len(texts), encoder.DIM)}")
        self._encoder_mean = found.mean(axis=0).astype(np.float32)
        self._encoder_scale = np.maximum(found.std(axis=0), 1e-6).astype(np.float32)
        clf = LogisticRegression(
            C=_ENCODER_C, class_weight="balanced" if self.balanced else None, max_iter=3000, random_state=0
        )
        # Same labels as the n-gram regression, so its classes_ come in the same (sorted) order.
        clf.fit((found - self._encoder_mean) / self._encoder_scale, list(labels))
        self._encoder_coef = clf.coef_.T.astype(np.float32)
        self._encoder_intercept = clf.intercept_.astype(np.float64)

    # --- prediction -----------------------------------------------------------------------

    def _matrix(
        self,
        word: sparse.csr_matrix,
        char: sparse.csr_matrix,
        texts: Sequence[str],
        classifications: Sequence[Classification] | None,
    ) -> sparse.csr_matrix:
        blocks = [_weigh(word, self._scale_word, self._tfidf), _weigh(char, self._scale_char, self._tfidf)]
        blocks.append(sparse.csr_matrix(_extras(texts, classifications, self._n_extra)))
        return sparse.hstack(blocks, format="csr")

    def predict_proba(
        self,
        texts: Sequence[str],
        classifications: Sequence[Classification] | None = None,
        *,
        embeddings: np.ndarray | None = None,
    ) -> np.ndarray:
        """Probabilities, one row per text, columns in `self.labels` order.

        Pass classify() of each text, or the encoder's layer_means(), when the caller already has
        them, to save computing them again.
        """
        if self._coef is None:
            raise TextModelError("the model is not trained")
        if not texts:
            return np.zeros((0, len(self.labels)))
        word, char = _counts(texts)
        x = self._matrix(word, char, texts, classifications)
        ngrams = _probabilities(np.asarray((x @ self._coef).todense()) + self._intercept)
        if not self.encoder:
            return ngrams
        if embeddings is None:
            try:
                embeddings = encoder.load().layer_means(texts)
            except encoder.EncoderUnavailable as exc:
                log.warning("the model's encoder is unavailable, predicting from n-grams alone: %s", exc)
                return ngrams
        scores = ((embeddings - self._encoder_mean) / self._encoder_scale) @ self._encoder_coef
        return 0.5 * (ngrams + _probabilities(scores + self._encoder_intercept))

    def predict(
        self,
        texts: Sequence[str],
        classifications: Sequence[Classification] | None = None,
        *,
        embeddings: np.ndarray | None = None,
    ) -> list[Prediction]:
        proba = self.predict_proba(texts, classifications, embeddings=embeddings)
        best = proba.argmax(axis=1)
        return [Prediction(self.labels[i], round(float(proba[row, i]), 4)) for row, i in enumerate(best)]

    # --- serialisation --------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        if self._coef is None:
            raise TextModelError("the model is not trained")
        coef = self._coef.tocoo()
        # Every column no training post had has the same weight: only the other columns are stored,
        # and that one weight.
        unseen_word, unseen_char = self._unseen
        seen_word = np.flatnonzero(self._scale_word != np.float32(unseen_word))
        seen_char = np.flatnonzero(self._scale_char != np.float32(unseen_char))
        header = {
            "format": _TFIDF_FORMAT if self._tfidf else FORMAT,
            "labels": list(self.labels),
            "C": self.C,
            "balanced": self.balanced,
            "word_bits": _WORD_BITS,
            "char_bits": _CHAR_BITS,
            "n_extra": self._n_extra,
            "char_sizes": list(_CHAR_SIZES),
            "unseen_idf" if self._tfidf else "unseen_scale": [unseen_word, unseen_char],
        }
        encoder_arrays = {}
        if self.encoder:
            header["encoder"] = {"id": encoder.ENCODER_ID, "sha256": encoder.weights_sha256(), "layers": encoder.LAYERS}
            encoder_arrays = {
                "encoder_mean": self._encoder_mean,
                "encoder_scale": self._encoder_scale,
                "encoder_coef": self._encoder_coef,
                "encoder_intercept": self._encoder_intercept,
            }
        prefix = "idf" if self._tfidf else "scale"
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            word_idx=seen_word.astype(np.int32),
            char_idx=seen_char.astype(np.int32),
            coef_row=coef.row.astype(np.int32),
            coef_col=coef.col.astype(np.int16),
            coef_val=coef.data.astype(np.float32),
            intercept=self._intercept,
            **{f"word_{prefix}": self._scale_word[seen_word], f"char_{prefix}": self._scale_char[seen_char]},
            **encoder_arrays,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TextModel:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                header = json.loads(npz["header"].tobytes().decode())
                if header.get("format") not in (FORMAT, _TFIDF_FORMAT):
                    raise TextModelError(f"not a {FORMAT} model")
                tfidf = header["format"] == _TFIDF_FORMAT
                features = (header["word_bits"], header["char_bits"], tuple(header["char_sizes"]))
                n_extra = header["n_extra"]
                if features != (_WORD_BITS, _CHAR_BITS, _CHAR_SIZES) or n_extra not in (
                    (_N_EXTRA_TFIDF,) if tfidf else (_N_EXTRA, _N_EXTRA_TFIDF)
                ):
                    raise TextModelError("the model was made with other features; train it again")
                prefix, unseen = ("idf", header["unseen_idf"]) if tfidf else ("scale", header["unseen_scale"])
                weighting = "tfidf" if tfidf else "ratio"
                model = cls(
                    C=float(header["C"]),
                    balanced=bool(header["balanced"]),
                    weighting=weighting,
                    reproach=n_extra == _N_EXTRA_TFIDF,
                )
                model.labels = tuple(str(label) for label in header["labels"])
                model._unseen = (float(unseen[0]), float(unseen[1]))
                model._scale_word = np.full(_N_WORD, unseen[0], dtype=np.float32)
                model._scale_word[npz["word_idx"]] = npz[f"word_{prefix}"]
                model._scale_char = np.full(_N_CHAR, unseen[1], dtype=np.float32)
                model._scale_char[npz["char_idx"]] = npz[f"char_{prefix}"]
                n_cols = 1 if len(model.labels) == 2 else len(model.labels)
                model._coef = sparse.csr_matrix(
                    (npz["coef_val"].astype(np.float64), (npz["coef_row"], npz["coef_col"].astype(np.int32))),
                    shape=(_N_HASHED + model._n_extra, n_cols),
                )
                model._intercept = npz["intercept"].astype(np.float64)
                if "encoder" in header:
                    _read_encoder(model, header["encoder"], npz)
        except TextModelError:
            raise
        except (ValueError, KeyError, OSError, EOFError, TypeError, IndexError, zipfile.BadZipFile) as exc:
            raise TextModelError(f"unreadable model: {exc}") from exc
        if len(model._intercept) != model._coef.shape[1] or len(model.labels) < 2:
            raise TextModelError("unreadable model: inconsistent shapes")
        if model.encoder and (
            model._encoder_coef.shape != (len(model._encoder_mean), model._coef.shape[1])
            or model._encoder_scale.shape != model._encoder_mean.shape
            or model._encoder_intercept.shape != model._intercept.shape
        ):
            raise TextModelError("unreadable model: inconsistent encoder shapes")
        return model


def _read_encoder(model: TextModel, described: dict, npz) -> None:
    # Another encoder (or the same one's other layers) would give numbers the regression never saw.
    if described.get("id") != encoder.ENCODER_ID or list(described.get("layers", ())) != list(encoder.LAYERS):
        raise TextModelError("the model was made with another encoder; train it again")
    if described.get("sha256") != encoder.weights_sha256():
        raise TextModelError("the model was made with other encoder weights; train it again")
    model.encoder = True
    model._encoder_mean = npz["encoder_mean"].astype(np.float32)
    model._encoder_scale = npz["encoder_scale"].astype(np.float32)
    model._encoder_coef = npz["encoder_coef"].astype(np.float32)
    model._encoder_intercept = npz["encoder_intercept"].astype(np.float64)


def _probabilities(scores: np.ndarray) -> np.ndarray:
    """Logistic-regression scores (one column for two labels, one per label otherwise) -> probabilities."""
    if scores.shape[1] == 1:
        positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        return np.column_stack([1.0 - positive, positive])
    scores = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(scores)
    return exp / exp.sum(axis=1, keepdims=True)
