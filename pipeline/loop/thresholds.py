"""Every threshold of flagging and round promotion, one line of why each.

Priorities of all flag reasons are on a 0-1 scale, so one queue ordered by priority mixes
the reasons fairly: roughly "how likely is it that the current label or the model is wrong".
"""

# --- low confidence --------------------------------------------------------------------
# Flag when the top two class probabilities are closer than this (the model is torn between two classes).
LOW_CONFIDENCE_MAX_MARGIN = 0.20
# ... or when the prediction's entropy is at least this fraction of the 3-class maximum (torn between all three).
LOW_CONFIDENCE_MIN_NORMALIZED_ENTROPY = 0.90

# --- disagreement ------------------------------------------------------------------------
# Flag when the champion and another model pick different classes and their distributions are at
# least this far apart (total variation distance), i.e. at least one of them is fairly sure.
DISAGREEMENT_MIN_DISTANCE = 0.30

# --- rating contradicts text ---------------------------------------------------------------
# Star ratings at or above this count as a positive rating (4-5 stars).
CONTRADICTION_POSITIVE_MIN_STARS = 4
# Star ratings at or below this count as a negative rating (1-2 stars).
CONTRADICTION_NEGATIVE_MAX_STARS = 2
# The model must give the opposite class at least this probability: confident, not merely unsure.
CONTRADICTION_MIN_OPPOSITE_PROB = 0.70

# --- sarcasm ---------------------------------------------------------------------------------------
# A 1-2 star review with irony markers is a sarcasm candidate when the model gives "positive" at least
# this probability (or ranks it above "negative"): the praise words fooled it.
SARCASM_MIN_POSITIVE_PROB = 0.40

# --- likely label errors (cleanlab) -----------------------------------------------------------
# Folds of the cross-validated TF-IDF + logistic regression that gives out-of-sample
# probabilities for train rows (the champion trained on them, so its own are overconfident).
LABEL_ISSUE_CV_FOLDS = 5
# At most this many train rows go into the cross-validation (a seeded sample), bounding time and memory.
LABEL_ISSUE_MAX_TRAIN_ROWS = 50_000
# cleanlab needs a few examples of every class per fold; below this per class we skip the check.
LABEL_ISSUE_MIN_PER_CLASS = 10

# --- emerging terms ------------------------------------------------------------------------------
# "Recent" is the last this many days before the newest review (not the wall clock, so old imports work).
EMERGING_WINDOW_DAYS = 60
# A term must appear in at least this many recent reviews: rarer terms are noise.
EMERGING_MIN_RECENT_COUNT = 5
# Its smoothed share of recent reviews must be at least this many times its share before.
EMERGING_MIN_LIFT = 3.0
# Add-k smoothing of both shares, so a term never seen before gets a finite lift.
EMERGING_SMOOTHING = 1.0
# Family-wise false-alarm rate: a term's recent count must be this unlikely under its earlier rate
# (Poisson tail), Bonferroni-divided by the number of terms tested; thousands of phrase pairs are
# tested per run, and template-like text produces many 5-vs-1 flukes that lift alone lets through.
EMERGING_FAMILY_ALPHA = 0.01
# The model's mean uncertainty (1 - top-2 margin) on the term's recent reviews must reach this.
EMERGING_MIN_MEAN_UNCERTAINTY = 0.50
# A term at most this many earlier reviews used, now in at least EMERGING_NOVEL_MIN_COUNT recent ones,
# is new to the model (a place or dish it never learned) and is flagged even where the model sounds sure.
EMERGING_NOVEL_MAX_PRIOR = 0
EMERGING_NOVEL_MIN_COUNT = 10
# Windows scanned per run at most, the newest first (a store imported at once never
# had its "recent" window when a term first appeared); each is compared with everything before it.
EMERGING_LOOKBACK_WINDOWS = 6
# At most this many terms per flagging run, the highest scoring first.
EMERGING_MAX_TERMS = 10
# Flag this many of each term's reviews: the ones the model is least sure about.
EMERGING_SAMPLE_PER_TERM = 5
# Compare against at most this many earlier reviews (a seeded sample) to bound memory.
EMERGING_MAX_PRIOR_DOCS = 50_000
# At most this many recent reviews are read for term counting.
EMERGING_MAX_RECENT_DOCS = 50_000

# --- text changed on re-import ------------------------------------------------------------------------
# A human label was retracted because its text changed: nobody has read the new text, so it goes first.
TEXT_CHANGED_PRIORITY = 1.0

# --- aspects against the overall label ---------------------------------------------------------------
# An aspect counts against a review's overall label when the aspect model is this sure the review speaks of
# it and of the opposite polarity: p_present * p_polarity (e.g. 0.9 * 0.8).
ASPECT_DISAGREEMENT_MIN_CONFIDENCE = 0.7

# --- queue size ------------------------------------------------------------------------------------
# New flags per reason per run at most, highest priority first, so one noisy reason cannot swamp the queue.
MAX_NEW_FLAGS_PER_REASON = 200

# --- promotion ---------------------------------------------------------------------------------------
# Paired bootstrap resamples of the test set for the macro-F1 difference.
BOOTSTRAP_RESAMPLES = 1000
# Two-sided confidence level of the bootstrap interval.
BOOTSTRAP_CONFIDENCE = 0.95
# Promote only when the interval's lower bound of (challenger - champion) macro-F1 exceeds this.
PROMOTION_MIN_GAIN = 0.0
