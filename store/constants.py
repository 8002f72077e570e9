"""Fixed vocabularies of the store, one place."""

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
LABEL_TO_ID: dict[str, int] = {name: i for i, name in enumerate(LABELS)}
LABEL_SOURCES: tuple[str, ...] = ("stars", "import", "human")
SPLITS: tuple[str, ...] = ("train", "val", "test")
# Default split proportions (train, val, test): a 10% validation set guards early stopping,
# a 10% frozen test set is what every model is compared on.
DEFAULT_SPLIT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


def label_from_stars(stars: int) -> str:
    """1–2 stars negative, 3 neutral, 4–5 positive (the same rule as ``STARS_LABEL_SQL``)."""
    if stars not in (1, 2, 3, 4, 5):
        raise ValueError(f"stars must be 1-5, got {stars!r}")
    return LABELS[0] if stars <= 2 else LABELS[1] if stars == 3 else LABELS[2]


STARS_LABEL_SQL = (
    "CASE WHEN {col} <= 2 THEN 'negative' WHEN {col} = 3 THEN 'neutral' ELSE 'positive' END"
)

# --- dashboard analytics (store/trends.py, store/terms.py) ---
# Periods before the current one whose pooled negative share is a trend's baseline.
SHIFT_BASELINE_PERIODS = 6
# Fewest reviews a period needs before it can be marked as a sudden shift.
SHIFT_MIN_REVIEWS = 15
# Fewest reviews the baseline periods need together before any period is compared with them.
SHIFT_MIN_BASELINE_REVIEWS = 45
# |z| (two-proportion test against the baseline) that marks a shift; high because every restaurant's
# every week is tested, and at 3 a 100k-review demo store showed a dozen spurious shifts.
SHIFT_MIN_Z = 4.0
# The absolute change in negative share a shift must also reach (big stores make tiny wiggles significant).
SHIFT_MIN_DELTA = 0.15
# A restaurant whose first review comes this many days after the store's first review is marked new...
NEW_RESTAURANT_AFTER_DAYS = 60
# ...if that delay is also this many times its mean gap between reviews (a quiet place starts late by chance).
NEW_RESTAURANT_GAP_FACTOR = 5.0
# Reviews sampled per class (negative, positive) for distinguishing terms: bounds the cost at any store size.
TERMS_SAMPLE_PER_CLASS = 4000
# Rows per sampling block for distinguishing terms (DuckDB's vector size: a skipped block's texts are never read).
TERMS_BLOCK_ROWS = 2048
# Fewest blocks the terms sample is drawn from, so it spans the store rather than a few days of it.
TERMS_MIN_BLOCKS = 40
# A term must occur at least this many times in the sample to be ranked.
TERMS_MIN_COUNT = 5

# --- review dates as the reads see them ---
# Only a direct write can store an infinite, BC or year-9999 review date (the importer rejects them as
# date_out_of_range); reads treat dates outside this range as missing, so one odd row can neither
# break a chart nor stretch its date range over millennia.
READ_DATE_MIN = "1900-01-01"
READ_DATE_MAX = "2200-01-01"
# ``reviews`` with implausible dates read as NULL; use it in place of the table in read queries.
DATED_REVIEWS_SQL = (
    "(SELECT * REPLACE (CASE WHEN created_at >= TIMESTAMP '" + READ_DATE_MIN + "' AND created_at < TIMESTAMP '"
    + READ_DATE_MAX + "' THEN created_at END AS created_at) FROM reviews)"
)
