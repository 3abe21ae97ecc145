"""Throughput of the offline classifiers on one core, and their worst case on hostile input.

    .venv/bin/python bench/classify.py [POSTS.csv] [--train LABELLED.csv --label-column complaint] [--seconds 3]

POSTS.csv: any CSV with a `text` column (e.g. ../shared/data/twcs/twcs_first5000.csv); without it,
a few made-up posts are repeated. The trainable model is fitted in memory, never stored: on
LABELLED.csv when given, else on made-up posts. Rates are posts per second of CPU time
(process_time), so other load on a shared machine counts less; hostile inputs are timed wall-clock.
"""

import argparse
import csv
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hubbub.lib.classify import classify  # noqa: E402
from hubbub.lib.severity import severity  # noqa: E402
from hubbub.lib.textmodel import TextModel  # noqa: E402
from hubbub.understanding.combine import combine  # noqa: E402


def understand_default(texts: list[str]) -> list:
    """What the pipeline does per post when the organisation has no trained model."""
    out = []
    for text in texts:
        c = classify(text)
        out.append(combine(c, severity(text, c)).as_json())
    return out


MADE_UP = [
    "@acmeair my flight AC123 has been delayed 4 hours and nobody at the gate knows anything. Never again",
    "Hi @acmebank, how do I change the phone number on my account? The app keeps saying error 500 :(",
    "Huge thanks to @acmeshop for the super quick delivery, the jacket is perfect!! ❤️🙏",
    "@acmetel how much is the unlimited plan? Thinking about switching from my current provider",
    "@acmepower you charged me twice this month. If this isn't refunded by Friday my lawyer will be in touch.",
    "Just landed in Lisbon, sunny and warm. Time for coffee ☕ https://example.com/p/123",
    "@acmecloud the dashboard is not bad at all but the export is really slow today...",
    "@acmeshop still waiting for my refund after three weeks, this is ridiculous",
]
HOSTILE = {
    "100 KB of emoji": "😡" * 100_000,
    "nested markup": "<div><span><a href='x'>" * 5_000 + "text" + "</a></span></div>" * 5_000,
    "100 KB one word": "a" * 100_000,
    "100 KB of punctuation": "!?.,@#" * 17_000,
}
BATCH = 1000


def read_texts(path: Path) -> list[str]:
    # newline="" keeps a bare carriage return inside a quoted post (twcs has one)
    with path.open(encoding="utf-8", newline="") as fh:
        return [row["text"] for row in csv.DictReader(fh) if row.get("text")]


def rate(fn: Callable[[list[str]], object], posts: list[str], seconds: float) -> float:
    done = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        for i in range(0, len(posts), BATCH):
            fn(posts[i : i + BATCH])
        done += len(posts)
    return done / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("posts", type=Path, nargs="?")
    parser.add_argument("--train", type=Path, help="labelled CSV to fit the trainable model on (kept in memory)")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    posts = read_texts(args.posts) if args.posts else MADE_UP * 250
    lengths = sorted(len(p) for p in posts)
    print(f"{len(posts)} posts, median length {lengths[len(lengths) // 2]} characters")

    if args.train:
        with args.train.open(encoding="utf-8", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("text")]
        texts, labels = [r["text"] for r in rows], [r[args.label_column] for r in rows]
    else:
        rng = random.Random(0)
        texts = [f"{rng.choice(MADE_UP)} #{i}" for i in range(400)]
        labels = [str(int("?" in t)) for t in texts]
    t0 = time.process_time()
    model = TextModel().fit(texts, labels)
    fit_s = time.process_time() - t0
    data = model.to_bytes()
    t0 = time.perf_counter()
    model = TextModel.from_bytes(data)
    load_ms = (time.perf_counter() - t0) * 1000
    print(
        f"trainable model: fitted on {len(texts)} posts in {fit_s:.1f} s CPU; {len(data) / 1024:.0f} KB; "
        f"loads in {load_ms:.0f} ms"
    )

    print(f"classify():             {rate(lambda b: [classify(t) for t in b], posts, args.seconds):9,.0f} posts/s")
    print(f"severity():             {rate(lambda b: [severity(t) for t in b], posts, args.seconds):9,.0f} posts/s")
    print(f"understand (default):   {rate(understand_default, posts, args.seconds):9,.0f} posts/s (with severity)")
    print(f"TextModel.predict():    {rate(model.predict, posts, args.seconds):9,.0f} posts/s (batches of {BATCH})")
    known = {t: classify(t) for t in posts}
    print(
        f"  given classify() done: "
        f"{rate(lambda b: model.predict(b, [known[t] for t in b]), posts, args.seconds):9,.0f} posts/s"
    )

    print("worst case, one post (wall clock):")
    for name, text in HOSTILE.items():
        timings = []
        for fn in (classify, severity, lambda t: model.predict([t])):
            t0 = time.perf_counter()
            fn(text)
            timings.append((time.perf_counter() - t0) * 1000)
        print(
            f"  {name:<22} classify {timings[0]:6.2f} ms  severity {timings[1]:6.2f} ms  predict {timings[2]:6.2f} ms"
        )


if __name__ == "__main__":
    main()
