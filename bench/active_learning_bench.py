"""Does flagging beat random? Learning curves on real human-labeled restaurant sentences.

Data: SemEval-2014 restaurant sentences (sentences.csv; only the release's train split is
present) with "mixed" dropped; the gold sentence label plays the relabeler's answer. A fixed,
stratified 25% of the sentences is the evaluation set (macro-F1 on it after every round);
the rest is the pool.

Learner (said plainly: a cheap stand-in so the loop fits in minutes on 2 CPU cores): the
packaged MiniLM encoder, frozen, mean-pooled sentence embeddings, and a logistic regression
retrained from scratch each round. The reviews to relabel are chosen by tastebud's own
flagging code, against the same number of random picks:

A. Active labeling from a small seed (low-confidence flags): start with a small gold-labeled
   set, the rest unlabeled; each round label the N pool sentences with the highest
   ``find_low_confidence`` priority (1 - top-2 margin / entropy) vs N random ones.
B. Relabeling noisy labels (label-issue flags): every pool sentence starts with a noisy label
   (a share flipped at random, as star-derived labels are wrong for some reviews); each round
   a person "relabels" N sentences (their label becomes gold), chosen by ``rank_label_issues``
   (cleanlab on cross-validated out-of-sample probabilities), then by uncertainty once
   cleanlab finds fewer than N, vs N random ones.

Several seeds; mean and spread per round are printed.

    python bench/active_learning_bench.py [--seeds 3] [--rounds 8] [--per-round 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from scoring_bench import shared_data_dir  # noqa: E402

from pipeline.evaluation.metrics import macro_f1  # noqa: E402
from pipeline.loop.flagging import find_low_confidence, rank_label_issues  # noqa: E402
from store.constants import LABELS  # noqa: E402

SEMEVAL = shared_data_dir() / "semeval2014_restaurants" / "sentences.csv"
LABEL_MAP = {"negative": "negative", "neutral": "neutral", "positive": "positive"}


def embed(texts: list[str], *, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings from the packaged encoder (frozen)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from pipeline.device import resolve_device
    from pipeline.models.loading import default_base_model

    info = resolve_device("cpu")
    tokenizer = AutoTokenizer.from_pretrained(default_base_model())
    model = AutoModel.from_pretrained(default_base_model()).eval()
    order = np.argsort([len(t) for t in texts])
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    dtype = info.autocast_dtype
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def fit(x: np.ndarray, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, C=2.0, class_weight="balanced").fit(x, y)


def model_macro_f1(model, x: np.ndarray, y: np.ndarray) -> float:
    return macro_f1(y, model.predict(x))


def _prob_frame(ids: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"review_id": ids, "p_negative": probs[:, 0], "p_neutral": probs[:, 1], "p_positive": probs[:, 2]})


def pick_uncertain(model, x_pool: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` candidates with the highest low-confidence priority (tastebud's find_low_confidence rule)."""
    probs = model.predict_proba(x_pool[candidates])
    frame = _prob_frame(candidates, probs)
    # find_low_confidence keeps only rows past its thresholds; rank all by the same priority formula
    flagged = find_low_confidence(frame).sort_values("priority", ascending=False)
    chosen = list(flagged["review_id"][:n])
    if len(chosen) < n:
        top2 = np.sort(probs, axis=1)[:, -2:]
        rest = [c for c in candidates[np.argsort(top2[:, 1] - top2[:, 0], kind="stable")] if c not in set(chosen)]
        chosen += rest[: n - len(chosen)]
    return np.array(chosen, dtype=int)


def scenario_active(x_pool, y_pool, x_eval, y_eval, *, seed, seed_size, rounds, per_round):
    """Curves (random, flagged) of macro-F1 vs gold labels used, from a small seed set."""
    rng = np.random.default_rng(seed)
    start = rng.choice(len(y_pool), size=seed_size, replace=False)
    curves = {}
    for strategy in ("random", "flagged"):
        labeled = set(start.tolist())
        curve = []
        for r in range(rounds + 1):
            idx = np.array(sorted(labeled))
            model = fit(x_pool[idx], y_pool[idx])
            curve.append(model_macro_f1(model, x_eval, y_eval))
            if r == rounds:
                break
            pool = np.array([i for i in range(len(y_pool)) if i not in labeled])
            if strategy == "random":
                pick = np.random.default_rng(seed * 1000 + r).choice(pool, size=per_round, replace=False)
            else:
                pick = pick_uncertain(model, x_pool, pool, per_round)
            labeled.update(pick.tolist())
        curves[strategy] = curve
    return curves


def scenario_noisy(x_pool, y_pool, x_eval, y_eval, *, seed, noise, rounds, per_round):
    """Curves (random, flagged) of macro-F1 vs human relabels of a noisily labeled pool."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(seed)
    noisy = y_pool.copy()
    flip = rng.random(len(y_pool)) < noise
    noisy[flip] = (y_pool[flip] + rng.integers(1, 3, flip.sum())) % 3
    curves, found = {}, {}
    for strategy in ("random", "flagged"):
        labels, verified = noisy.copy(), np.zeros(len(y_pool), dtype=bool)
        curve, caught = [], []
        for r in range(rounds + 1):
            model = fit(x_pool, labels)
            curve.append(model_macro_f1(model, x_eval, y_eval))
            if r == rounds:
                break
            open_idx = np.flatnonzero(~verified)
            if strategy == "random":
                pick = np.random.default_rng(seed * 1000 + r).choice(open_idx, size=per_round, replace=False)
            else:
                cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed + r)
                probs = cross_val_predict(fit_estimator(), x_pool, labels, cv=cv, method="predict_proba")
                frame = pd.DataFrame({"review_id": np.arange(len(labels)), "label": [LABELS[k] for k in labels]})
                issues = rank_label_issues(frame, probs, "cross-validated embedding LR")
                ranked = [i for i in issues["review_id"] if not verified[i]][:per_round]
                if len(ranked) < per_round:
                    rest = pick_uncertain(model, x_pool, np.array([i for i in open_idx if i not in set(ranked)]),
                                          per_round - len(ranked))
                    ranked += rest.tolist()
                pick = np.array(ranked, dtype=int)
            caught.append(int((labels[pick] != y_pool[pick]).sum()))
            labels[pick], verified[pick] = y_pool[pick], True
        curves[strategy], found[strategy] = curve, caught
    return curves, found


def fit_estimator():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, C=2.0, class_weight="balanced")


def _print_curves(title: str, x_label: str, xs: list[int], runs: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{x_label:>14} | {'random':>15} | {'flagged':>15} | {'flagged - random':>16}")
    for i, x in enumerate(xs):
        rnd = np.array([run["random"][i] for run in runs])
        flg = np.array([run["flagged"][i] for run in runs])
        diff = flg - rnd
        print(f"{x:>14} | {rnd.mean():.4f} ± {rnd.std():.4f} | {flg.mean():.4f} ± {flg.std():.4f} | "
              f"{diff.mean():+.4f} ± {diff.std():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--seed-size", type=int, default=100, help="scenario A: gold labels to start from")
    parser.add_argument("--noise", type=float, default=0.25, help="scenario B: share of pool labels flipped")
    parser.add_argument("--relabel-per-round", type=int, default=100, help="scenario B: relabels per round")
    args = parser.parse_args()

    frame = pd.read_csv(SEMEVAL, dtype={"sentence_id": str})
    frame = frame[frame["sentence_label"].isin(LABEL_MAP)].reset_index(drop=True)
    y = frame["sentence_label"].map({label: i for i, label in enumerate(LABELS)}).to_numpy()
    from sklearn.model_selection import train_test_split

    pool_idx, eval_idx = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=2014)
    pool, evaluation = np.zeros(len(y), dtype=bool), np.zeros(len(y), dtype=bool)
    pool[pool_idx], evaluation[eval_idx] = True, True
    print(f"SemEval-2014 restaurants without 'mixed': pool {pool.sum()} sentences, evaluation {evaluation.sum()} "
          f"(label counts pool {np.bincount(y[pool]).tolist()}, eval {np.bincount(y[evaluation]).tolist()})")
    started = time.perf_counter()
    x = embed(frame["text"].tolist())
    print(f"embedded {len(frame)} sentences with the frozen packaged encoder in {time.perf_counter() - started:.0f}s "
          f"(load {os.getloadavg()[0]:.1f})")
    x_pool, y_pool, x_eval, y_eval = x[pool], y[pool], x[evaluation], y[evaluation]
    full = model_macro_f1(fit(x_pool, y_pool), x_eval, y_eval)
    print(f"reference: the same learner on the whole gold pool scores macro-F1 {full:.4f}")

    runs_a = [scenario_active(x_pool, y_pool, x_eval, y_eval, seed=s, seed_size=args.seed_size, rounds=args.rounds,
                              per_round=args.per_round) for s in range(args.seeds)]
    _print_curves(f"A. active labeling: start {args.seed_size} gold labels, +{args.per_round} per round "
                  f"(flagged = low-confidence priority); mean ± sd over {args.seeds} seeds",
                  "gold labels", [args.seed_size + r * args.per_round for r in range(args.rounds + 1)], runs_a)

    runs_b, caught = [], []
    for s in range(args.seeds):
        curves, found = scenario_noisy(x_pool, y_pool, x_eval, y_eval, seed=s, noise=args.noise, rounds=args.rounds,
                                       per_round=args.relabel_per_round)
        runs_b.append(curves)
        caught.append(found)
    _print_curves(f"B. relabeling a pool with {args.noise:.0%} wrong labels, {args.relabel_per_round} relabels per round "
                  f"(flagged = cleanlab label issues); mean ± sd over {args.seeds} seeds",
                  "relabels", [r * args.relabel_per_round for r in range(args.rounds + 1)], runs_b)
    for strategy in ("random", "flagged"):
        per_round = np.mean([c[strategy] for c in caught], axis=0)
        print(f"wrong labels fixed per round ({strategy}): {', '.join(f'{v:.0f}' for v in per_round)} "
              f"(of {args.relabel_per_round} relabeled)")
    print(f"\ntotal time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
