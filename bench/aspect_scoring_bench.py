"""Aspect scoring against review scoring: same reviews, same encoder, same store writes, one run.

Both models are the packaged all-MiniLM-L6-v2 encoder with a fresh head (the cost of scoring does not
depend on what the head learned): a review model (3 outputs, one pass over the review cut at its max
length) and an aspect model (4 outputs per aspect, one pass per sentence, pooled per review). Each is
saved, registered and run through its own `score` path (reader / model / writer stages, store writes
included), alternating, ``--rounds`` times; the figure is reviews per second by each command's own timing.

    PYTHONPATH=. python bench/aspect_scoring_bench.py --n 1000 --rounds 2 [--head tokens|attention|mean]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.aspects.fit import load_aspect_model  # noqa: E402
from pipeline.aspects.scoring import score_aspects  # noqa: E402
from pipeline.device import resolve_device  # noqa: E402
from pipeline.loop.scoring import score  # noqa: E402
from pipeline.models.loading import default_base_model, load_classifier, save_classifier  # noqa: E402
from store import models as model_store  # noqa: E402
from store.aspects import DEFAULT_ASPECTS  # noqa: E402
from store.db import transaction  # noqa: E402
from store.reviews import add_reviews  # noqa: E402
from store.schema import init_store  # noqa: E402

DATA = Path(os.environ.get("TASTEBUD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--head", default="tokens", choices=("mean", "attention", "tokens"),
                        help="the aspect model's head (tokens: the default of `train --task aspects`)")
    args = parser.parse_args()
    source = DATA / "yelp_reviews_10k" / "yelp_dev.csv"
    if not source.exists():
        sys.exit(f"no Yelp data at {source}")
    frame = pd.read_csv(source, nrows=args.n)
    text_col = "text" if "text" in frame.columns else frame.columns[-1]
    reviews = pd.DataFrame({"review_id": [f"y{i:06d}" for i in range(len(frame))],
                            "text": frame[text_col].astype(str), "source": "bench"})
    work = Path(tempfile.mkdtemp(prefix="aspect-score-bench-"))
    db, _ = init_store(work / "bench.duckdb")
    with transaction(db) as con:
        add_reviews(con, reviews, None)
    review_model, tokenizer = load_classifier(default_base_model())
    save_classifier(review_model, tokenizer, work / "review", {"max_length": args.max_length, "truncation": "head"})
    aspect_model, aspect_tok = load_aspect_model(default_base_model(), list(DEFAULT_ASPECTS), head=args.head)
    aspect_model.save_pretrained(work / "aspects")
    aspect_tok.save_pretrained(work / "aspects")
    with transaction(db) as con:
        model_store.register_model(con, model_id="review", kind="finetuned", name="review", path=str(work / "review"),
                                   params={"max_length": args.max_length, "truncation": "head"})
        model_store.register_model(con, model_id="aspects", kind="finetuned", name="aspects", path=str(work / "aspects"),
                                   params={"max_length": args.max_length, "aspects": list(DEFAULT_ASPECTS)},
                                   task="aspects")
    lengths = reviews["text"].str.len()
    print(f"{len(reviews)} Yelp reviews (mean {lengths.mean():.0f} characters); device {resolve_device().name}; "
          f"load {os.getloadavg()}")
    rates: dict[str, list[float]] = {"review": [], "aspects": []}
    for r in range(args.rounds):
        for name in ("review", "aspects"):
            before = os.getloadavg()[0]
            t0 = time.perf_counter()
            if name == "review":
                result = score(db, model_id="review", rescore_all=True)
            else:
                result = score_aspects(db, model_id="aspects", rescore_all=True)
            seconds = time.perf_counter() - t0
            rates[name].append(result["scored"] / seconds)
            print(f"round {r}: {name:8s} {result['scored']} reviews in {seconds:.1f} s = {rates[name][-1]:.1f}/s "
                  f"(load {before:.1f}>{os.getloadavg()[0]:.1f})", flush=True)
    for r in range(args.rounds):
        print(f"round {r}: aspects / review = {rates['aspects'][r] / rates['review'][r]:.2f}")


if __name__ == "__main__":
    main()
