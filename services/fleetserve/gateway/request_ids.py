"""fleetserve's request id (CONTRACT.md): the client's X-Request-ID when sane, else generated."""

from __future__ import annotations

import os
import re

_SANE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id(given: str | None) -> str:
    """The id to use for a request: the given one if it is a sane token, else 32 new hex characters."""
    if given and _SANE.match(given):
        return given
    return os.urandom(16).hex()
