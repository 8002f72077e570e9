"""Terms that distinguish one sentiment class from the others in a filtered selection of reviews."""

from __future__ import annotations


import duckdb
import pandas as pd

from store.constants import (
    TERMS_BLOCK_ROWS,
    TERMS_MIN_BLOCKS,
    TERMS_MIN_COUNT,
    TERMS_SAMPLE_PER_CLASS,
)

from store.trends import ReviewFilter, SentimentSource, _filter_clause, _sentiment_relation


# Function words that say nothing about sentiment; negations stay because they do.
_STOPWORDS: tuple[str, ...] = tuple(
    """a an the and or of to in on at for with from by as is are was were be been being it its it's this that
    these those i i'm i've we we're our you your he she they them their there here my me us
    have has had do does did so if then than too very just also about into over up out more most
    some any all one two get got go went come came can could would should will what when where which who how
    again back ours am s t""".split()
)


def fetch_distinguishing_terms(
    con: duckdb.DuckDBPyConnection,
    source: SentimentSource,
    flt: ReviewFilter = ReviewFilter(),
    *,
    k: int = 15,
    sample_per_class: int = TERMS_SAMPLE_PER_CLASS,
    class_counts: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """The words that most separate negative from positive reviews in the selection.

    Each class is sampled down to about ``sample_per_class`` reviews, deterministically: every
    stride-th block of ``TERMS_BLOCK_ROWS`` stored rows, then a seeded hash of the id. Words are whitespace
    tokens, lower-cased, stripped of surrounding punctuation. Each word gets the log odds
    ratio of its occurrences among negative vs positive tokens, and that ratio's z-score
    (0.5 added to every cell of the 2x2 table), as in Monroe et al.'s "Fightin' Words". The
    ``k`` highest and ``k`` lowest z-scores among words seen at least ``TERMS_MIN_COUNT``
    times are returned.

    Args:
        class_counts: (negative, positive) reviews in the selection when the caller already
            knows them (the trend summary does); they set the sampling rates, and passing them
            saves a pass over the selection.

    Returns:
        term, side ("negative"/"positive"), negative_count, positive_count, log_odds, z, and
        n_negative, n_positive (reviews sampled per class, the same on every row). Strongest first.

    Example:
        >>> fetch_distinguishing_terms(con, SentimentSource("labels"), k=3).term.tolist()  # doctest: +SKIP
        ['waited', 'rude', 'cold', 'friendly', 'delicious', 'amazing']
    """
    relation, rel_params = _sentiment_relation(source)
    where, where_params = _filter_clause(flt)
    if class_counts is None:
        class_counts = con.execute(
            f"""
            SELECT count(*) FILTER (WHERE s.label = 'negative'), count(*) FILTER (WHERE s.label = 'positive')
            FROM reviews r JOIN {relation} s USING (review_id) WHERE {where}
            """,
            [*rel_params, *where_params],
        ).fetchone()
    n_negative, n_positive = (max(int(n), 1) for n in class_counts)
    # Sample whole blocks of consecutive rows first (every stride-th block): DuckDB then skips
    # the other blocks' texts entirely, which a per-row sample cannot do. Enough blocks stay
    # for the sample to span the store; a seeded hash of the id then caps each class.
    blocks = -(-con.execute("SELECT count(*) FROM reviews").fetchone()[0] // TERMS_BLOCK_ROWS)
    wanted = min(n_negative, n_positive) / max(sample_per_class, 1)
    stride = max(1, min(int(wanted), blocks // TERMS_MIN_BLOCKS))
    sql = f"""
        WITH sample AS (
            SELECT s.label, r.text
            FROM reviews r JOIN {relation} s USING (review_id)
            WHERE (r.rowid // ?) % ? = 0 AND {where} AND s.label IN ('negative', 'positive')
              AND hash(s.review_id || 'terms') % 1000000
                  < 1000000.0 * ? * ? / CASE s.label WHEN 'negative' THEN ? ELSE ? END
        ), sizes AS (
            SELECT count(*) FILTER (WHERE label = 'negative') AS n_neg,
                   count(*) FILTER (WHERE label = 'positive') AS n_pos FROM sample
        ), raw_counts AS (
            -- count raw whitespace tokens first and clean the few thousand distinct ones after:
            -- per-token regular expressions or trims over every review cost several times more
            SELECT token, count(*) FILTER (WHERE label = 'negative') AS neg, count(*) FILTER (WHERE label = 'positive') AS pos
            FROM (SELECT label, unnest(string_split(lower(text), ' ')) AS token FROM sample)
            GROUP BY token
        ), counts AS (
            SELECT trim(token, '.,!?;:"()[]*-') AS term, sum(neg) AS neg, sum(pos) AS pos FROM raw_counts GROUP BY 1
        ), totals AS (
            SELECT sum(neg) AS tok_neg, sum(pos) AS tok_pos FROM counts
        ), scored AS (
            SELECT c.term, c.neg, c.pos, z.n_neg, z.n_pos,
                   ln((c.neg + 0.5) / (t.tok_neg - c.neg + 0.5)) - ln((c.pos + 0.5) / (t.tok_pos - c.pos + 0.5)) AS log_odds,
                   sqrt(1 / (c.neg + 0.5) + 1 / (t.tok_neg - c.neg + 0.5) + 1 / (c.pos + 0.5) + 1 / (t.tok_pos - c.pos + 0.5)) AS se
            FROM counts c CROSS JOIN totals t CROSS JOIN sizes z
            WHERE z.n_neg > 0 AND z.n_pos > 0 AND c.neg + c.pos >= ?
              AND regexp_full_match(c.term, '[a-z][a-z'']+') AND c.term NOT IN (SELECT unnest(?::VARCHAR[]))
        ), ranked AS (
            SELECT *, log_odds / se AS z,
                   row_number() OVER (ORDER BY log_odds / se DESC, term) AS top_neg,
                   row_number() OVER (ORDER BY log_odds / se ASC, term) AS top_pos
            FROM scored
        )
        SELECT term, CASE WHEN z > 0 THEN 'negative' ELSE 'positive' END AS side,
               neg AS negative_count, pos AS positive_count, log_odds, z, n_neg AS n_negative, n_pos AS n_positive
        FROM ranked
        WHERE (top_neg <= ? AND z > 0) OR (top_pos <= ? AND z < 0)
        ORDER BY z DESC
    """
    params = [*rel_params, TERMS_BLOCK_ROWS, stride, *where_params, int(sample_per_class), stride, n_negative, n_positive]
    params += [TERMS_MIN_COUNT, list(_STOPWORDS), int(k), int(k)]
    return con.execute(sql, params).df()
