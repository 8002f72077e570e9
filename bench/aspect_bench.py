"""Aspect quality on SemEval-2014 restaurants (train v2): repeated splits, ours vs TF-IDF + LR in one run.

Each fold holds out a random 20% of the shared train sentences as its test set and 10% of the rest as
validation, trains the product's aspect model (:func:`pipeline.aspects.fit.fit_aspects`, the options
``tastebud train --task aspects`` uses by default unless overridden here) and the TF-IDF + LR baseline on
the same sentences, and prints detection micro-F1 and polarity accuracy (3-way, conflict set aside) for
both. The official SemEval test set is not here; these figures estimate it.

    PYTHONPATH=. python bench/aspect_bench.py --folds 3 [--epochs N --lr X --batch-size N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.aspects.baseline import TfidfAspects  # noqa: E402
from pipeline.aspects.fit import fit_aspects, predict_aspects  # noqa: E402
from pipeline.aspects.metrics import aspect_metrics, headline  # noqa: E402
from pipeline.aspects.model import TARGET_OF  # noqa: E402
from pipeline.aspects.train import aspect_train_config  # noqa: E402
from pipeline.device import resolve_device  # noqa: E402
from pipeline.models.loading import default_base_model  # noqa: E402
from store.aspects import DEFAULT_ASPECTS  # noqa: E402

DATA = Path(os.environ.get("TASTEBUD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def load_semeval() -> tuple[list[str], np.ndarray]:
    path = DATA / "semeval2014_restaurants" / "aspect_categories.csv"
    if not path.exists():
        sys.exit(f"no SemEval data at {path}")
    rows = pd.read_csv(path, dtype={"sentence_id": str})
    rows = rows[rows["split"] == "train"]
    wide = rows.pivot_table(index=["sentence_id", "text"], columns="category", values="polarity", aggfunc="first")
    wide = wide.reindex(columns=list(DEFAULT_ASPECTS)).astype(object).fillna("absent").reset_index()
    targets = np.stack([wide[a].map(TARGET_OF).to_numpy() for a in DEFAULT_ASPECTS], axis=1).astype(np.int64)
    return wide["text"].tolist(), targets


# The official test split's counts (its README: category mentions, both splits' counts minus the train rows
# here; category polarities). Its mix differs from a random fold of train: more food (the easiest aspect),
# less anecdotes/miscellaneous (the hardest), more positive and less neutral (the hardest polarity), so a
# fold's figures are also reported re-weighted to it.
OFFICIAL_TEST_MENTIONS = {"food": 418, "anecdotes/miscellaneous": 234, "service": 172, "ambience": 118, "price": 83}
OFFICIAL_TEST_POLARITIES = {"negative": 222, "neutral": 94, "positive": 657}


def test_mix_estimate(targets: np.ndarray, p_m: np.ndarray, p_pol: np.ndarray, aspects: list[str]) -> tuple[float, float]:
    """(detection micro-F1, polarity accuracy) of a fold re-weighted to the official test's mix.

    Detection: per aspect, TP / FP / FN are weighted by (test mentions / fold mentions), so each aspect's
    error rates are kept and only their weight changes. Polarity: each (aspect, gold polarity) cell's
    accuracy is kept and the cells are weighted by iterative proportional fitting (raking) of the fold's
    counts to both of the test's margins, its aspect mentions and its polarities (the joint is not
    published). An estimate of the official figure, not a measurement of it.
    """
    index = [a for a in aspects if a in OFFICIAL_TEST_MENTIONS]
    cols = [aspects.index(a) for a in index]
    gold, pred = targets[:, cols] >= 1, p_m[:, cols] >= 0.5
    support = gold.sum(axis=0)
    w = np.array([OFFICIAL_TEST_MENTIONS[a] for a in index]) / np.maximum(support, 1)
    tp, fp, fn = ((gold & pred).sum(0) * w).sum(), ((~gold & pred).sum(0) * w).sum(), ((gold & ~pred).sum(0) * w).sum()
    det = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    count, correct = np.zeros((len(cols), 3)), np.zeros((len(cols), 3))
    guess = p_pol[:, cols].argmax(-1)
    for i, c in enumerate(cols):
        for k in range(3):
            rows = targets[:, c] == k + 1
            count[i, k], correct[i, k] = rows.sum(), (guess[rows, i] == k).sum()
    if not count.sum():
        return det, 0.0
    polarity_margin = np.array(list(OFFICIAL_TEST_POLARITIES.values()), dtype=float)
    aspect_margin = np.array([OFFICIAL_TEST_MENTIONS[a] for a in index], dtype=float)
    aspect_margin *= polarity_margin.sum() / aspect_margin.sum()
    weight = count.copy()
    for _ in range(100):
        weight *= (aspect_margin / np.maximum(weight.sum(1), 1e-12))[:, None]
        weight *= (polarity_margin / np.maximum(weight.sum(0), 1e-12))[None, :]
    accuracy = correct / np.maximum(count, 1)
    return det, float((weight * accuracy).sum() / weight.sum())


def _mixed(ours: tuple, other: tuple, mix: dict) -> tuple:
    w_m, w_p = mix["mention"], mix["polarity"]
    return w_m * ours[0] + (1 - w_m) * other[0], w_p * ours[1] + (1 - w_p) * other[1]


def _fit_mix(targets: np.ndarray, ours: tuple, other: tuple, aspects: list[str]) -> dict:
    """The weights of ours (0-1, step 0.1) that maximise validation detection micro-F1 and polarity accuracy."""
    grid = np.round(np.arange(0.0, 1.01, 0.1), 2)
    best_m = max(grid, key=lambda w: aspect_metrics(targets, *_mixed(ours, other, {"mention": w, "polarity": 1.0}),
                                                   aspects)["detection"]["micro_f1"])
    best_p = max(grid, key=lambda w: aspect_metrics(targets, *_mixed(ours, other, {"mention": 1.0, "polarity": w}),
                                                   aspects)["polarity"]["accuracy"] or 0.0)
    return {"mention": float(best_m), "polarity": float(best_p)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--first-fold", type=int, default=0)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--head", choices=("mean", "cls", "attention", "tokens"))
    parser.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: never stop early)")
    parser.add_argument("--layer-lr-decay", type=float)
    parser.add_argument("--head-lr-multiplier", type=float)
    parser.add_argument("--seed", type=int, help="training seed (head initialisation, batch order); the folds stay")
    parser.add_argument("--base-model", help="encoder to fine-tune (HF id or local path; default: the packaged MiniLM)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                        help="training precision (default auto: bf16 on a CPU with AMX or a GPU that has it, else fp32)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--save-predictions", type=Path,
                        help="directory for each fold's validation and test probabilities (NPZ), for post-hoc study")
    args = parser.parse_args()
    texts, targets = load_semeval()
    overrides = {k: v for k, v in {"epochs": args.epochs, "learning_rate": args.lr, "batch_size": args.batch_size,
                                   "max_length": args.max_length, "head": args.head,
                                   "early_stopping_patience": args.patience, "layer_lr_decay": args.layer_lr_decay,
                                   "head_lr_multiplier": args.head_lr_multiplier, "seed": args.seed,
                                   "precision": args.precision}.items() if v is not None}
    config = aspect_train_config(**overrides)
    aspects = list(DEFAULT_ASPECTS)
    info = resolve_device(config.device)
    print(f"SemEval-2014 restaurants train: {len(texts)} sentences; device {info.name}; load {os.getloadavg()}")
    print(f"config: {config.head} head, lr {config.learning_rate:g}, batch {config.batch_size}, epochs {config.epochs}, "
          f"max_length {config.max_length}, patience {config.early_stopping_patience}, layer lr decay "
          f"{config.layer_lr_decay:g}, output layer lr x{config.head_lr_multiplier:g}, seed {config.seed}, precision {config.precision}")
    results = []
    for fold in range(args.first_fold, args.first_fold + args.folds):
        rng = np.random.default_rng(1000 + fold)
        order = rng.permutation(len(texts))
        n_test = len(texts) // 5
        test, rest = order[:n_test], order[n_test:]
        n_val = len(rest) // 10
        val, train = rest[:n_val], rest[n_val:]
        pick = lambda idx: [texts[i] for i in idx]  # noqa: E731
        t0 = time.perf_counter()
        baseline = TfidfAspects(aspects).fit(pick(train), targets[train])
        b_m, b_pol = baseline.predict(pick(test))
        base = aspect_metrics(targets[test], b_m, b_pol, aspects)
        t_base = time.perf_counter() - t0
        t0 = time.perf_counter()
        fitted = fit_aspects(pick(train), targets[train], pick(val), targets[val], aspects, config,
                             base_model=args.base_model or default_base_model(), log=lambda m: print("  " + m, flush=True))
        t_fit = time.perf_counter() - t0
        p_m, p_pol, _ = predict_aspects(fitted.model, fitted.tokenizer, pick(test), max_length=config.max_length)
        ours = aspect_metrics(targets[test], p_m, p_pol, aspects)
        # A post-hoc mix with TF-IDF + LR (not in the product): weights chosen on validation, read on test.
        v_m, v_pol, _ = predict_aspects(fitted.model, fitted.tokenizer, pick(val), max_length=config.max_length)
        bv_m, bv_pol = baseline.predict(pick(val))
        mix = _fit_mix(targets[val], (v_m, v_pol), (bv_m, bv_pol), aspects)
        mixed = aspect_metrics(targets[test], *_mixed((p_m, p_pol), (b_m, b_pol), mix), aspects)
        if args.save_predictions:
            args.save_predictions.mkdir(parents=True, exist_ok=True)
            np.savez(args.save_predictions / f"fold{fold}.npz", val_targets=targets[val], val_m=v_m, val_pol=v_pol,
                     test_targets=targets[test], test_m=p_m, test_pol=p_pol)
        per_aspect = ", ".join(f"{a} {ours['detection']['per_aspect'][a]['f1']:.3f}/"
                               f"{ours['polarity']['per_aspect'][a]['accuracy'] or 0:.3f}" for a in aspects)
        print(f"fold {fold}: ours per aspect (detection F1 / polarity accuracy): {per_aspect}")
        mix_det, mix_pol = test_mix_estimate(targets[test], p_m, p_pol, aspects)
        base_det, base_pol = test_mix_estimate(targets[test], b_m, b_pol, aspects)
        print(f"fold {fold}: weighted to the official test's mix: ours detection {mix_det:.3f}, polarity "
              f"{mix_pol:.3f}; tfidf+lr {base_det:.3f}, {base_pol:.3f}")
        print(f"fold {fold}: mixed    {headline(mixed)}  [weights {mix}]")
        print(f"fold {fold}: ours     {headline(ours)}  [{t_fit:.0f} s]")
        print(f"fold {fold}: tfidf+lr {headline(base)}  [{t_base:.0f} s]", flush=True)
        results.append({"fold": fold, "n_train": len(train), "n_val": len(val), "n_test": len(test),
                        "test_mix": {"ours": {"detection_f1": mix_det, "polarity_accuracy": mix_pol},
                                     "tfidf": {"detection_f1": base_det, "polarity_accuracy": base_pol}},
                        "ours": {"detection_f1": ours["detection"]["micro_f1"],
                                 "polarity_accuracy": ours["polarity"]["accuracy"],
                                 "polarity_macro_f1": ours["polarity"]["macro_f1"], "seconds": round(t_fit, 1),
                                 "threshold": fitted.threshold, "epochs": len(fitted.history)},
                        "mixed": {"detection_f1": mixed["detection"]["micro_f1"],
                                  "polarity_accuracy": mixed["polarity"]["accuracy"],
                                  "polarity_macro_f1": mixed["polarity"]["macro_f1"], "weights": mix},
                        "tfidf": {"detection_f1": base["detection"]["micro_f1"],
                                  "polarity_accuracy": base["polarity"]["accuracy"],
                                  "polarity_macro_f1": base["polarity"]["macro_f1"], "seconds": round(t_base, 1)}})
    for who in ("ours", "tfidf", "mixed"):
        for key in ("detection_f1", "polarity_accuracy", "polarity_macro_f1"):
            values = np.array([r[who][key] for r in results])
            print(f"{who:6s} {key:18s} {values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:.4f}  "
                  f"({', '.join(f'{v:.4f}' for v in values)})")
    for who in ("ours", "tfidf"):
        for key in ("detection_f1", "polarity_accuracy"):
            values = np.array([r["test_mix"][who][key] for r in results])
            print(f"{who:6s} {key:18s} {values.mean():.4f} (weighted to the official test's mix)")
    print(f"load average at the end: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"config": config.to_dict(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
