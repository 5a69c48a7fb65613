"""Turning pydantic validation errors and YAML files into messages that name the
file and the field (``study.yaml: prune.divisor: …``), never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from serve_bench.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """The one base of every model serve-bench validates (studies, profiles, evaluation settings, the engine's
    costs, and what a run directory holds): an unknown field is refused, so a misspelt setting is an error
    instead of a silent default; inf and NaN are refused, since no setting or measurement means them and they
    would only surface later (a rate of inf crashing the schedule, a NaN price in the plan)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def field_path(loc: Iterable[Any], skip: Iterable[str] = ()) -> str:
    """('stages', 1, 'rate', 'rate_rps') -> 'stages[1].rate_rps' when 'rate' is in ``skip``:
    a union tag pydantic puts in the location, right after a list index or before more parts."""
    skip = set(skip)
    parts = list(loc)
    out = ""
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in skip and (i < len(parts) - 1 or (i and isinstance(parts[i - 1], int))):
            continue
        elif part.startswith(("function-", "tagged-union")):
            continue
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def validation_messages(err: ValidationError, source: str, skip: Iterable[str] = ()) -> str:
    return "\n".join(f"{source}: {field_path(e['loc'], skip)}: {e['msg']}" for e in err.errors())


def validate(model: type[M], data: Any, source: str) -> M:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(validation_messages(err, source)) from None


def read_text(path: Path, shown: str | None = None) -> str:
    """A user's file as text; missing, unreadable (a directory…) or not UTF-8 is a ConfigError naming it
    as ``shown`` (default: the path)."""
    shown = shown or str(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{shown} does not exist") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{shown} is not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{shown}: cannot read: {err.strerror}") from None


def read_yaml(path: Path, shown: str | None = None) -> Any:
    """The parsed file; ``shown`` is how messages name it (default: the path)."""
    shown = shown or str(path)
    text = read_text(path, shown)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{shown} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
