"""Typed configuration: the strict base of every model a suite is read into, and pydantic errors in one line.

Suites (:mod:`bench.suite`) and the plugins' own settings (perturbation entries, importer configurations) are
read into these models, so that an unknown key or a bad value is refused when a suite loads, naming the key.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    """A frozen model that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def explain(exc: ValidationError) -> str:
    """A pydantic error as ``key: problem (got value)`` per key, on one line."""
    problems: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "value"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.setdefault(key, []).append(message)
        values[key] = error.get("input")
    explained = []
    for key, messages in problems.items():
        got = "" if f"got {values[key]!r}" in " ".join(messages) else f" (got {values[key]!r})"
        explained.append(f"{key}: {' or '.join(messages)}{got}")
    return "; ".join(explained)
