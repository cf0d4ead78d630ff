"""Reading YAML files the one way every script does: safe loading, and a malformed file named with line and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["read_yaml"]


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """``yaml.safe_load`` of ``path`` (no tags that build objects), or ``None`` for an empty file.

    Raises:
        ValueError: the file is not valid YAML (or not UTF-8): ``<path>:<line>:<column>: <what> is not valid YAML:
            <problem>``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
        raise ValueError(f"{where}: {what} is not valid YAML: {problem}") from None
