"""Metrics against examples worked out by hand, and against scikit-learn on random labels."""

import random

import pytest

from hubbub.lib.metrics import evaluate


def test_three_classes_worked_by_hand():
    # confusion (rows true a/b/c): [2 1 0] [0 1 1] [0 0 1]
    report = evaluate(list("aaabbc"), list("aabbcc"), ["a", "b", "c"])
    assert report.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report.accuracy == pytest.approx(4 / 6)
    a, b, c = (report.per_class[x] for x in "abc")
    assert (a.precision, a.recall, a.f1, a.support) == pytest.approx((1.0, 2 / 3, 0.8, 3))
    assert (b.precision, b.recall, b.f1, b.support) == pytest.approx((0.5, 0.5, 0.5, 2))
    assert (c.precision, c.recall, c.f1, c.support) == pytest.approx((0.5, 1.0, 2 / 3, 1))
    assert report.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report.macro_recall == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)


def test_label_order_is_fixed_and_absent_labels_stay_out_of_the_averages():
    report = evaluate(["x", "x"], ["x", "y"], ["z", "y", "x"])
    assert report.labels == ("z", "y", "x")
    assert report.confusion == [[0, 0, 0], [0, 0, 0], [0, 1, 1]]
    # z never occurs: it is left out; y is only predicted: precision, recall and F1 are 0
    assert report.per_class["z"].support == 0
    assert report.macro_f1 == pytest.approx((0.0 + 2 / 3) / 2)
    assert report.macro_recall == pytest.approx((0.0 + 0.5) / 2)


def test_perfect_and_all_wrong():
    assert evaluate(["1", "0"], ["1", "0"], ["0", "1"]).macro_f1 == 1.0
    wrong = evaluate(["1", "0"], ["0", "1"], ["0", "1"])
    assert (wrong.accuracy, wrong.macro_f1, wrong.macro_recall) == (0.0, 0.0, 0.0)


def test_dict_form_has_the_published_keys():
    data = evaluate(["a"], ["a"], ["a", "b"]).as_dict()
    assert {"accuracy", "macro_f1", "macro_recall", "per_class", "confusion"} <= set(data)
    assert data["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        evaluate(["a"], ["q"], ["a", "b"])
    with pytest.raises(ValueError):
        evaluate(["a"], [], ["a"])
    with pytest.raises(ValueError):
        evaluate([], [], ["a"])


@pytest.mark.filterwarnings("ignore")
def test_agrees_with_scikit_learn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    rng = random.Random(7)
    labels = ["neg", "neu", "pos", "rare"]
    for _ in range(20):
        true = [rng.choice(labels[:3]) for _ in range(50)]
        pred = [rng.choice(labels) for _ in range(50)]
        report = evaluate(true, pred, labels)
        assert report.accuracy == pytest.approx(accuracy_score(true, pred))
        assert report.macro_f1 == pytest.approx(f1_score(true, pred, average="macro"))
        assert report.macro_recall == pytest.approx(recall_score(true, pred, average="macro"))
        assert report.confusion == confusion_matrix(true, pred, labels=labels).tolist()
