"""Building blocks of the settings schemas (harness/config.py, the domain files of harness/domains.py):
the strict base model and the number types a study file may hold."""
from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


class Settings(BaseModel):
    """A block of settings: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_boolean(value: Any) -> Any:
    """YAML's `true` is not the number 1: refuse it where a number is expected (pydantic would take it)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


def _finite(value: Any) -> Any:
    value = _not_boolean(value)
    if isinstance(value, (int, float)) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return value


Count = Annotated[int, BeforeValidator(_not_boolean)]  # an integer setting (sizes, steps, seeds)
Number = Annotated[float, BeforeValidator(_finite)]  # a real-valued setting: finite, never a boolean
SEED_RANGE = (0, 2**32 - 1)  # what numpy and torch take as a seed
