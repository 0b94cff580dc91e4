"""Reads config.json (streamparse's file) and returns one environment's options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError


def load_options(path: str | Path | None, env: str) -> dict[str, Any]:
    """``envs.<env>.options`` of config.json; no file at all means built-in defaults."""
    if path is None:
        candidate = Path("config.json")
        if not candidate.exists():
            return {}
        path = candidate
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; pass --config PATH") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    envs = doc.get("envs") or {}
    if env not in envs:
        raise ConfigError(f"{path} has no environment {env!r}; it has: {', '.join(envs) or 'none'}")
    return dict(envs[env].get("options") or {})
