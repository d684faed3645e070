"""Feedback on missed deadlines: how much stricter admission must be than its predictions.

Admission predicts an item's completion from the latency model (queued batches ahead, the
running batch's remainder, its own batch; times the tail margin of recent batch times). What
it cannot see (the remainder of a batch that runs long, a core shared with the transport's
receiving of other requests) shows only afterwards, as an admitted item that finished past its
deadline. `MissFeedback.factor` (>= 1) multiplies the predictions: each late item raises it by
`step`, each item on time lowers it by `step * target / (1 - target)`, so that it settles
where about `target` of the admitted items finish late (additive increase, additive decrease
on the miss rate). Measured with the ResNet-18-shaped model at 120% load: the server itself
answered ~0.7% of its admitted requests past the SLO with the margin alone, and the client saw
a p99 of 106-120 ms for a 100 ms SLO.
"""

from __future__ import annotations


class MissFeedback:
    """An admission factor that keeps the share of admitted items finishing late near `target`."""

    def __init__(self, target: float = 0.01, step: float = 0.02, max_factor: float = 1.5) -> None:
        if not 0.0 < target < 1.0:
            raise ValueError(f"target must be in (0, 1), got {target}")
        self.factor = 1.0
        self._up = step
        self._down = step * target / (1.0 - target)
        self._max = max_factor

    def finished(self, late: bool) -> None:
        """One admitted item finished (answered, failed or expired): past its deadline or not."""
        if late:
            self.factor = min(self._max, self.factor + self._up)
        else:
            self.factor = max(1.0, self.factor - self._down)
