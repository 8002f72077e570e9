"""Numbered schema migrations; ``migrate`` applies the ones a store has not seen yet.

Each migration is a small function registered in order. Applied versions are recorded
in ``schema_migrations``, so running ``migrate`` twice changes nothing and an old store
is upgraded in place. Never edit a released migration: add the next one.

Foreign keys are left out on purpose: DuckDB cannot update a row whose key another table
references, and reviews are updated in place when their text changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import duckdb

from store.errors import TastebudError

Migration = Callable[[duckdb.DuckDBPyConnection], None]


@dataclass(frozen=True)
class _Step:
    version: int
    name: str
    apply: Migration


MIGRATIONS: list[_Step] = []


def migration(version: int, name: str) -> Callable[[Migration], Migration]:
    """Register ``fn`` as migration ``version``; versions must be added in increasing order."""

    def register(fn: Migration) -> Migration:
        if MIGRATIONS and version <= MIGRATIONS[-1].version:
            raise ValueError(f"migration {version} registered after {MIGRATIONS[-1].version}")
        MIGRATIONS.append(_Step(version, name, fn))
        return fn

    return register


@migration(1, "core_reviews_labels_splits")
def _m001(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE reviews (
            review_id       VARCHAR PRIMARY KEY,
            restaurant_id   VARCHAR,
            restaurant_name VARCHAR,
            neighborhood    VARCHAR,
            created_at      TIMESTAMP,
            stars           TINYINT CHECK (stars BETWEEN 1 AND 5),
            text            VARCHAR NOT NULL,
            source          VARCHAR NOT NULL,
            content_hash    VARCHAR NOT NULL,
            ingested_at     TIMESTAMP NOT NULL,
            updated_at      TIMESTAMP
        );
        CREATE SEQUENCE label_id_seq;
        CREATE TABLE labels (
            label_id   BIGINT PRIMARY KEY DEFAULT nextval('label_id_seq'),
            review_id  VARCHAR NOT NULL,
            label      VARCHAR NOT NULL CHECK (label IN ('negative', 'neutral', 'positive')),
            source     VARCHAR NOT NULL CHECK (source IN ('stars', 'import', 'human')),
            labeler    VARCHAR,
            created_at TIMESTAMP NOT NULL,
            round      INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX labels_review_idx ON labels (review_id);
        CREATE TABLE splits (
            review_id   VARCHAR PRIMARY KEY,
            split       VARCHAR NOT NULL CHECK (split IN ('train', 'val', 'test')),
            assigned_at TIMESTAMP NOT NULL
        );
        CREATE SEQUENCE import_id_seq;
        CREATE TABLE imports (
            import_id   BIGINT PRIMARY KEY DEFAULT nextval('import_id_seq'),
            path        VARCHAR NOT NULL,
            format      VARCHAR NOT NULL,
            started_at  TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            accepted    BIGINT NOT NULL DEFAULT 0,
            updated     BIGINT NOT NULL DEFAULT 0,
            unchanged   BIGINT NOT NULL DEFAULT 0,
            rejected    BIGINT NOT NULL DEFAULT 0
        );
        CREATE TABLE import_rejects (
            import_id  BIGINT NOT NULL,
            file       VARCHAR NOT NULL,
            row_number BIGINT,
            reason     VARCHAR NOT NULL,
            detail     VARCHAR,
            raw        VARCHAR
        );
        """
    )


@migration(2, "current_labels_view")
def _m002(con: duckdb.DuckDBPyConnection) -> None:
    # The current label is the newest human label, else the newest label of any other source.
    con.execute(
        """
        CREATE VIEW current_labels AS
        SELECT review_id, label, source, labeler, created_at, round
        FROM labels
        QUALIFY row_number() OVER (
            PARTITION BY review_id
            ORDER BY (source = 'human') DESC, created_at DESC, label_id DESC
        ) = 1
        """
    )


@migration(3, "models_training_evaluation")
def _m003(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE models (
            model_id      VARCHAR PRIMARY KEY,
            kind          VARCHAR NOT NULL CHECK (kind IN ('finetuned', 'baseline')),
            name          VARCHAR NOT NULL,
            base_model    VARCHAR,
            path          VARCHAR,
            params        JSON,
            data_snapshot JSON,
            round         INTEGER NOT NULL DEFAULT 0,
            label_counts  JSON,
            device        VARCHAR,
            duration_s    DOUBLE,
            val_metrics   JSON,
            status        VARCHAR NOT NULL CHECK (status IN ('training', 'ready', 'failed')),
            created_at    TIMESTAMP NOT NULL
        );
        CREATE SEQUENCE promotion_id_seq;
        CREATE TABLE promotions (
            promotion_id      BIGINT PRIMARY KEY DEFAULT nextval('promotion_id_seq'),
            model_id          VARCHAR NOT NULL,
            previous_model_id VARCHAR,
            action            VARCHAR NOT NULL CHECK (action IN ('promote', 'rollback')),
            actor             VARCHAR NOT NULL,
            reason            VARCHAR,
            created_at        TIMESTAMP NOT NULL
        );
        CREATE TABLE training_runs (
            run_id         VARCHAR PRIMARY KEY,
            model_id       VARCHAR,
            job_id         VARCHAR,
            sweep_id       VARCHAR,
            config         JSON NOT NULL,
            status         VARCHAR NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
            checkpoint_dir VARCHAR,
            error          VARCHAR,
            started_at     TIMESTAMP NOT NULL,
            finished_at    TIMESTAMP
        );
        CREATE TABLE epoch_metrics (
            run_id       VARCHAR NOT NULL,
            epoch        DOUBLE NOT NULL,
            step         BIGINT NOT NULL,
            train_loss   DOUBLE,
            val_loss     DOUBLE,
            val_accuracy DOUBLE,
            val_macro_f1 DOUBLE,
            created_at   TIMESTAMP NOT NULL
        );
        CREATE SEQUENCE evaluation_id_seq;
        CREATE TABLE evaluations (
            evaluation_id BIGINT PRIMARY KEY DEFAULT nextval('evaluation_id_seq'),
            model_id      VARCHAR NOT NULL,
            dataset       VARCHAR NOT NULL,
            n             BIGINT NOT NULL,
            metrics       JSON NOT NULL,
            created_at    TIMESTAMP NOT NULL
        );
        CREATE TABLE evaluation_slices (
            evaluation_id BIGINT NOT NULL,
            slice_kind    VARCHAR NOT NULL,
            slice_value   VARCHAR NOT NULL,
            n             BIGINT NOT NULL,
            accuracy      DOUBLE,
            macro_f1      DOUBLE
        );
        """
    )


@migration(4, "predictions_flags_jobs_audit")
def _m004(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE predictions (
            model_id   VARCHAR NOT NULL,
            review_id  VARCHAR NOT NULL,
            p_negative REAL NOT NULL,
            p_neutral  REAL NOT NULL,
            p_positive REAL NOT NULL,
            label      VARCHAR NOT NULL,
            scored_at  TIMESTAMP NOT NULL,
            PRIMARY KEY (model_id, review_id)
        );
        CREATE SEQUENCE flag_id_seq;
        CREATE TABLE flags (
            flag_id     BIGINT PRIMARY KEY DEFAULT nextval('flag_id_seq'),
            review_id   VARCHAR NOT NULL,
            reason      VARCHAR NOT NULL,
            priority    DOUBLE NOT NULL,
            model_id    VARCHAR,
            term        VARCHAR,
            detail      JSON,
            status      VARCHAR NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved', 'dismissed')),
            created_at  TIMESTAMP NOT NULL,
            resolved_at TIMESTAMP,
            resolved_by VARCHAR
        );
        CREATE TABLE jobs (
            job_id      VARCHAR PRIMARY KEY,
            kind        VARCHAR NOT NULL,
            status      VARCHAR NOT NULL
                        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
            params      JSON,
            actor       VARCHAR,
            pid         INTEGER,
            progress    DOUBLE NOT NULL DEFAULT 0,
            message     VARCHAR,
            log_path    VARCHAR,
            result      JSON,
            error       VARCHAR,
            cancel_requested BOOLEAN NOT NULL DEFAULT false,
            created_at  TIMESTAMP NOT NULL,
            started_at  TIMESTAMP,
            finished_at TIMESTAMP,
            heartbeat_at TIMESTAMP
        );
        CREATE SEQUENCE audit_id_seq;
        CREATE TABLE audit_log (
            audit_id   BIGINT PRIMARY KEY DEFAULT nextval('audit_id_seq'),
            actor      VARCHAR NOT NULL,
            role       VARCHAR,
            action     VARCHAR NOT NULL,
            target     VARCHAR,
            detail     JSON,
            created_at TIMESTAMP NOT NULL
        );
        """
    )



@migration(20, "training_run_process")
def _m020(con: duckdb.DuckDBPyConnection) -> None:
    # Which process runs a training run (so a run whose process died can be marked failed
    # later), and what the run produced (validation metrics, throughput).
    con.execute(
        """
        ALTER TABLE training_runs ADD COLUMN pid INTEGER;
        ALTER TABLE training_runs ADD COLUMN host VARCHAR;
        ALTER TABLE training_runs ADD COLUMN proc_start VARCHAR;
        ALTER TABLE training_runs ADD COLUMN result JSON;
        """
    )

def _ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       VARCHAR NOT NULL,
            applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        )
        """
    )


def _refuse_foreign_database(con: duckdb.DuckDBPyConnection) -> None:
    """Never add tastebud's tables to someone else's DuckDB file."""
    tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    if tables and "schema_migrations" not in tables:
        from store.errors import StoreDamagedError

        name = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
        from store.printable import printable

        shown = printable(name[0], max_chars=300) if name and name[0] else "this database"
        raise StoreDamagedError(f"{shown} is not a tastebud store: it is a DuckDB file without tastebud's tables")


def applied_versions(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Versions recorded in the store, ascending (empty for a new file)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchone()[0]
    if not exists:
        return []
    return [v for (v,) in con.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()]


def latest_version() -> int:
    """The newest migration this code knows."""
    return MIGRATIONS[-1].version


def migrate(con: duckdb.DuckDBPyConnection, *, target: int | None = None) -> list[int]:
    """Apply missing migrations up to ``target`` (default: all), each in its own transaction.

    Returns:
        The versions applied by this call (empty when the store was current).
    """
    _refuse_foreign_database(con)
    _ensure_ledger(con)
    done = set(applied_versions(con))
    newest_known = latest_version()
    if done and max(done) > newest_known:
        raise TastebudError(
            f"this store has schema version {max(done)}, newer than this tastebud knows ({newest_known}); upgrade tastebud"
        )
    applied = []
    for step in MIGRATIONS:
        if step.version in done or (target is not None and step.version > target):
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            step.apply(con)
            con.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [step.version, step.name]
            )
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        applied.append(step.version)
    return applied


# --- scoring/relabel area: versions 40-49 -------------------------------------------------


@migration(40, "relabel_actions_and_label_retractions")
def _m040(con: duckdb.DuckDBPyConnection) -> None:
    # Labels stay append-only: undoing a human relabel appends a retraction row instead of
    # deleting the label, and current_labels skips retracted rows. Each relabel/dismiss is an
    # action with the label rows and flags it touched, so "undo my last action" can reverse
    # exactly that (an undo is itself an appended action pointing at the one it undid).
    con.execute(
        """
        CREATE SEQUENCE relabel_action_id_seq;
        CREATE TABLE relabel_actions (
            action_id  BIGINT PRIMARY KEY DEFAULT nextval('relabel_action_id_seq'),
            actor      VARCHAR NOT NULL,
            kind       VARCHAR NOT NULL CHECK (kind IN ('relabel', 'dismiss', 'undo')),
            undoes     BIGINT,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE relabel_action_items (
            action_id       BIGINT NOT NULL,
            review_id       VARCHAR NOT NULL,
            label_id        BIGINT,
            flag_id         BIGINT,
            previous_status VARCHAR
        );
        CREATE TABLE label_retractions (
            label_id     BIGINT PRIMARY KEY,
            action_id    BIGINT NOT NULL,
            retracted_by VARCHAR NOT NULL,
            retracted_at TIMESTAMP NOT NULL
        );
        CREATE OR REPLACE VIEW current_labels AS
        SELECT review_id, label, source, labeler, created_at, round
        FROM labels l
        WHERE NOT EXISTS (SELECT 1 FROM label_retractions x WHERE x.label_id = l.label_id)
        QUALIFY row_number() OVER (
            PARTITION BY review_id
            ORDER BY (source = 'human') DESC, created_at DESC, label_id DESC
        ) = 1;
        """
    )


@migration(41, "rounds")
def _m041(con: duckdb.DuckDBPyConnection) -> None:
    # One row per retrain round. A round takes its number when it starts, so human labels
    # made while it trains belong to the next round (labels.round records which).
    con.execute(
        """
        CREATE TABLE rounds (
            round_id            INTEGER PRIMARY KEY,
            status              VARCHAR NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
            actor               VARCHAR NOT NULL,
            job_id              VARCHAR,
            model_id            VARCHAR,
            champion_before     VARCHAR,
            promoted            BOOLEAN,
            decision            VARCHAR,
            human_labels_train  BIGINT,
            human_labels_val    BIGINT,
            human_labels_test   BIGINT,
            human_labels_other  BIGINT,
            test_n              BIGINT,
            champion_macro_f1   DOUBLE,
            challenger_macro_f1 DOUBLE,
            delta_macro_f1      DOUBLE,
            ci_low              DOUBLE,
            ci_high             DOUBLE,
            label_efficiency    DOUBLE,
            detail              JSON,
            started_at          TIMESTAMP NOT NULL,
            finished_at         TIMESTAMP
        );
        """
    )


# --- performance: versions 50-59 ----------------------------------------------------------

# The view over labels, as migration 40 left it; migration 50 drops and recreates it unchanged.
_CURRENT_LABELS_M040 = """
    CREATE OR REPLACE VIEW current_labels AS
    SELECT review_id, label, source, labeler, created_at, round
    FROM labels l
    WHERE NOT EXISTS (SELECT 1 FROM label_retractions x WHERE x.label_id = l.label_id)
    QUALIFY row_number() OVER (
        PARTITION BY review_id
        ORDER BY (source = 'human') DESC, created_at DESC, label_id DESC
    ) = 1
"""


@migration(50, "reviews_labels_splits_without_primary_keys")
def _m050(con: duckdb.DuckDBPyConnection) -> None:
    # Maintaining the PRIMARY KEY indexes of reviews, labels and splits was about a third of
    # the CPU time of a 1M-review import (13.6 -> 8.7 CPU s without them). Uniqueness is kept
    # by the writers instead: upsert_reviews inserts only ids absent from reviews (and refuses
    # a batch with repeated ids), assign_splits only reviews absent from splits, and label_id
    # still comes from label_id_seq. DuckDB cannot drop a key in place, so each table is
    # rebuilt with the same columns, order and checks; the view on labels is recreated.
    con.execute(
        """
        DROP VIEW current_labels;
        CREATE TABLE reviews_v50 (
            review_id       VARCHAR NOT NULL,
            restaurant_id   VARCHAR,
            restaurant_name VARCHAR,
            neighborhood    VARCHAR,
            created_at      TIMESTAMP,
            stars           TINYINT CHECK (stars BETWEEN 1 AND 5),
            text            VARCHAR NOT NULL,
            source          VARCHAR NOT NULL,
            content_hash    VARCHAR NOT NULL,
            ingested_at     TIMESTAMP NOT NULL,
            updated_at      TIMESTAMP
        );
        INSERT INTO reviews_v50 SELECT * FROM reviews;
        DROP TABLE reviews;
        ALTER TABLE reviews_v50 RENAME TO reviews;
        CREATE TABLE labels_v50 (
            label_id   BIGINT NOT NULL DEFAULT nextval('label_id_seq'),
            review_id  VARCHAR NOT NULL,
            label      VARCHAR NOT NULL CHECK (label IN ('negative', 'neutral', 'positive')),
            source     VARCHAR NOT NULL CHECK (source IN ('stars', 'import', 'human')),
            labeler    VARCHAR,
            created_at TIMESTAMP NOT NULL,
            round      INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO labels_v50 SELECT * FROM labels ORDER BY label_id;
        DROP TABLE labels;
        ALTER TABLE labels_v50 RENAME TO labels;
        -- Kept: a single review's history is read by id (relabel page, undo), 4x faster with it.
        CREATE INDEX labels_review_idx ON labels (review_id);
        CREATE TABLE splits_v50 (
            review_id   VARCHAR NOT NULL,
            split       VARCHAR NOT NULL CHECK (split IN ('train', 'val', 'test')),
            assigned_at TIMESTAMP NOT NULL
        );
        INSERT INTO splits_v50 SELECT * FROM splits;
        DROP TABLE splits;
        ALTER TABLE splits_v50 RENAME TO splits;
        """
    )
    con.execute(_CURRENT_LABELS_M040)


# --- import safety: versions 60-69 ----------------------------------------------------------


@migration(60, "label_retraction_reasons")
def _m060(con: duckdb.DuckDBPyConnection) -> None:
    # A label can now be retracted without a relabel action: a re-import that changes the text
    # of a human-labeled review retracts that label (reason 'text_changed'), since nobody read
    # the new text. Earlier retractions all came from undo.
    con.execute(
        """
        ALTER TABLE label_retractions ALTER COLUMN action_id DROP NOT NULL;
        ALTER TABLE label_retractions ADD COLUMN reason VARCHAR;
        UPDATE label_retractions SET reason = 'undo';
        """
    )


# --- sign-in and sessions: versions 71-79 -------------------------------------------------


@migration(71, "sign_in_throttle_and_revoked_sessions")
def _m071(con: duckdb.DuckDBPyConnection) -> None:
    # Failed sign-ins counted per account and per client address, kept in the store so that
    # neither a page reload nor a dashboard restart resets them; and the ids of signed session
    # tokens revoked by signing out before they expired.
    con.execute(
        """
        CREATE TABLE sign_in_throttle (
            scope            VARCHAR NOT NULL CHECK (scope IN ('account', 'client')),
            key              VARCHAR NOT NULL,
            failures         INTEGER NOT NULL,
            first_failure_at TIMESTAMP NOT NULL,
            last_failure_at  TIMESTAMP NOT NULL,
            locked_until     TIMESTAMP,
            PRIMARY KEY (scope, key)
        );
        CREATE TABLE revoked_sessions (
            token_id   VARCHAR PRIMARY KEY,
            username   VARCHAR NOT NULL,
            revoked_at TIMESTAMP NOT NULL,
            expires_at TIMESTAMP NOT NULL
        );
        """
    )


# --- dashboard / relabel queue: versions 81-89 --------------------------------------------


@migration(81, "label_comments")
def _m081(con: duckdb.DuckDBPyConnection) -> None:
    # A labeler's note on a relabel ("sarcasm", "mixed: food great, service awful"), kept with
    # the label row it explains. Its own table keeps labels' column list, which bulk copies rely on.
    con.execute(
        """
        CREATE TABLE label_comments (
            label_id   BIGINT PRIMARY KEY,
            comment    VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        """
    )


@migration(82, "labeling_guidelines")
def _m082(con: duckdb.DuckDBPyConnection) -> None:
    # The labeling guidelines (markdown), versioned: each save appends; the newest row is current.
    con.execute(
        """
        CREATE SEQUENCE guideline_version_seq;
        CREATE TABLE labeling_guidelines (
            version    BIGINT PRIMARY KEY DEFAULT nextval('guideline_version_seq'),
            body       VARCHAR NOT NULL,
            author     VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        """
    )


# --- model quality area: versions 101-109 ---------------------------------------------------


@migration(101, "models_kind_ensemble")
def _m101(con: duckdb.DuckDBPyConnection) -> None:
    # An ensemble (fine-tuned encoder + TF-IDF + LR, weights fitted on validation) is a model kind of
    # its own. DuckDB cannot change a CHECK in place, so the table is rebuilt with the same columns.
    con.execute(
        """
        CREATE TABLE models_v101 (
            model_id      VARCHAR PRIMARY KEY,
            kind          VARCHAR NOT NULL CHECK (kind IN ('finetuned', 'baseline', 'ensemble')),
            name          VARCHAR NOT NULL,
            base_model    VARCHAR,
            path          VARCHAR,
            params        JSON,
            data_snapshot JSON,
            round         INTEGER NOT NULL DEFAULT 0,
            label_counts  JSON,
            device        VARCHAR,
            duration_s    DOUBLE,
            val_metrics   JSON,
            status        VARCHAR NOT NULL CHECK (status IN ('training', 'ready', 'failed')),
            created_at    TIMESTAMP NOT NULL
        );
        INSERT INTO models_v101
        SELECT model_id, kind, name, base_model, path, params, data_snapshot, round, label_counts,
               device, duration_s, val_metrics, status, created_at FROM models;
        DROP TABLE models;
        ALTER TABLE models_v101 RENAME TO models;
        """
    )


@migration(102, "learning_curves")
def _m102(con: duckdb.DuckDBPyConnection) -> None:
    # One row per point of a `tastebud learning-curve` run: test macro-F1 at a training-set size.
    con.execute(
        """
        CREATE TABLE learning_curves (
            curve_id      VARCHAR NOT NULL,
            model_kind    VARCHAR NOT NULL,
            n_train       INTEGER NOT NULL CHECK (n_train > 0),
            repeat        INTEGER NOT NULL DEFAULT 0,
            macro_f1      DOUBLE NOT NULL,
            accuracy      DOUBLE NOT NULL,
            test_n        INTEGER NOT NULL,
            test_snapshot VARCHAR,
            params        JSON,
            created_at    TIMESTAMP NOT NULL
        );
        """
    )


# --- monitoring: versions 111-119 ---------------------------------------------------------


@migration(111, "alerts")
def _m111(con: duckdb.DuckDBPyConnection) -> None:
    # One alert per (kind, metric, subject, period): re-running the monitor never repeats one,
    # and an acknowledged alert stays acknowledged.
    con.execute(
        """
        CREATE SEQUENCE alert_id_seq;
        CREATE TABLE alerts (
            alert_id        BIGINT PRIMARY KEY DEFAULT nextval('alert_id_seq'),
            kind            VARCHAR NOT NULL CHECK (kind IN ('model_health', 'sentiment_shift', 'volume_shift')),
            metric          VARCHAR NOT NULL,
            subject         VARCHAR NOT NULL,
            period          DATE,
            value           DOUBLE,
            threshold       DOUBLE,
            message         VARCHAR NOT NULL,
            detail          JSON,
            status          VARCHAR NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged')),
            created_at      TIMESTAMP NOT NULL,
            acknowledged_at TIMESTAMP,
            acknowledged_by VARCHAR,
            UNIQUE (kind, metric, subject, period)
        );
        """
    )


@migration(112, "model_health_and_term_scans")
def _m112(con: duckdb.DuckDBPyConnection) -> None:
    # Weekly health of a model, recomputed by `tastebud monitor` (vocabulary drift reads every
    # review's text, too slow for a page). term_scans keeps what each emerging-term search found,
    # also when it found nothing and why.
    con.execute(
        """
        CREATE TABLE model_health (
            model_id             VARCHAR NOT NULL,
            period               DATE NOT NULL,
            n                    BIGINT NOT NULL,
            star_agreement       DOUBLE,
            n_human              BIGINT NOT NULL,
            human_agreement      DOUBLE,
            mean_confidence      DOUBLE,
            low_confidence_share DOUBLE,
            share_negative       DOUBLE,
            share_neutral        DOUBLE,
            share_positive       DOUBLE,
            class_mix_js         DOUBLE,
            class_mix_p          DOUBLE,
            unseen_term_share    DOUBLE,
            computed_at          TIMESTAMP NOT NULL,
            PRIMARY KEY (model_id, period)
        );
        CREATE SEQUENCE term_scan_id_seq;
        CREATE TABLE term_scans (
            scan_id      BIGINT PRIMARY KEY DEFAULT nextval('term_scan_id_seq'),
            model_id     VARCHAR,
            window_start TIMESTAMP,
            window_end   TIMESTAMP,
            recent_docs  BIGINT NOT NULL,
            prior_docs   BIGINT NOT NULL,
            terms        JSON NOT NULL,
            flagged      BIGINT NOT NULL,
            outcome      VARCHAR NOT NULL,
            created_at   TIMESTAMP NOT NULL
        );
        """
    )


# --- dashboard jobs, live training and comparison: versions 121-129 ------------------------


@migration(121, "jobs_process_start_and_canceller")
def _m121(con: duckdb.DuckDBPyConnection) -> None:
    # The job process's start time (a reused pid must not look alive) and who cancelled a job.
    con.execute(
        """
        ALTER TABLE jobs ADD COLUMN proc_start VARCHAR;
        ALTER TABLE jobs ADD COLUMN cancelled_by VARCHAR;
        """
    )


@migration(122, "training_step_losses")
def _m122(con: duckdb.DuckDBPyConnection) -> None:
    # Training loss at each logged step, for the live loss chart of a running job.
    con.execute(
        """
        CREATE TABLE step_losses (
            run_id        VARCHAR NOT NULL,
            step          BIGINT NOT NULL,
            epoch         DOUBLE,
            loss          DOUBLE NOT NULL,
            learning_rate DOUBLE,
            created_at    TIMESTAMP NOT NULL,
            PRIMARY KEY (run_id, step)
        );
        """
    )


@migration(123, "evaluation_slice_intervals")
def _m123(con: duckdb.DuckDBPyConnection) -> None:
    # Bootstrap 95% interval of each slice's macro-F1 (NULL for evaluations stored before).
    con.execute(
        """
        ALTER TABLE evaluation_slices ADD COLUMN f1_ci_low DOUBLE;
        ALTER TABLE evaluation_slices ADD COLUMN f1_ci_high DOUBLE;
        """
    )


# --- aspects: versions 130-139 ------------------------------------------------------------------


@migration(130, "aspects")
def _m130(con: duckdb.DuckDBPyConnection) -> None:
    # Aspects: what a review says about the food, the service, the price, the place.
    # - `aspects` is the store's configurable set (SemEval-2014's five categories to start; a store
    #   may add its own, e.g. "wait"). `position` orders them on pages and in a model's heads.
    # - `aspect_labels` is append-only like `labels`: the current polarity of (review, aspect) is the
    #   newest human row, else the newest imported row. 'absent' says the review does not speak of
    #   the aspect (a correction of a false detection); 'conflict' is SemEval's fourth class
    #   (mentioned, both ways), counted as a mention and left out of polarity training and metrics.
    # - `aspect_predictions`: one row per (model, review, aspect) with the probability that the
    #   aspect is mentioned and its polarity probabilities given it is, plus the character span of
    #   the sentence that carried it most (the sentence shown behind a dashboard cell).
    # - `models.task` tells a review-sentiment model from an aspect model: each task has its own
    #   champion (promotions replay per task).
    con.execute(
        """
        CREATE TABLE aspects (
            aspect      VARCHAR PRIMARY KEY,
            description VARCHAR,
            position    INTEGER NOT NULL,
            builtin     BOOLEAN NOT NULL DEFAULT false,
            created_by  VARCHAR,
            created_at  TIMESTAMP NOT NULL
        );
        CREATE SEQUENCE aspect_label_id_seq;
        CREATE TABLE aspect_labels (
            aspect_label_id BIGINT PRIMARY KEY DEFAULT nextval('aspect_label_id_seq'),
            review_id       VARCHAR NOT NULL,
            aspect          VARCHAR NOT NULL,
            polarity        VARCHAR NOT NULL
                            CHECK (polarity IN ('absent', 'negative', 'neutral', 'positive', 'conflict')),
            source          VARCHAR NOT NULL CHECK (source IN ('import', 'human')),
            labeler         VARCHAR,
            created_at      TIMESTAMP NOT NULL,
            round           INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX aspect_labels_review_idx ON aspect_labels (review_id);
        CREATE VIEW current_aspect_labels AS
        SELECT review_id, aspect, polarity, source, labeler, created_at, round
        FROM aspect_labels
        QUALIFY row_number() OVER (
            PARTITION BY review_id, aspect
            ORDER BY (source = 'human') DESC, created_at DESC, aspect_label_id DESC
        ) = 1;
        CREATE TABLE aspect_predictions (
            model_id       VARCHAR NOT NULL,
            review_id      VARCHAR NOT NULL,
            aspect         VARCHAR NOT NULL,
            p_present      REAL NOT NULL,
            p_negative     REAL NOT NULL,
            p_neutral      REAL NOT NULL,
            p_positive     REAL NOT NULL,
            polarity       VARCHAR NOT NULL,
            evidence_start INTEGER,
            evidence_end   INTEGER,
            scored_at      TIMESTAMP NOT NULL,
            PRIMARY KEY (model_id, review_id, aspect)
        );
        ALTER TABLE models ADD COLUMN task VARCHAR DEFAULT 'sentiment';
        """
    )
    now = datetime.now()
    con.executemany(
        "INSERT INTO aspects (aspect, description, position, builtin, created_by, created_at) VALUES (?, ?, ?, true, 'tastebud', ?)",
        [(name, text, i, now) for i, (name, text) in enumerate(_SEMEVAL_ASPECTS)],
    )


# SemEval-2014 Task 4's restaurant categories, the default aspect set.
_SEMEVAL_ASPECTS: tuple[tuple[str, str], ...] = (
    ("food", "the food and drink: taste, quality, portions, menu"),
    ("service", "the staff and the service: friendliness, attention, speed, waits"),
    ("price", "prices and value for money"),
    ("ambience", "the place: decor, noise, crowds, space, atmosphere"),
    ("anecdotes/miscellaneous", "the visit as a whole and everything else"),
)


@migration(131, "aspect_corrections_undoable")
def _m131(con: duckdb.DuckDBPyConnection) -> None:
    # A labeler's aspect correction is an undoable relabel action like a review relabel: kind 'aspects',
    # its items name the aspect label rows it appended (relabel_action_items.aspect_label_id), and an
    # undo appends a retraction (aspect_label_retractions) that current_aspect_labels skips, so the
    # review falls back to its previous aspect labels. Nothing is deleted.
    # DuckDB cannot change a CHECK constraint in place: relabel_actions is rebuilt with the wider one
    # (same rows, same ids, same sequence).
    con.execute(
        """
        CREATE TABLE relabel_actions_131 (
            action_id  BIGINT PRIMARY KEY DEFAULT nextval('relabel_action_id_seq'),
            actor      VARCHAR NOT NULL,
            kind       VARCHAR NOT NULL CHECK (kind IN ('relabel', 'dismiss', 'undo', 'aspects')),
            undoes     BIGINT,
            created_at TIMESTAMP NOT NULL
        );
        INSERT INTO relabel_actions_131 SELECT action_id, actor, kind, undoes, created_at FROM relabel_actions;
        DROP TABLE relabel_actions;
        ALTER TABLE relabel_actions_131 RENAME TO relabel_actions;
        ALTER TABLE relabel_action_items ADD COLUMN aspect_label_id BIGINT;
        CREATE TABLE aspect_label_retractions (
            aspect_label_id BIGINT PRIMARY KEY,
            action_id       BIGINT,
            retracted_by    VARCHAR NOT NULL,
            retracted_at    TIMESTAMP NOT NULL,
            reason          VARCHAR
        );
        CREATE OR REPLACE VIEW current_aspect_labels AS
        SELECT review_id, aspect, polarity, source, labeler, created_at, round
        FROM aspect_labels l
        WHERE NOT EXISTS (SELECT 1 FROM aspect_label_retractions x WHERE x.aspect_label_id = l.aspect_label_id)
        QUALIFY row_number() OVER (
            PARTITION BY review_id, aspect
            ORDER BY (source = 'human') DESC, created_at DESC, aspect_label_id DESC
        ) = 1;
        """
    )
