"""The checks every experiment kind's config is made of, and ``ConfigError``.

A config is checked whole before anything runs. Every error is a
``ConfigError`` (a ``ValueError``) that names the file, the key and what was
expected. Each kind checks its own sections with these (``_measure_kind.py``,
``_clipping.py``); ``[experiment]`` is checked here (:func:`experiment`) and
the whole file by ``gradflow.sweep.load_config``.

This module imports no jax.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from gradflow import _specs


class ConfigError(ValueError):
    """A config file that cannot run: names the file, the key and what was expected."""


def _fail(where: str, key: str, expected: str, got: Any) -> ConfigError:
    shown = f"{type(got).__name__} {got!r}" if not isinstance(got, str) else repr(got)
    return ConfigError(f"{where}: {key}: expected {expected}, got {shown}")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_keys(where: str, section: str, table: Any, allowed) -> Mapping[str, Any]:
    if not isinstance(table, Mapping):
        raise _fail(where, f"[{section}]", "a table", table)
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise ConfigError(
            f"{where}: [{section}] {unknown[0]}: unknown key; expected one of "
            f"{', '.join(sorted(allowed))}"
        )
    return table


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list) else [v]


def _choices(where, key, value, choices) -> list[str]:
    out = []
    for v in _as_list(value):
        if not isinstance(v, str) or v not in choices:
            raise _fail(where, key, f"one of {', '.join(choices)} (or a list)", v)
        out.append(v)
    return _unique(where, key, out)


def _unique(where: str, key: str, values: list[Any]) -> list[Any]:
    if not values:
        raise _fail(where, key, "at least one value", values)
    if len(set(values)) != len(values):
        raise _fail(where, key, "distinct values", values)
    return values


def _ints(where, key, value, *, minimum: int, maximum: int | None = None) -> list[int]:
    out = []
    for v in _as_list(value):
        if not _is_int(v):
            raise _fail(where, key, "an integer (or a list of integers)", v)
        if v < minimum or (maximum is not None and v > maximum):
            bound = f">= {minimum}" + (f" and <= {maximum}" if maximum else "")
            raise _fail(where, key, f"integers {bound}", v)
        out.append(int(v))
    return _unique(where, key, out)


def _seeds(where: str, value: Any, key: str = "[grid] seeds") -> list[int]:
    if _is_int(value):
        if value < 1:
            raise _fail(where, key, "a count >= 1 or a list of seeds", value)
        return list(range(int(value)))
    return _ints(where, key, value, minimum=0, maximum=2**32 - 1)


def experiment(
    where: str, raw: Any, default_name: str, kinds: tuple[str, ...]
) -> dict[str, Any]:
    """The ``[experiment]`` table resolved; ``kinds`` are the registered kinds."""
    table = _check_keys(
        where, "experiment", raw, ("name", "kind", "description", "figures", "quick")
    )
    out = {
        "name": table.get("name", default_name),
        "kind": table.get("kind", "measure"),
        "description": table.get("description", ""),
        "figures": table.get("figures", []),
        "quick": table.get("quick", False),
    }
    if not isinstance(out["quick"], bool):
        raise _fail(where, "[experiment] quick", "true or false", out["quick"])
    if not isinstance(out["name"], str) or not out["name"].strip():
        raise _fail(where, "[experiment] name", "a non-empty string", out["name"])
    if out["kind"] not in kinds:
        raise _fail(
            where,
            "[experiment] kind",
            f"one of {', '.join(kinds)}",
            out["kind"],
        )
    if not isinstance(out["description"], str):
        raise _fail(where, "[experiment] description", "a string", out["description"])
    figures = out["figures"]
    if not isinstance(figures, list) or not all(isinstance(f, str) for f in figures):
        raise _fail(where, "[experiment] figures", "a list of figure names", figures)
    known = _specs.figures()
    for f in figures:
        if f not in known:
            raise _fail(where, "[experiment] figures", f"names from {sorted(known)}", f)
    return out
