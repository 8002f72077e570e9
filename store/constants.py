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
