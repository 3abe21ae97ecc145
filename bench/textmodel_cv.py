"""Cross-validated macro-F1 and prediction speed of the trainable model's n-gram weightings.

    .venv/bin/python bench/textmodel_cv.py LABELLED.csv --label-column complaint [--folds 5] [--seeds 0 1 2]
        [--weightings ratio tfidf] [--posts POSTS.csv] [--reproach] [--encoder]

For each seed: stratified k folds (as `hubbub train TASK CSV --cross-validate K --seed S`), a model of
each weighting trained on k-1 folds and scored on the held-out one; nothing is tuned on the held-out
fold, nothing is stored. Prints each fold's macro-F1, mean ± standard deviation over the folds, and,
per weighting, posts/s of TextModel.predict() in batches of 1,000 (CPU time, one core), with and
without classify() given, on POSTS.csv (any CSV with a `text` column) or else the labelled posts.
--encoder adds the pretrained encoder half (hubbub/lib/encoder.py): every post is encoded once, up
front (timed and reported), and each fold's model gets its rows; its predict() speed is then
timed with the encoding included, on the first 300 posts.
"""

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.model_selection import StratifiedKFold  # noqa: E402

from hubbub.lib import encoder  # noqa: E402
from hubbub.lib.classify import classify  # noqa: E402
from hubbub.lib.metrics import evaluate  # noqa: E402
from hubbub.lib.textmodel import WEIGHTINGS, TextModel  # noqa: E402

BATCH = 1000


def read(path: Path, label_column: str | None) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if (r.get("text") or "").strip()]
    texts = [r["text"].strip() for r in rows]
    return texts, [r[label_column].strip() for r in rows] if label_column else []


def rate(model: TextModel, posts: list[str], given: bool, seconds: float = 2.0) -> float:
    known = [classify(t) for t in posts] if given else None
    done = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        for i in range(0, len(posts), BATCH):
            model.predict(posts[i : i + BATCH], known[i : i + BATCH] if known else None)
        done += len(posts)
    return done / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("labelled", type=Path)
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--weightings", nargs="+", choices=list(WEIGHTINGS), default=list(WEIGHTINGS))
    parser.add_argument("--posts", type=Path, help="posts to time predict() on (default: the labelled ones)")
    parser.add_argument("--reproach", action="store_true", help="severity's cues as features (as for severity)")
    parser.add_argument("--encoder", action="store_true", help="average with the pretrained encoder's regression")
    args = parser.parse_args()

    texts, labels = read(args.labelled, args.label_column)
    classes = sorted(set(labels))
    print(f"{len(texts)} posts, labels {', '.join(f'{c}: {labels.count(c)}' for c in classes)}")
    embeddings = None
    if args.encoder:
        t0 = time.process_time()
        embeddings = encoder.load().layer_means(texts)
        spent = time.process_time() - t0
        print(f"encoded {len(texts)} posts in {spent:.0f} s CPU ({len(texts) / spent:.1f} posts/s, loading included)")
    means: dict[str, list[float]] = {w: [] for w in args.weightings}
    for seed in args.seeds:
        folds = list(StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=seed).split(texts, labels))
        for weighting in args.weightings:
            scores = []
            t0 = time.process_time()
            for train, test in folds:
                model = TextModel(weighting=weighting, reproach=args.reproach, encoder=args.encoder)
                model.fit(
                    [texts[i] for i in train],
                    [labels[i] for i in train],
                    embeddings=None if embeddings is None else embeddings[train],
                )
                test_rows = None if embeddings is None else embeddings[test]
                predicted = [p.label for p in model.predict([texts[i] for i in test], embeddings=test_rows)]
                scores.append(evaluate([labels[i] for i in test], predicted, classes).macro_f1)
            mean, sd = statistics.mean(scores), statistics.stdev(scores)
            means[weighting].append(mean)
            print(
                f"seed {seed}  {weighting:<6} macro-F1 {mean:.4f} ± {sd:.4f}  folds "
                + " ".join(f"{s:.4f}" for s in scores)
                + f"  ({time.process_time() - t0:.0f} s CPU)"
            )
    if len(args.seeds) > 1:
        for weighting, values in means.items():
            spread = f"{min(values):.4f}–{max(values):.4f}"
            print(f"{weighting:<6} mean over seeds {statistics.mean(values):.4f} (seed means {spread})")

    posts = read(args.posts, None)[0] if args.posts else texts
    if args.encoder:
        posts = posts[:300]
    for weighting in args.weightings:
        model = TextModel(weighting=weighting, reproach=args.reproach, encoder=args.encoder)
        model.fit(texts, labels, embeddings=embeddings)
        print(
            f"{weighting:<6} predict(): {rate(model, posts, False):7,.0f} posts/s; "
            f"given classify() done: {rate(model, posts, True):7,.0f} posts/s (batches of {BATCH}, {len(posts)} posts)"
        )


if __name__ == "__main__":
    main()
