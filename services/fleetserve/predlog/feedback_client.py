"""`fleetserve feedback FILE.jsonl`: send labels from a file to a gateway's feedback API.

Each line is one JSON object `{"request_id": ..., "label": ..., "index": 0}`; lines go in
chunks to `POST /v2/feedback`, with `Authorization: Bearer $FLEETSERVE_ADMIN_TOKEN` when set.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CHUNK = 1000


class FeedbackFileError(Exception):
    """A line of the feedback file is not a JSON object."""


def read_labels(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSONL file (blank lines skipped), or an error naming the bad line."""
    labels: list[dict[str, Any]] = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FeedbackFileError(f"{path}:{n}: not JSON: {exc}") from None
        if not isinstance(item, dict):
            raise FeedbackFileError(f"{path}:{n}: each line must be a JSON object")
        labels.append(item)
    return labels


def send(
    url: str, labels: list[dict[str, Any]], token: str | None = None, timeout: float = 30.0
) -> dict[str, Any]:
    """POST the labels in chunks; returns the summed answer (accepted, replaced, unknown, errors)."""
    total: dict[str, Any] = {"accepted": 0, "replaced": [], "unknown": [], "errors": []}
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for start in range(0, len(labels), CHUNK):
        body = json.dumps({"feedback": labels[start : start + CHUNK]}).encode()
        req = urllib.request.Request(
            f"{url.rstrip('/')}/v2/feedback", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                answer = json.loads(r.read())
        except urllib.error.HTTPError as e:
            message = e.read().decode(errors="replace")
            with contextlib.suppress(ValueError, KeyError, TypeError):  # keep the raw text then
                message = json.loads(message)["error"]
            raise FeedbackFileError(f"the gateway answered {e.code}: {message}") from None
        total["accepted"] += answer["accepted"]
        for key in ("replaced", "unknown", "errors"):
            total[key].extend(answer[key])
    return total


def run(path: Path, url: str) -> int:
    """The command: send, print a summary; exit 1 when anything was not accepted."""
    try:
        result = send(url, read_labels(path), os.environ.get("FLEETSERVE_ADMIN_TOKEN"))
    except (FeedbackFileError, OSError) as exc:
        print(f"fleetserve feedback: {exc}")
        return 2
    print(f"accepted {result['accepted']} label(s)")
    if result["replaced"]:
        print(f"replaced {len(result['replaced'])} earlier label(s)")
    if result["unknown"]:
        shown = ", ".join(result["unknown"][:5]) + (" ..." if len(result["unknown"]) > 5 else "")
        print(f"unknown request ids ({len(result['unknown'])}): {shown}")
    for err in result["errors"][:10]:
        print(f"error: {err['request_id']}[{err['index']}]: {err['error']}")
    return 0 if not result["unknown"] and not result["errors"] else 1
