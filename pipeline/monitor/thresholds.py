"""Every threshold of monitoring, one line of why each: shift detection, model health, alerts."""

# --- shift detection (pipeline.monitor.shifts) ---------------------------------------------------
# Trailing baseline length in periods per grain: about two months of days or weeks, half a year of months.
SHIFT_BASELINE_PERIODS = {"day": 56, "week": 8, "month": 6}
# Fewest reviews a period needs before its negative share is tested (fewer say nothing either way).
SHIFT_MIN_REVIEWS = 5
# Fewest reviews the baseline needs together before a period is compared with it.
SHIFT_MIN_BASELINE_REVIEWS = 20
# Cap on how many baseline reviews the beta-binomial trusts: a group's share wanders from week to
# week more than sampling explains (menus, staff, seasons), so a long history must not make a
# modest wiggle look certain. 60 = a baseline share known to roughly +-5 points.
SHIFT_MAX_BASELINE_WEIGHT = 60.0
# Periods pooled by the sustained-shift test (1 turns it off): three weeks of a month-long collapse.
SHIFT_SUSTAIN_PERIODS = 3
# Pseudo-reviews at the store-wide negative share added to every baseline: a thinly reviewed group
# whose few baseline reviews were all positive does not get a baseline of exactly 0%.
SHIFT_BASELINE_PRIOR_REVIEWS = 10.0
# Benjamini-Hochberg false discovery rate over every group, period and test (sentiment and volume).
SHIFT_FDR = 0.05
# The negative share must also move at least this much (absolute) to count: big groups make tiny moves significant.
SHIFT_MIN_DELTA = 0.15
# A period whose raw p-value (alone, or of a window ending there) is below this, with a move of at
# least SHIFT_MIN_DELTA, is kept out of later baselines: looser than the FDR, so a collapse that builds
# up over weeks never seeps into its own baseline (and its recovery is not reported as a drop).
SHIFT_EXCLUDE_FROM_BASELINE_P = 0.01
# Volume: negative-binomial shape; weekly review counts are over-dispersed (variance mu + mu^2 / 10).
VOLUME_DISPERSION = 10.0
# Volume must at least double (or halve) against the baseline's mean per period to count...
VOLUME_MIN_RATIO = 2.0
# ...and differ from it by at least this many reviews (two reviews instead of one is not news).
VOLUME_MIN_CHANGE = 5
# Volume is tested only where the baseline averages at least this many reviews per period.
VOLUME_MIN_BASELINE_MEAN = 3.0

# --- movers (Overview) -----------------------------------------------------------------------------
# Fewest reviews a group needs in the latest period to be listed as a mover.
MOVERS_MIN_REVIEWS = 5
# Movers listed per grouping.
MOVERS_LIMIT = 5

# --- model health (pipeline.monitor.health) --------------------------------------------------------
# A prediction whose top probability is below this counts as low-confidence.
HEALTH_LOW_CONFIDENCE_PROB = 0.60
# Fewest scored reviews a week needs before its health numbers raise alerts (and are tested).
HEALTH_MIN_WEEK_REVIEWS = 20
# Fewest human-labeled reviews a week needs before its human agreement is reported.
HEALTH_MIN_HUMAN_LABELS = 5
# Alert when agreement with star-derived labels falls this far below the model's reference (its median week).
HEALTH_MAX_STAR_AGREEMENT_DROP = 0.15
# Alert when agreement with human labels falls below this.
HEALTH_MIN_HUMAN_AGREEMENT = 0.60
# Alert when the low-confidence share rises this far above the reference.
HEALTH_MAX_LOW_CONFIDENCE_RISE = 0.15
# Alert when the predicted class mix drifts this far from the training mix (Jensen-Shannon distance, base 2).
HEALTH_MAX_CLASS_MIX_JS = 0.20
# Alert when this share of a week's term occurrences is unseen in the champion's training reviews.
HEALTH_MAX_UNSEEN_TERM_SHARE = 0.05
# A term is in the training vocabulary when it occurs in at least this many training reviews.
HEALTH_VOCAB_MIN_DF = 2
# Training reviews read to build the vocabulary at most (a seeded sample).
HEALTH_VOCAB_MAX_TRAIN_DOCS = 50_000
