"""An online latency model per model version: batch time ~ a * rows + b.

Fitted by least squares over the most recent batches (a sliding window), with running sums
so that an update costs O(1). Until `warmup` batches are seen it predicts nothing.

The fit is a mean; deadlines are about the tail. The model also keeps, over the most recent
`margin_window` batches (shorter than the fit's window, so that the margin falls back soon after
a busy spell: measured, a 128-batch margin kept refusing for seconds after an overload ended),
how much longer than predicted they took (observed / predicted) and offers a `margin`: that
ratio's high quantile, which admission and batch sizing multiply their predictions by (the
90th percentile by default: together with the SLO's headroom for the transport, the 99th
refused a fifth of the requests at 90% load, 8 points more than Triton's fixed window). On a
quiet machine the margin is close to 1; on a busy one (a core shared with decoding, other
processes) it grows, and the batcher admits less instead of answering late.
"""

from __future__ import annotations

import collections
import math


class LatencyModel:
    """Predicts how long a batch of n rows takes to compute, from recent batches."""

    def __init__(
        self,
        window: int = 128,
        warmup: int = 3,
        quantile: float = 0.9,
        max_margin: float = 2.0,
        margin_every: int = 8,
        margin_window: int = 32,
    ) -> None:
        self._points: collections.deque[tuple[float, float]] = collections.deque()
        self._window = window
        self._warmup = warmup
        self._sn = self._st = self._snn = self._snt = 0.0
        self.a = 0.0
        self.b = 0.0
        self._ratios: collections.deque[float] = collections.deque(maxlen=min(window, margin_window))
        self._quantile = quantile
        self._max_margin = max_margin
        self._margin_every = max(1, margin_every)
        self._since_margin = 0
        self.margin = 1.0
        # Seconds an executor batch adds to its run (hand-over to the thread, answers back on the
        # loop): a moving average, kept out of the fit so that what decides whether a batch is
        # cheap enough for the loop stays its run alone (the cycle fed back into it: measured,
        # digits' batches then left the loop one after another, and stopped coalescing).
        self.handover = 0.0

    @property
    def samples(self) -> int:
        """Batches in the window."""
        return len(self._points)

    @property
    def ready(self) -> bool:
        """Whether enough batches have been seen to predict."""
        return len(self._points) >= self._warmup

    def observe(self, rows: int, seconds: float, handover: float | None = None) -> None:
        """Add one executed batch: `seconds` it ran; `handover`: what an executor batch added on
        the way (to its thread, and its answers back to the loop), None for one run on the loop.
        The fit takes the run alone; the margin, the whole way (observed / predicted)."""
        n, t = float(rows), float(seconds)
        predicted = self.predict(rows)
        if predicted is not None and predicted > 0:
            if handover is None:
                self._ratios.append(t / predicted)
            else:
                self._ratios.append((t + max(0.0, handover)) / (predicted + self.handover))
            self._since_margin += 1
            if self._since_margin >= self._margin_every:
                self._since_margin = 0
                self._update_margin()
        if handover is not None:
            self.handover += 0.1 * (max(0.0, handover) - self.handover)
        self._points.append((n, t))
        self._sn += n
        self._st += t
        self._snn += n * n
        self._snt += n * t
        if len(self._points) > self._window:
            on, ot = self._points.popleft()
            self._sn -= on
            self._st -= ot
            self._snn -= on * on
            self._snt -= on * ot
        self._fit()

    def _fit(self) -> None:
        k = len(self._points)
        mean_n, mean_t = self._sn / k, self._st / k
        var_n = self._snn / k - mean_n * mean_n
        if var_n > 1e-9:
            a = (self._snt / k - mean_n * mean_t) / var_n
            b = mean_t - a * mean_n
            if a < 0:  # noise on a flat curve: no per-row cost
                a, b = 0.0, mean_t
            elif b < 0:  # the line through the origin instead
                a, b = self._snt / self._snn, 0.0
        else:
            # One batch size seen so far: assume time grows in proportion to rows (pessimistic).
            a, b = (mean_t / mean_n if mean_n > 0 else 0.0), 0.0
        self.a, self.b = a, b

    def _update_margin(self) -> None:
        ordered = sorted(self._ratios)
        rank = min(len(ordered) - 1, math.ceil(self._quantile * len(ordered)) - 1)
        self.margin = min(self._max_margin, max(1.0, ordered[max(0, rank)]))

    def predict_tail(self, rows: int) -> float | None:
        """`predict` times the margin: a batch time that recent batches rarely exceeded."""
        predicted = self.predict(rows)
        return None if predicted is None else predicted * self.margin

    def predict(self, rows: int) -> float | None:
        """Predicted seconds for a batch of `rows`, or None during warm-up."""
        if len(self._points) < self._warmup:
            return None
        return self.a * rows + self.b
