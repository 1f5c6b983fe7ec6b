"""Render a leaderboard DataFrame as terminal text, CSV, JSON records or a GitHub markdown table."""
from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from harness.errors import ForgetbenchError

FORMATS = ("table", "csv", "json", "markdown")
MISSING = "-"  # how table and markdown show a missing value (CSV leaves the cell empty, JSON null)


def render(df: pd.DataFrame, fmt: str = "table") -> str:
    """``df`` as text in ``fmt``: one of table, csv, json, markdown (the CLI's ``--format``)."""
    if fmt == "table":
        return _table(df)
    if fmt == "csv":
        return df.to_csv(index=False, lineterminator="\n")
    if fmt == "json":
        records = [{str(k): _json_value(v) for k, v in row.items()} for row in df.to_dict(orient="records")]
        return json.dumps(records, indent=2, ensure_ascii=False, default=str) + "\n"
    if fmt == "markdown":
        return _markdown(df)
    raise ForgetbenchError(f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _json_value(value: Any) -> Any:
    if _is_missing(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _cell(value: Any) -> str:
    """One value as a single-line cell: floats to 4 decimals, missing as ``MISSING``."""
    if _is_missing(value):
        return MISSING
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("\r\n", "\\n").replace("\n", "\\n")


def _numeric_columns(df: pd.DataFrame) -> list[bool]:
    return [is_numeric_dtype(df[c]) and not is_bool_dtype(df[c]) for c in df.columns]


def _table(df: pd.DataFrame) -> str:
    headers = [str(c) for c in df.columns]
    rows = [[_cell(v) for v in row] for row in df.itertuples(index=False, name=None)]
    numeric = _numeric_columns(df)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out) + "\n"


def _markdown(df: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        return _cell(value).replace("|", "\\|")

    headers = [str(c).replace("|", "\\|") for c in df.columns]
    align = ["---:" if num else "---" for num in _numeric_columns(df)]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False, name=None)]
    return "\n".join(out) + "\n"
