"""Which model names a plan store accepts: plain folder names, as in the model repository."""

from __future__ import annotations

import re

# the repository's own rule (repository/manager.py); "\Z" because "$" would accept "name\n"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}\Z")


def is_model_name(name: str) -> bool:
    """Whether `name` is a plain model folder name (nothing that escapes the repository)."""
    return bool(_NAME.match(name)) and name not in (".", "..")


def check_model_name(name: str) -> None:
    """Raise ValueError unless `name` is a plain model folder name."""
    if not is_model_name(name):
        raise ValueError(f"invalid model name {name!r}")
