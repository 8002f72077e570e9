"""Find hard cases worth a person's time and queue them as flags.

Five reasons, each from stored predictions of the champion (score first):

- ``low_confidence``: the top two classes are close, or the distribution is nearly flat.
- ``disagreement``: the champion and another scored model (a challenger or a baseline)
  pick different classes with clearly different distributions.
- ``rating_contradicts_text``: 4-5 stars but confidently negative text, or 1-2 stars but
  confidently positive (sarcasm, wrong-restaurant reviews, star slips).
- ``label_issue``: cleanlab's ``find_label_issues`` on out-of-sample probabilities. For val,
  test and unsplit rows the champion's own predictions are out-of-sample (it trained on the
  train split only). For train rows they are not (a model is overconfident on what it
  memorised, which hides exactly the label errors we look for), so train rows get
  probabilities from a cross-validated TF-IDF + logistic regression: cheap, independent of
  the champion, and every row is predicted by a model that never saw it.
- ``emerging_term``: words or phrases much more frequent in the last weeks than before
  (smoothed lift, minimum count, and a Poisson tail test against the earlier rate,
  Bonferroni-corrected over every term tested) on whose reviews the model is unsure, e.g. a new food hall;
  a few of each term's least certain reviews are flagged and the term recorded.
- ``aspect_disagreement``: the aspect champion's predictions contradict the review's overall label
  (a positive review with a confidently negative service mention; a negative one praising everything).

Thresholds live in :mod:`pipeline.loop.thresholds`. Flags are only added: a review flagged for a
reason before (open, resolved or dismissed), or already labeled by a person, is skipped.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

import numpy as np
import pandas as pd

from pipeline.loop import thresholds as T
from pipeline.loop.scoring import resolve_model_id
from pipeline.jobs import JobReporter
from store.constants import LABEL_TO_ID, LABELS
from store.db import DbPath, connect, transaction
from store.errors import TastebudError
from store.flags import (
    FLAG_REASONS,
    fetch_aspect_flag_inputs,
    fetch_disagreements,
    fetch_flag_inputs,
    fetch_flagged_keys,
    fetch_label_inputs,
    fetch_review_texts,
    fetch_texts_between,
    insert_flags,
    newest_review_time,
    oldest_review_time,
)
from store.aspects import MENTION_THRESHOLD
from store.models import get_champion, get_model
from store.model_health import record_term_scan
from store.predictions import scored_model_ids

PROB_COLUMNS = ["p_negative", "p_neutral", "p_positive"]
_CANDIDATE_COLUMNS = ["review_id", "reason", "priority", "term", "detail"]


def _probs(frame: pd.DataFrame) -> np.ndarray:
    return frame[PROB_COLUMNS].to_numpy(dtype=np.float64)


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - (top probability - second probability): 0 for a sure prediction, 1 for a tie."""
    top2 = np.sort(probs, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy divided by its maximum, log(number of classes): 0 sure, 1 uniform."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1) / math.log(probs.shape[1])


def _candidates(review_ids, reason: str, priority, details, terms=None) -> pd.DataFrame:
    n = len(review_ids)
    return pd.DataFrame(
        {
            "review_id": list(review_ids),
            "reason": [reason] * n,
            "priority": np.round(np.asarray(priority, dtype=float), 4),
            "term": list(terms) if terms is not None else [None] * n,
            "detail": list(details),
        },
        columns=_CANDIDATE_COLUMNS,
    )


def find_low_confidence(inputs: pd.DataFrame) -> pd.DataFrame:
    """Reviews whose prediction has a small top-2 margin or a high entropy.

    Args:
        inputs: review_id and p_negative, p_neutral, p_positive.

    Returns:
        Flag candidates (review_id, reason, priority, term, detail); priority = max(1 - margin,
        normalized entropy).

    Example:
        >>> find_low_confidence(pd.DataFrame({"review_id": ["a"], "p_negative": [0.4],
        ...     "p_neutral": [0.35], "p_positive": [0.25]})).review_id.tolist()
        ['a']
    """
    probs = _probs(inputs)
    margin = 1.0 - uncertainty(probs)
    entropy = normalized_entropy(probs)
    hit = (margin < T.LOW_CONFIDENCE_MAX_MARGIN) | (entropy >= T.LOW_CONFIDENCE_MIN_NORMALIZED_ENTROPY)
    details = [{"margin": round(float(m), 4), "entropy": round(float(e), 4)} for m, e in zip(margin[hit], entropy[hit])]
    return _candidates(inputs["review_id"][hit], "low_confidence", np.maximum(1 - margin, entropy)[hit], details)


def find_rating_contradictions(inputs: pd.DataFrame) -> pd.DataFrame:
    """Reviews whose star rating says the opposite of a confident prediction.

    Args:
        inputs: review_id, stars and p_negative, p_neutral, p_positive.

    Returns:
        Flag candidates; priority = the probability of the class opposite to the rating.

    Example:
        >>> find_rating_contradictions(pd.DataFrame({"review_id": ["a"], "stars": [5],
        ...     "p_negative": [0.9], "p_neutral": [0.05], "p_positive": [0.05]})).priority.tolist()
        [0.9]
    """
    stars = pd.to_numeric(inputs["stars"], errors="coerce").to_numpy()
    positive_rating = stars >= T.CONTRADICTION_POSITIVE_MIN_STARS
    negative_rating = stars <= T.CONTRADICTION_NEGATIVE_MAX_STARS
    opposite = np.where(positive_rating, inputs["p_negative"], np.where(negative_rating, inputs["p_positive"], 0.0))
    hit = (positive_rating | negative_rating) & (opposite >= T.CONTRADICTION_MIN_OPPOSITE_PROB)
    details = [
        {"stars": int(s), "predicted": "negative" if s >= T.CONTRADICTION_POSITIVE_MIN_STARS else "positive",
         "probability": round(float(p), 4)}
        for s, p in zip(stars[hit], opposite[hit])
    ]
    return _candidates(inputs["review_id"][hit], "rating_contradicts_text", opposite[hit], details)


_IRONY = re.compile("|".join([
    r"\b(?:oh|ah|well|gee),? (?:great|wonderful|fantastic|perfect|joy|wow|sure|lovely|brilliant)\b",
    r"\bjust what (?:i|we) (?:wanted|needed|was hoping for|were hoping for)\b",
    r"\bif you (?:enjoy|like|love) (?:being|waiting|paying|eating)\b",
    r"\bsaid no ?(?:one|body)\b", r"\b(?:10|ten) out of (?:10|ten)\b", r"\byeah,? right\b",
    r"\bthanks for nothing\b", r"\bwhat a (?:treat|joy|delight|surprise)\b",
    r"\b(?:sure|of course),? (?:i|we) (?:love|adore|enjoy)\b", r"\bimpressive,? really\b",
    r"\b(?:truly|real) (?:a )?(?:culinary )?masterpiece\b", r"(?:^|\s)/s\b",
]), re.IGNORECASE)


def irony_markers(text: str) -> list[str]:
    """The irony markers in ``text`` (stock sarcastic phrasings: "oh great", "just what I wanted", ...).

    Example:
        >>> irony_markers("Oh great, another 45-minute wait. Just what I wanted.")
        ['Oh great', 'Just what I wanted']
    """
    return [m.group(0).strip() for m in _IRONY.finditer(text or "")]


def find_sarcasm(inputs: pd.DataFrame, texts: pd.DataFrame) -> pd.DataFrame:
    """Sarcasm candidates: a 1-2 star review whose text carries irony markers and reads positive to the model.

    "Reads positive" means the model gives the positive class at least ``SARCASM_MIN_POSITIVE_PROB``
    (praise words fooled it) or ranks it above negative. The stars say what the reviewer meant; the
    markers say why the words say otherwise.

    Args:
        inputs: review_id, stars, p_* (the champion's predictions).
        texts: review_id, text of the candidate reviews.

    Returns:
        Flag candidates; priority = p_positive, raised by 0.1 per extra marker (capped at 1).
    """
    stars = pd.to_numeric(inputs["stars"], errors="coerce")
    low = inputs[(stars <= T.CONTRADICTION_NEGATIVE_MAX_STARS)
                 & ((inputs["p_positive"] >= T.SARCASM_MIN_POSITIVE_PROB) | (inputs["p_positive"] > inputs["p_negative"]))]
    if low.empty:
        return _candidates([], "sarcasm", [], [])
    merged = low.merge(texts[["review_id", "text"]], on="review_id")
    markers = [irony_markers(t) for t in merged["text"]]
    hit = np.array([bool(m) for m in markers])
    rows = merged[hit]
    priority = np.minimum(1.0, rows["p_positive"].to_numpy(dtype=float) + 0.1 * (np.array([len(m) for m in markers])[hit] - 1))
    details = [{"stars": int(s), "p_positive": round(float(p), 4), "markers": m}
               for s, p, m in zip(rows["stars"], rows["p_positive"], [m for m in markers if m])]
    return _candidates(rows["review_id"], "sarcasm", priority, details)


def rank_label_issues(frame: pd.DataFrame, pred_probs: np.ndarray, source: str) -> pd.DataFrame:
    """Rows whose given label cleanlab considers an error, as flag candidates (worst first).

    Args:
        frame: review_id and label (negative/neutral/positive) per row.
        pred_probs: out-of-sample (n, 3) probabilities for the same rows.
        source: where the probabilities came from (kept in each flag's detail).

    Returns:
        Candidates with priority = 1 - cleanlab's self-confidence label quality.

    Example:
        >>> rank_label_issues(frame, cross_validated_probs(texts, frame["label"]), "tf-idf")  # doctest: +SKIP
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = frame["label"].map(LABEL_TO_ID).to_numpy()
    # n_jobs=1: cleanlab's default forks a process pool, and a fork taken while the job's other threads
    # (DuckDB, torch, the scoring stages) hold a lock can leave the child stuck on it forever: an import
    # job hung at "flagging" in CI that way. One process is fast enough for the flag queue's sizes.
    issues = find_label_issues(labels, pred_probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")
    rows = frame.iloc[issues]
    details = [
        {"given_label": g, "suggested_label": LABELS[int(pred_probs[i].argmax())],
         "label_quality": round(float(quality[i]), 4), "probabilities": source}
        for i, g in zip(issues, rows["label"])
    ]
    return _candidates(rows["review_id"], "label_issue", 1.0 - quality[issues], details)


def _enough_per_class(labels: pd.Series, minimum: int) -> bool:
    counts = labels.value_counts()
    return all(counts.get(label, 0) >= minimum for label in LABELS)


def cross_validated_probs(texts: list[str], labels: pd.Series, *, folds: int = T.LABEL_ISSUE_CV_FOLDS,
                          seed: int = 0) -> np.ndarray:
    """Out-of-sample (n, 3) probabilities from a cross-validated TF-IDF + logistic regression.

    Example:
        >>> cross_validated_probs(texts, labels).shape  # doctest: +SKIP
        (1200, 3)
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000),
        LogisticRegression(max_iter=1000, class_weight="balanced"),
    )
    y = labels.map(LABEL_TO_ID).to_numpy()
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, texts, y, cv=cv, method="predict_proba")


def find_label_issues(inputs: pd.DataFrame, train_texts: pd.DataFrame | None) -> tuple[pd.DataFrame, dict]:
    """Likely label errors among non-human labels, by cleanlab on out-of-sample probabilities.

    Args:
        inputs: review_id, split, label, label_source, p_* (the champion's predictions).
        train_texts: review_id, text of (a sample of) the train rows, or None to skip them.

    Returns:
        (flag candidates with priority = 1 - cleanlab's self-confidence label quality,
        a note per group saying what was checked or why it was skipped).

    Example:
        >>> candidates, notes = find_label_issues(inputs, train_texts)  # doctest: +SKIP
    """
    labeled = inputs[inputs["label"].notna() & (inputs["label_source"] != "human")]
    notes, parts = {}, []
    held_out = labeled[labeled["split"] != "train"]
    if _enough_per_class(held_out["label"], T.LABEL_ISSUE_MIN_PER_CLASS):
        parts.append(rank_label_issues(held_out, _probs(held_out), "champion (held-out rows)"))
        notes["held_out"] = f"{len(held_out)} val/test/unsplit rows checked with the champion's predictions"
    else:
        notes["held_out"] = f"skipped: fewer than {T.LABEL_ISSUE_MIN_PER_CLASS} held-out rows of some class"
    if train_texts is not None and len(train_texts):
        train = train_texts.merge(labeled[["review_id", "label"]], on="review_id")
        if _enough_per_class(train["label"], max(T.LABEL_ISSUE_MIN_PER_CLASS, T.LABEL_ISSUE_CV_FOLDS)):
            probs = cross_validated_probs(train["text"].tolist(), train["label"])
            parts.append(rank_label_issues(train, probs, "cross-validated tf-idf + logistic regression"))
            notes["train"] = f"{len(train)} train rows checked with {T.LABEL_ISSUE_CV_FOLDS}-fold TF-IDF+LR"
        else:
            notes["train"] = f"skipped: fewer than {T.LABEL_ISSUE_MIN_PER_CLASS} train rows of some class"
    parts = [p for p in parts if not p.empty]
    return (pd.concat(parts, ignore_index=True) if parts else _candidates([], "label_issue", [], [])), notes


def find_emerging_terms(
    recent: pd.DataFrame, prior: pd.DataFrame, inputs: pd.DataFrame, *, stats: dict | None = None,
    skip_terms: frozenset[str] = frozenset(),
) -> tuple[pd.DataFrame, list[dict]]:
    """Terms whose share of recent reviews jumped, on whose reviews the model is unsure or that are wholly new.

    A significant, lifted term is chosen when the model's mean uncertainty on its reviews reaches
    ``EMERGING_MIN_MEAN_UNCERTAINTY``, or when it is novel: at most ``EMERGING_NOVEL_MAX_PRIOR``
    earlier reviews used it and at least ``EMERGING_NOVEL_MIN_COUNT`` recent ones do (a new place
    or dish is worth a look even where the model sounds sure: it never learned the name).

    Args:
        recent: review_id, text of the recent window.
        prior: review_id, text of (a sample of) the reviews before it.
        inputs: review_id and p_* of scored reviews (uncertainty comes from these).
        stats: if given, filled with counts saying how far terms got (tested, significant, lifted,
            too_sure, chosen), so a run that found nothing can say why.
        skip_terms: terms already chosen (e.g. in another window).

    Returns:
        (flag candidates: for each chosen term its least certain recent reviews, priority = that
        review's uncertainty; the chosen terms with recent/prior counts, lift and mean uncertainty).

    Example:
        >>> candidates, terms = find_emerging_terms(recent, prior, inputs)  # doctest: +SKIP
        >>> terms[0]["term"]  # doctest: +SKIP
        'krog district'
    """
    from scipy.stats import poisson
    from sklearn.feature_extraction.text import CountVectorizer

    empty = _candidates([], "emerging_term", [], [])
    stats = stats if stats is not None else {}
    stats.update(tested=0, significant=0, lifted=0, too_sure=0, chosen=0)
    if len(recent) < T.EMERGING_MIN_RECENT_COUNT or prior.empty:
        return empty, []
    vectorizer = CountVectorizer(
        binary=True, ngram_range=(1, 2), stop_words="english", token_pattern=r"(?u)\b[^\W\d_][\w'-]+\b",
        min_df=T.EMERGING_MIN_RECENT_COUNT,
    )
    try:
        recent_x = vectorizer.fit_transform(recent["text"].astype(str))
    except ValueError:  # no term reaches the minimum count
        return empty, []
    prior_x = vectorizer.transform(prior["text"].astype(str))
    recent_df = np.asarray(recent_x.sum(axis=0)).ravel()
    prior_df = np.asarray(prior_x.sum(axis=0)).ravel()
    k = T.EMERGING_SMOOTHING
    prior_share = (prior_df + k) / (len(prior) + k)
    lift = ((recent_df + k) / (len(recent) + k)) / prior_share
    # How surprising each recent count is if the term kept its earlier rate; Bonferroni over all terms.
    p_value = poisson.sf(recent_df - 1, prior_share * len(recent))
    names = vectorizer.get_feature_names_out()
    significant = p_value <= T.EMERGING_FAMILY_ALPHA / len(names)
    stats.update(tested=len(names), significant=int(significant.sum()),
                 lifted=int((significant & (lift >= T.EMERGING_MIN_LIFT)).sum()))
    unc = recent[["review_id"]].merge(inputs[["review_id", *PROB_COLUMNS]], on="review_id", how="left")
    u = np.where(unc["p_negative"].notna(), uncertainty(np.nan_to_num(_probs(unc))), np.nan)
    scored = ~np.isnan(u)
    recent_x = recent_x.tocsc()
    terms, chosen_docs, parts = [], [], []
    # Highest lift first; among equal lifts the longer phrase ("krog district" before "krog").
    ngram_len = np.array([name.count(" ") + 1 for name in names])
    for j in np.lexsort((-ngram_len, -lift)):
        if lift[j] < T.EMERGING_MIN_LIFT or len(terms) >= T.EMERGING_MAX_TERMS:
            break
        if not significant[j] or str(names[j]) in skip_terms:
            continue
        docs = recent_x[:, j].nonzero()[0]
        docs = docs[scored[docs]]
        if len(docs) < T.EMERGING_MIN_RECENT_COUNT:
            continue
        mean_u = float(u[docs].mean())
        novel = prior_df[j] <= T.EMERGING_NOVEL_MAX_PRIOR and recent_df[j] >= T.EMERGING_NOVEL_MIN_COUNT
        if mean_u < T.EMERGING_MIN_MEAN_UNCERTAINTY and not novel:
            stats["too_sure"] += 1
            continue
        doc_set = set(docs.tolist())
        # "krog", "district" and "krog district" are one story: keep the first (highest lift) of
        # terms sharing most of their reviews.
        if any(len(doc_set & other) >= 0.8 * min(len(doc_set), len(other)) for other in chosen_docs):
            continue
        chosen_docs.append(doc_set)
        term = str(names[j])
        terms.append({"term": term, "recent_count": int(recent_df[j]), "prior_count": int(prior_df[j]),
                      "lift": round(float(lift[j]), 2), "p_value": float(f"{p_value[j]:.3g}"),
                      "mean_uncertainty": round(mean_u, 4), "novel": bool(novel)})
        sample = docs[np.argsort(-u[docs], kind="stable")[: T.EMERGING_SAMPLE_PER_TERM]]
        details = [{k2: v for k2, v in terms[-1].items() if k2 != "term"}] * len(sample)
        parts.append(_candidates(recent["review_id"].to_numpy()[sample], "emerging_term", u[sample], details,
                                 terms=[term] * len(sample)))
    stats["chosen"] = len(terms)
    return (pd.concat(parts, ignore_index=True) if parts else empty), terms


def emerging_windows(newest, oldest) -> list[tuple]:
    """(start, end) windows of ``EMERGING_WINDOW_DAYS`` ending at ``newest``, stepping back at most
    ``EMERGING_LOOKBACK_WINDOWS`` times but never starting before ``oldest`` + one window (each needs
    earlier reviews to compare with); oldest window first."""
    step = timedelta(days=T.EMERGING_WINDOW_DAYS)
    windows, end = [], newest + timedelta(seconds=1)
    while len(windows) < T.EMERGING_LOOKBACK_WINDOWS and end - step > oldest + step or not windows:
        windows.append((end - step, end))
        end -= step
    return windows[::-1]


def scan_emerging_terms(db: DbPath, inputs: pd.DataFrame) -> tuple[pd.DataFrame, list[dict], dict]:
    """Look for emerging terms in each recent window against everything before it.

    A store imported in one go never had its recent window at the time a term appeared; scanning
    back ``EMERGING_LOOKBACK_WINDOWS`` windows finds it where it began (e.g. a food hall opening
    ten months before the newest review). A term is reported once, in its earliest window.

    Returns:
        (flag candidates, terms found (each with its window), the scan record: windows, counts and
        an ``outcome`` sentence saying what was found, or why nothing).
    """
    empty = _candidates([], "emerging_term", [], [])
    with connect(db, read_only=True) as con:
        newest, oldest = newest_review_time(con), oldest_review_time(con)
    if newest is None:
        return empty, [], {"recent_docs": 0, "prior_docs": 0, "terms": [], "outcome": "no dated reviews to scan"}
    parts, terms, totals, recent_docs, prior_docs = [], [], {}, 0, 0
    windows = emerging_windows(newest, oldest)
    for start, end in windows:
        with connect(db, read_only=True) as con:
            recent = fetch_texts_between(con, start, end, limit=T.EMERGING_MAX_RECENT_DOCS)
            prior = fetch_texts_between(con, None, start, limit=T.EMERGING_MAX_PRIOR_DOCS)
        stats: dict = {}
        found, new_terms = find_emerging_terms(recent, prior, inputs, stats=stats,
                                               skip_terms=frozenset(t["term"] for t in terms))
        for key, value in stats.items():
            totals[key] = totals.get(key, 0) + value
        recent_docs, prior_docs = recent_docs + len(recent), max(prior_docs, len(prior))
        terms += [{**t, "window_start": f"{start:%Y-%m-%d}", "window_end": f"{end:%Y-%m-%d}"} for t in new_terms]
        parts.append(found)
    if terms:
        outcome = "found " + "; ".join(
            f"{t['term']!r} ({t['recent_count']} reviews from {t['window_start']}, {t['prior_count']} before)" for t in terms)
    elif not totals.get("tested"):
        outcome = (f"nothing: no term reached {T.EMERGING_MIN_RECENT_COUNT} reviews in a window, or there were no "
                   "earlier reviews to compare with")
    elif not totals.get("lifted"):
        outcome = (f"nothing: of {totals['tested']:,} terms tested none rose {T.EMERGING_MIN_LIFT:g}x above its earlier "
                   f"rate with family-wise p <= {T.EMERGING_FAMILY_ALPHA:g}")
    else:
        outcome = (f"nothing: {totals['lifted']} terms rose significantly, but the model was sure of their reviews "
                   f"(mean uncertainty below {T.EMERGING_MIN_MEAN_UNCERTAINTY:g}) and none was wholly new")
    parts = [p for p in parts if not p.empty]
    scan = {"window_start": windows[0][0], "window_end": windows[-1][1], "recent_docs": recent_docs,
            "prior_docs": prior_docs, "terms": terms, "outcome": outcome, "windows": len(windows), "counts": totals}
    return (pd.concat(parts, ignore_index=True) if parts else empty), terms, scan


def find_aspect_disagreements(inputs: pd.DataFrame, aspects: pd.DataFrame, aspect_model_id: str) -> pd.DataFrame:
    """Reviews whose aspects contradict their overall label: a positive review with an aspect the aspect
    model confidently hears as negative (great food, slow service, labeled positive), or a negative review
    whose every mentioned aspect is positive. A negative review that praises the food but not the service
    is not flagged: that is what a negative review usually is.

    The overall label is the review's current label (stars, import), else the sentiment model's call;
    neutral reviews are mixed by nature and never flagged here.

    Args:
        inputs: review_id, label, label_source, p_negative, p_neutral, p_positive (the flag run's inputs).
        aspects: review_id, aspect, p_present, p_negative, p_neutral, p_positive, polarity of the aspect
            model's mentioned aspects.
        aspect_model_id: the aspect model (kept in each flag's detail).

    Returns:
        Flag candidates; priority = the most confident contradicting aspect's p_present * p_polarity.

    Example:
        >>> find_aspect_disagreements(inputs, aspects, "asp-1").detail[0]["against"]  # doctest: +SKIP
        [{'aspect': 'service', 'polarity': 'negative', 'confidence': 0.88}]
    """
    empty = _candidates([], "aspect_disagreement", [], [])
    if inputs.empty or aspects.empty:
        return empty
    labeled = inputs["label"].notna()
    predicted = np.asarray(LABELS, dtype=object)[_probs(inputs).argmax(axis=1)]
    overall = pd.DataFrame({"review_id": inputs["review_id"], "overall": inputs["label"].where(labeled, predicted),
                            "overall_from": inputs["label_source"].where(labeled, "prediction")})
    frame = aspects[aspects["polarity"].isin(("negative", "neutral", "positive"))].merge(overall, on="review_id")
    opposite = frame["overall"].map({"positive": "negative", "negative": "positive"})
    frame["confidence"] = frame["p_present"] * np.where(
        opposite == "negative", frame["p_negative"], np.where(opposite == "positive", frame["p_positive"], 0.0))
    frame["against"] = (frame["polarity"] == opposite) & (frame["confidence"] >= T.ASPECT_DISAGREEMENT_MIN_CONFIDENCE)
    # A negative review is contradicted only when nothing it mentions is negative or neutral.
    backed = (frame["polarity"] != opposite).groupby(frame["review_id"]).transform("any")
    hits = frame[frame["against"] & ((frame["overall"] == "positive") | ~backed)]
    if hits.empty:
        return empty
    mentioned = frame[frame["review_id"].isin(hits["review_id"])].groupby("review_id")
    mentioned = {r: dict(zip(g["aspect"], g["polarity"])) for r, g in mentioned}
    ids, priority, details = [], [], []
    for review_id, group in hits.groupby("review_id", sort=True):
        group = group.sort_values("confidence", ascending=False)
        ids.append(review_id)
        priority.append(float(group["confidence"].iloc[0]))
        details.append({
            "aspect_model_id": aspect_model_id, "overall": group["overall"].iloc[0],
            "overall_from": group["overall_from"].iloc[0],
            "against": [{"aspect": a, "polarity": p, "confidence": round(float(c), 4)}
                        for a, p, c in zip(group["aspect"], group["polarity"], group["confidence"])],
            "aspects": mentioned[review_id],
        })
    return _candidates(ids, "aspect_disagreement", priority, details)


def scan_aspect_disagreements(db: DbPath, inputs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Aspect disagreements from the aspect champion's stored predictions (see :func:`find_aspect_disagreements`).

    Reviews whose aspects a person annotated are settled and left out.

    Returns:
        (flag candidates, a note saying what was compared, or why nothing was).
    """
    empty = _candidates([], "aspect_disagreement", [], [])
    with connect(db, read_only=True) as con:
        champion = get_champion(con, task="aspects")
        if champion is None:
            return empty, "no aspect model is promoted: train one with `tastebud train --task aspects`"
        aspect_model_id = champion["model_id"]
        aspects = fetch_aspect_flag_inputs(con, aspect_model_id, min_p_present=MENTION_THRESHOLD)
    if aspects.empty:
        return empty, f"aspect model {aspect_model_id} has no mentioned aspects stored: run `tastebud score`"
    found = find_aspect_disagreements(inputs, aspects, aspect_model_id)
    return found, (f"aspects of {aspects['review_id'].nunique():,} reviews from {aspect_model_id} compared with "
                   "their overall label")


def _drop_known(candidates: pd.DataFrame, known: set[tuple[str, str]], cap: int) -> pd.DataFrame:
    """Remove candidates flagged before, then keep the ``cap`` highest priorities."""
    if candidates.empty:
        return candidates
    keys = zip(candidates["review_id"], candidates["term"].fillna(""))
    fresh = candidates[[key not in known for key in keys]]
    return fresh.sort_values(["priority", "review_id"], ascending=[False, True], kind="stable").head(cap)


def _other_models(db: DbPath, model_id: str) -> list[str]:
    with connect(db, read_only=True) as con:
        others = [m for m in scored_model_ids(con) if m != model_id]
        return [m for m in others if (get_model(con, m) or {}).get("status", "ready") == "ready"]


def flag(
    db: DbPath,
    *,
    model_id: str | None = None,
    reasons: list[str] | None = None,
    reporter: JobReporter | None = None,
) -> dict:
    """Queue flags for every reason from the champion's (or ``model_id``'s) stored predictions.

    Args:
        db: the store.
        model_id: the model whose predictions drive flagging (default: the champion).
        reasons: a subset of FLAG_REASONS (default: all).
        reporter: progress and cancellation.

    Returns:
        {"model_id", "scored_reviews", "inserted": {reason: n}, "candidates": {reason: n},
        "terms": [...emerging terms...], "notes": {...}}.

    Example:
        >>> flag("tastebud.duckdb")["inserted"]["low_confidence"]  # doctest: +SKIP
        37
    """

    reasons = list(reasons or FLAG_REASONS)
    unknown = set(reasons) - set(FLAG_REASONS)
    if unknown:
        raise TastebudError(f"unknown flag reasons: {', '.join(sorted(unknown))}; expected {', '.join(FLAG_REASONS)}")
    reporter = reporter or JobReporter(db, None)
    if model_id is None and "aspect_disagreement" in reasons:
        with connect(db, read_only=True) as con:
            review_champion, aspect_champion = get_champion(con), get_champion(con, task="aspects")
        if review_champion is None and aspect_champion is not None:
            return _flag_aspects_from_labels(db, aspect_champion["model_id"], reporter)
    model_id = resolve_model_id(db, model_id)
    with connect(db, read_only=True) as con:
        inputs = fetch_flag_inputs(con, model_id)
        known = {reason: fetch_flagged_keys(con, reason) for reason in reasons}
    if inputs.empty:
        raise TastebudError(f"model {model_id} has scored no reviews yet: run `tastebud score` first")
    reporter.progress(0.05, f"flagging from {len(inputs):,} predictions of {model_id}", force=True)
    # Reviews a person already labeled are settled: no reason flags them again.
    open_inputs = inputs[inputs["label_source"] != "human"]
    found: dict[str, pd.DataFrame] = {}
    notes: dict = {}
    terms: list[dict] = []
    if "low_confidence" in reasons:
        found["low_confidence"] = find_low_confidence(open_inputs)
    if "rating_contradicts_text" in reasons:
        found["rating_contradicts_text"] = find_rating_contradictions(open_inputs)
    if "disagreement" in reasons:
        others = _other_models(db, model_id)
        with connect(db, read_only=True) as con:
            pairs = fetch_disagreements(con, model_id, others, min_distance=T.DISAGREEMENT_MIN_DISTANCE)
        pairs = pairs[pairs["review_id"].isin(open_inputs["review_id"])]
        details = [{"other_model_id": o, "model_label": a, "other_label": b, "distance": round(float(d), 4)}
                   for o, a, b, d in zip(pairs.other_model_id, pairs.model_label, pairs.other_label, pairs.distance)]
        found["disagreement"] = _candidates(pairs["review_id"], "disagreement", pairs["distance"], details)
        notes["disagreement"] = f"compared with {len(others)} other scored models" if others else \
            "no other model has stored predictions: score a challenger or baseline to compare"
    if "sarcasm" in reasons:
        stars = pd.to_numeric(open_inputs["stars"], errors="coerce")
        low = open_inputs[(stars <= T.CONTRADICTION_NEGATIVE_MAX_STARS)
                          & ((open_inputs["p_positive"] >= T.SARCASM_MIN_POSITIVE_PROB)
                             | (open_inputs["p_positive"] > open_inputs["p_negative"]))]
        with connect(db, read_only=True) as con:
            texts = fetch_review_texts(con, low["review_id"].tolist()) if len(low) else pd.DataFrame(columns=["review_id", "text"])
        found["sarcasm"] = find_sarcasm(low, texts)
    reporter.progress(0.3, "looking for label issues")
    if "label_issue" in reasons:
        train_ids = open_inputs.loc[(open_inputs["split"] == "train") & open_inputs["label"].notna(), "review_id"]
        if len(train_ids) > T.LABEL_ISSUE_MAX_TRAIN_ROWS:
            train_ids = train_ids.sample(T.LABEL_ISSUE_MAX_TRAIN_ROWS, random_state=0)
        with connect(db, read_only=True) as con:
            train_texts = fetch_review_texts(con, train_ids.tolist()) if len(train_ids) else None
        found["label_issue"], notes["label_issue"] = find_label_issues(open_inputs, train_texts)
    if "aspect_disagreement" in reasons:
        found["aspect_disagreement"], notes["aspect_disagreement"] = scan_aspect_disagreements(db, open_inputs)
    reporter.progress(0.7, "looking for emerging terms")
    scan = None
    if "emerging_term" in reasons:
        found["emerging_term"], terms, scan = scan_emerging_terms(db, open_inputs)
        notes["emerging_term"] = scan["outcome"]
    batch = {reason: _drop_known(found[reason], known[reason], T.MAX_NEW_FLAGS_PER_REASON) for reason in found}
    inserted = {}
    with transaction(db) as con:
        for reason, candidates in batch.items():
            inserted[reason] = insert_flags(con, candidates.assign(model_id=model_id)) if len(candidates) else 0
        if scan is not None:
            record_term_scan(con, {**scan, "model_id": model_id, "flagged": inserted.get("emerging_term", 0)})
    reporter.progress(1.0, f"{sum(inserted.values())} new flags", force=True)
    return {
        "model_id": model_id,
        "scored_reviews": len(inputs),
        "inserted": inserted,
        "candidates": {reason: len(frame) for reason, frame in found.items()},
        "terms": terms,
        "notes": notes,
    }


def _flag_aspects_from_labels(db: DbPath, aspect_model_id: str, reporter: JobReporter) -> dict:
    """Flagging in a store with an aspect champion and no review champion: the one reason that needs no
    review model, aspect disagreements, against the reviews' current labels (the other reasons read a
    sentiment model's predictions, and are said to be skipped)."""
    with connect(db, read_only=True) as con:
        inputs = fetch_label_inputs(con)
        known = fetch_flagged_keys(con, "aspect_disagreement")
    reporter.progress(0.05, f"comparing aspects of {aspect_model_id} with {len(inputs):,} current labels", force=True)
    found, note = scan_aspect_disagreements(db, inputs[inputs["label_source"] != "human"])
    batch = _drop_known(found, known, T.MAX_NEW_FLAGS_PER_REASON)
    with transaction(db) as con:
        inserted = insert_flags(con, batch.assign(model_id=aspect_model_id)) if len(batch) else 0
    reporter.progress(1.0, f"{inserted} new flags", force=True)
    skipped = [r for r in FLAG_REASONS if r != "aspect_disagreement"]
    return {
        "model_id": aspect_model_id,
        "scored_reviews": len(inputs),
        "inserted": {"aspect_disagreement": inserted},
        "candidates": {"aspect_disagreement": len(found)},
        "terms": [],
        "notes": {"aspect_disagreement": note + " (no review model: each review's current label)",
                  "skipped": f"no review champion: {', '.join(skipped)} need one (`tastebud train`, or "
                             "`tastebud baselines` and `tastebud promote`)"},
    }


def run_job(db: DbPath, params: dict, reporter: JobReporter) -> dict:
    """Job kind "flag": params model_id, reasons (both optional)."""
    return flag(db, model_id=params.get("model_id"), reasons=params.get("reasons"), reporter=reporter)
