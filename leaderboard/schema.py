"""The leaderboard's schema: its tables, their migrations from one version to the next, and the
`deltas` view (see leaderboard/store.py for what each table holds)."""
from __future__ import annotations

import json
from collections.abc import Callable

import duckdb

SCHEMA_VERSION = 5
APPLICATION = "forgetbench-leaderboard"
BASELINE_RECIPE = "baseline"
DEFAULT_LOCK_TIMEOUT = 120.0

# Never let DuckDB fetch or load extensions behind our back (a SQLite file would otherwise make it
# try to download sqlite_scanner when opened).
DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}

RUN_COLUMNS = [
    "run_id", "study", "recipe", "recipe_params", "seed", "base_model", "base_model_sha",
    "checkpoint_sha", "mix_sha", "config_hash", "finetune_config_hash", "eval_config_hash",
    "data_hashes", "package_versions", "started_at", "finished_at", "domain", "generation_backend", "mix",
    "sweep_parameter", "sweep_value", "sweep_recipe", "extra",
]
JSON_RUN_FIELDS = {"recipe_params", "data_hashes", "package_versions", "mix", "extra"}
_MOVED_TO_COLUMNS = ("domain", "generation_backend", "mix", "sweep")  # runs.extra keys before v4
SCORE_COLUMNS = ["run_id", "benchmark", "metric", "value", "stderr", "n", "is_primary", "settings"]
EXAMPLE_COLUMNS = ["run_id", "benchmark", "metric", "example_id", "value", "prediction", "target"]
SHIFT_COLUMNS = ["run_id", "measure", "part", "value", "n"]
TABLE_KEYS = ["run_id", "study", "recipe", "seed", "finished_at"]


# ---------------------------------------------------------------------------------------------
# Schema and migrations. MIGRATIONS[v] takes a database at version v - 1 to version v (0 = empty);
# views are recreated after every migration run so they always match the current tables.

def _migrate_to_1(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    con.execute(
        """
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,
            study VARCHAR NOT NULL,
            recipe VARCHAR NOT NULL,
            recipe_params VARCHAR NOT NULL,      -- JSON
            seed BIGINT NOT NULL,
            base_model VARCHAR NOT NULL,
            base_model_sha VARCHAR NOT NULL,
            checkpoint_sha VARCHAR NOT NULL,
            mix_sha VARCHAR,
            config_hash VARCHAR NOT NULL,
            finetune_config_hash VARCHAR,
            eval_config_hash VARCHAR NOT NULL,
            data_hashes VARCHAR NOT NULL,        -- JSON
            package_versions VARCHAR NOT NULL,   -- JSON
            started_at VARCHAR NOT NULL,         -- ISO 8601, as the RunRecord gave it
            finished_at VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            extra VARCHAR NOT NULL               -- JSON
        )
        """
    )
    con.execute(
        """
        CREATE TABLE scores (
            run_id VARCHAR NOT NULL,
            benchmark VARCHAR NOT NULL,
            metric VARCHAR NOT NULL,
            value DOUBLE,
            stderr DOUBLE,
            n BIGINT NOT NULL,
            is_primary BOOLEAN NOT NULL,
            settings VARCHAR NOT NULL,           -- JSON, the benchmark's settings
            PRIMARY KEY (run_id, benchmark, metric)
        )
        """
    )
    con.execute(
        """
        CREATE TABLE examples (
            run_id VARCHAR NOT NULL,
            benchmark VARCHAR NOT NULL,
            metric VARCHAR NOT NULL,
            example_id VARCHAR NOT NULL,
            value DOUBLE,
            prediction VARCHAR,
            target VARCHAR,
            PRIMARY KEY (run_id, benchmark, metric, example_id)
        )
        """
    )


def forgetbench_version() -> str:
    try:
        from importlib.metadata import version

        return version("forgetbench")
    except Exception:  # running from a source tree that is not installed
        return "unknown"


def _migrate_to_2(con: duckdb.DuckDBPyConnection) -> None:
    """A history of schema upgrades, so a file says which forgetbench versions changed it, and an
    index that lets ``compare`` find one run's per-example rows without scanning the table."""
    con.execute(
        """
        CREATE TABLE migrations (
            version BIGINT PRIMARY KEY,
            applied_at TIMESTAMPTZ,              -- NULL: applied before the history existed
            forgetbench VARCHAR
        )
        """
    )
    con.execute("INSERT INTO migrations VALUES (1, NULL, NULL)")
    con.execute("CREATE INDEX examples_run ON examples (run_id)")


def _migrate_to_3(con: duckdb.DuckDBPyConnection) -> None:
    """Per-run distribution-shift measures ("why did it forget?"), beside the scores."""
    con.execute(
        """
        CREATE TABLE shift_measures (
            run_id VARCHAR NOT NULL,
            measure VARCHAR NOT NULL,            -- e.g. output_bleu4, param_l2, train_nll
            part VARCHAR NOT NULL,               -- 'all', or a layer type / mix part
            value DOUBLE,
            n BIGINT NOT NULL,                   -- probe answers, parameters or tokens it covers
            PRIMARY KEY (run_id, measure, part)
        )
        """
    )


def _migrate_to_4(con: duckdb.DuckDBPyConnection) -> None:
    """Typed columns for what runs.extra used to carry (domain, generation backend, mix summary, sweep
    point), filled from each run's extra, which keeps only the rest; `status` (always 'finished') goes."""
    for column in ("domain", "generation_backend", "mix", "sweep_parameter", "sweep_value", "sweep_recipe"):
        con.execute(f"ALTER TABLE runs ADD COLUMN {column} VARCHAR")
    for run_id, text in con.execute("SELECT run_id, extra FROM runs").fetchall():
        extra = json.loads(text or "{}") or {}
        sweep = extra.get("sweep") or {}
        mix = extra.get("mix")
        con.execute(
            "UPDATE runs SET domain = ?, generation_backend = ?, mix = ?, sweep_parameter = ?, sweep_value = ?, "
            "sweep_recipe = ?, extra = ? WHERE run_id = ?",
            [extra.get("domain"), extra.get("generation_backend"), None if mix is None else to_json(mix),
             sweep.get("parameter"), to_json(sweep["value"]) if sweep else None, sweep.get("recipe"),
             to_json({k: v for k, v in extra.items() if k not in _MOVED_TO_COLUMNS}), run_id])
    con.execute("ALTER TABLE runs DROP COLUMN status")


def _migrate_to_5(con: duckdb.DuckDBPyConnection) -> None:
    """Runs recorded under the old label of a recipe with nested parameters (a Python repr such as
    `compose:{'name': 'sdft-rewrite', ...},public:alpaca`) take its short label
    (`compose:sdft-rewrite:96,0.5+public:alpaca`) and the run id the harness now gives that run, in
    every table, so a rerun of the study finds them."""
    from harness.hashing import hash_json, short

    rows = con.execute("SELECT run_id, study, recipe, seed, recipe_params, mix_sha, finetune_config_hash, "
                       "checkpoint_sha, eval_config_hash, sweep_recipe FROM runs").fetchall()
    for run_id, study, recipe, seed, params, mix_sha, finetune, checkpoint, evaluation, sweep_recipe in rows:
        label = relabel(recipe)
        if label is None:
            continue
        identity = {"study": study, "recipe": label, "params": json.loads(params), "seed": seed, "mix": mix_sha,
                    "finetune": finetune, "model": checkpoint, "eval": evaluation}
        new_id = f"{study}-{label}-s{seed}-{short(hash_json(identity), 8)}"
        replaced = {"run_id": new_id, "recipe": label, "sweep_recipe": relabel(sweep_recipe) or sweep_recipe}
        for table in ("runs", "scores", "examples", "shift_measures"):  # a copy under the new id, then the old out
            columns = [name for (name,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index", [table]).fetchall()]
            changed = [c for c in columns if c in replaced and (c == "run_id" or table == "runs")]
            select = ", ".join("?" if c in changed else c for c in columns)
            con.execute(f"INSERT INTO {table} SELECT {select} FROM {table} WHERE run_id = ?",
                        [*(replaced[c] for c in changed), run_id])
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])


def relabel(label: str | None) -> str | None:
    """A run label of the old form with nested values, in the new form; None where nothing changes."""
    import ast

    from harness.config import auto_label

    if not label:
        return None
    base, point = _split_point(label)
    name, _, rest = base.partition(":")
    if "{" not in rest and "[" not in rest:
        return None
    values = [ast.literal_eval(item) if item[:1] in "{[" else item for item in _top_level(rest, ",")]
    return auto_label(name, dict(enumerate(values))) + point


def _split_point(label: str) -> tuple[str, str]:
    """(label, `@parameter=value` of a sweep point or '')."""
    parts = _top_level(label, "@")
    return (label, "") if len(parts) == 1 else ("@".join(parts[:-1]), "@" + parts[-1])


def _top_level(text: str, separator: str) -> list[str]:
    """`text` split at `separator` where it stands outside brackets and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {
    1: _migrate_to_1, 2: _migrate_to_2, 3: _migrate_to_3, 4: _migrate_to_4, 5: _migrate_to_5}

# Order in which baselines compete: latest finish first (parsed when it parses, else as text).
BASELINE_ORDER = (
    "TRY_CAST(finished_at AS TIMESTAMPTZ) DESC NULLS LAST, finished_at DESC, run_id DESC"
)

# Order of runs in listings: by study, the baseline first, then recipe, seed and finish time.
RUN_ORDER = f"study, recipe <> '{BASELINE_RECIPE}', recipe, seed, finished_at, run_id"


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""
        CREATE OR REPLACE VIEW deltas AS
        WITH ranked_baselines AS (
            SELECT run_id, base_model_sha, eval_config_hash,
                   row_number() OVER (PARTITION BY base_model_sha, eval_config_hash
                                      ORDER BY {BASELINE_ORDER}) AS rank
            FROM runs
            WHERE recipe = '{BASELINE_RECIPE}'
        ),
        paired AS (
            SELECT r.run_id, r.study, r.recipe, r.seed, b.run_id AS baseline_run_id
            FROM runs r
            LEFT JOIN ranked_baselines b
              ON b.rank = 1
             AND b.base_model_sha = r.base_model_sha
             AND b.eval_config_hash = r.eval_config_hash
            WHERE r.recipe <> '{BASELINE_RECIPE}'
        )
        SELECT p.run_id, p.study, p.recipe, p.seed, s.benchmark, s.metric, s.is_primary,
               s.value, bs.value AS baseline_value, s.value - bs.value AS delta,
               p.baseline_run_id
        FROM paired p
        JOIN scores s ON s.run_id = p.run_id
        LEFT JOIN scores bs
          ON bs.run_id = p.baseline_run_id AND bs.benchmark = s.benchmark AND bs.metric = s.metric
        """
    )


def to_json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)
