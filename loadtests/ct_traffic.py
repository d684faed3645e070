"""The continuous-training loop's client: digits to the gateway over REST (one kept-alive
connection), labels back through the feedback API a little after each prediction, and the
count of every request that was not answered 200.

Labels are held back `label_delay_s` (the prediction's record must reach the log's index
first) and sent in batches; a label the gateway reports as unknown is sent again later, a few
times, and counted as lost after that.
"""

from __future__ import annotations

import http.client
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LABEL_RETRIES = 5


class RequestFailed(RuntimeError):
    """A request answered other than 200, or not at all."""


@dataclass
class Counts:
    """What the client sent and how it went."""

    requests: int = 0  # inference requests (a batch counts once)
    items: int = 0
    failed: int = 0
    feedback_calls: int = 0
    labels_accepted: int = 0
    labels_lost: int = 0  # still unknown after LABEL_RETRIES tries
    failures: list[str] = field(default_factory=list)  # the first few, for the report


@dataclass
class Answer:
    """One inference answer: the version that served it, its request id, the top-1 classes."""

    version: str
    request_id: str
    classes: list[int]


@dataclass
class _Pending:
    due: float
    request_id: str
    label: int
    tries: int = 0


class Client:
    """Inference and feedback against one gateway (not thread-safe: one loop drives it)."""

    def __init__(self, host: str, port: int, label_delay_s: float = 0.5, timeout_s: float = 30.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.label_delay_s = label_delay_s
        self.counts = Counts()
        self._conn: http.client.HTTPConnection | None = None
        self._labels: deque[_Pending] = deque()

    # --- transport ---------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any] | list[Any]) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        for attempt in (1, 2):  # a kept-alive connection the server closed is opened again once
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            try:
                self._conn.request("POST", path, body=data, headers=headers)
                resp = self._conn.getresponse()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _fail(self, what: str) -> None:
        self.counts.failed += 1
        if len(self.counts.failures) < 10:
            self.counts.failures.append(what)

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- inference ---------------------------------------------------------------------------

    def infer(self, images: np.ndarray, version: str | None = None) -> Answer | None:
        """One request of N images (N x 1 x 8 x 8, ink 0..1); None when it failed (counted)."""
        path = f"/v2/models/digits/versions/{version}/infer" if version else "/v2/models/digits/infer"
        body = {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": list(images.shape),
                    "data": np.asarray(images, np.float32).reshape(-1).tolist(),
                }
            ]
        }
        self.counts.requests += 1
        self.counts.items += int(images.shape[0])
        try:
            status, headers, raw = self._post(path, body)
        except (OSError, http.client.HTTPException) as exc:
            self._fail(f"{path}: {exc!r}")
            return None
        if status != 200:
            self._fail(f"{path}: HTTP {status} {raw[:200].decode(errors='replace')}")
            return None
        answer = json.loads(raw)
        output = next(o for o in answer["outputs"] if o["name"] == "probabilities")
        scores = np.asarray(output["data"], np.float32).reshape(output["shape"])
        rid = headers.get("x-request-id") or answer.get("parameters", {}).get("request_id", "")
        return Answer(str(answer["model_version"]), rid, scores.argmax(axis=1).tolist())

    def accuracy(
        self, images: np.ndarray, labels: np.ndarray, version: str | None = None, batch: int = 64
    ) -> tuple[float, set[str]]:
        """Top-1 accuracy over `images` in batch requests, and the versions that answered."""
        right, versions = 0, set()
        for start in range(0, len(images), batch):
            answer = self.infer(images[start : start + batch], version)
            if answer is None:
                raise RequestFailed(f"an evaluation request failed: {self.counts.failures[-1]}")
            versions.add(answer.version)
            right += int(np.sum(np.asarray(answer.classes) == labels[start : start + batch]))
        return right / len(images), versions

    # --- feedback ----------------------------------------------------------------------------

    def label_later(self, request_id: str, label: int) -> None:
        """Send `label` for the request's item 0 in `label_delay_s`."""
        self._labels.append(_Pending(time.monotonic() + self.label_delay_s, request_id, int(label)))

    def pending_labels(self) -> int:
        """Labels not sent (or not accepted) yet."""
        return len(self._labels)

    def send_due_labels(self, flush: bool = False) -> None:
        """One feedback call with every label that is due (all of them when `flush`)."""
        now = time.monotonic()
        due: list[_Pending] = []
        while self._labels and (flush or self._labels[0].due <= now):
            due.append(self._labels.popleft())
        if not due:
            return
        body = [{"request_id": p.request_id, "label": p.label} for p in due]
        self.counts.feedback_calls += 1
        try:
            status, _, raw = self._post("/v2/feedback", body)
        except (OSError, http.client.HTTPException) as exc:
            self._fail(f"/v2/feedback: {exc!r}")
            return
        if status != 200:
            self._fail(f"/v2/feedback: HTTP {status} {raw[:200].decode(errors='replace')}")
            return
        result = json.loads(raw)
        unknown = set(result.get("unknown", []))
        self.counts.labels_accepted += int(result.get("accepted", 0))
        self.counts.labels_lost += len(result.get("errors", []))  # refused labels (none expected)
        for p in due:
            if p.request_id not in unknown:
                continue
            if p.tries + 1 >= LABEL_RETRIES:
                self.counts.labels_lost += 1
            else:  # its record is not in the log's index yet: later
                self._labels.append(_Pending(now + 1.0, p.request_id, p.label, p.tries + 1))
