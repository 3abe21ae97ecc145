"""Classification metrics: accuracy, macro-F1, macro recall, per-class figures, confusion matrix.

Pure Python. Averages follow scikit-learn's defaults so figures compare with published ones:
macro averages run over the labels that occur in the true or the predicted labels, and a ratio
whose denominator is zero counts as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ClassFigures", "Report", "evaluate"]


@dataclass(frozen=True)
class ClassFigures:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Report:
    labels: tuple[str, ...]  # the fixed order of per_class and of the confusion matrix
    accuracy: float
    macro_f1: float
    macro_recall: float
    per_class: dict[str, ClassFigures]
    confusion: list[list[int]]  # rows = true label, columns = predicted label, in `labels` order

    def as_dict(self) -> dict:
        return {
            "labels": list(self.labels),
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "macro_recall": self.macro_recall,
            "per_class": {
                label: {"precision": f.precision, "recall": f.recall, "f1": f.f1, "support": f.support}
                for label, f in self.per_class.items()
            },
            "confusion": [list(row) for row in self.confusion],
        }


def _ratio(a: int | float, b: int | float) -> float:
    return a / b if b else 0.0


def evaluate(true: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> Report:
    """Compare predictions with true labels. Labels outside `labels` raise ValueError."""
    if len(true) != len(predicted):
        raise ValueError(f"{len(true)} true labels but {len(predicted)} predictions")
    if not true:
        raise ValueError("nothing to evaluate")
    index = {label: i for i, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError("labels repeat")
    k = len(labels)
    confusion = [[0] * k for _ in range(k)]
    for t, p in zip(true, predicted, strict=True):
        if t not in index or p not in index:
            raise ValueError(f"label {t if t not in index else p!r} is not one of {list(labels)}")
        confusion[index[t]][index[p]] += 1

    per_class: dict[str, ClassFigures] = {}
    present: list[str] = []
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        support = sum(confusion[i])
        predicted_count = sum(row[i] for row in confusion)
        precision = _ratio(tp, predicted_count)
        recall = _ratio(tp, support)
        per_class[label] = ClassFigures(precision, recall, _ratio(2 * precision * recall, precision + recall), support)
        if support or predicted_count:
            present.append(label)

    correct = sum(confusion[i][i] for i in range(k))
    return Report(
        labels=tuple(labels),
        accuracy=correct / len(true),
        macro_f1=sum(per_class[label].f1 for label in present) / len(present),
        macro_recall=sum(per_class[label].recall for label in present) / len(present),
        per_class=per_class,
        confusion=confusion,
    )
