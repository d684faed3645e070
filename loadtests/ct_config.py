"""How the continuous-training loop (loadtests/ct_loop.py) runs: `FULL` (`make demo`) and
`SHORT` (the e2e test: fewer requests, short dwell)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class LoopConfig:
    """How the loop runs (`FULL` and `SHORT` below)."""

    clean_requests: int = 500
    label_share: float = 0.8  # of the drifted requests labelled through the feedback API
    label_delay_s: float = 0.5
    rate: float = 60.0  # requests per second at most (the machine also trains and rolls out)
    max_requests_to_alarm: int = 2000  # the loop gives up without an alarm after this many
    min_rows: int = 1000  # labelled drifted rows the trainer waits for
    epochs: int = 25
    threads: int = 2
    retrain_after_s: float = 5.0
    timeout_s: float = 900.0  # from the first drifted request to the promotion
    poll_s: float = 0.5  # how often the loop reads the monitor and the controller
    auto: dict[str, Any] = field(
        default_factory=lambda: {
            "steps": [5, 25, 50, 100],
            "shadow_requests": 100,
            "dwell_s": 20,
            "poll_s": 2,
            "timeout_s": 120,
            "window_s": 30,
            "baseline_window_s": 120,
        }
    )
    # Shadow agreement is not relaxed here: the trainer hands a drift retrain over with
    # judge_agreement off and require_accuracy on (v1 gets no inverted digit right, so v2 agrees
    # with it on none; the canary's live accuracy on the labels is the verdict).
    guardrails: dict[str, Any] = field(default_factory=lambda: {"min_requests": 30})


FULL = LoopConfig()
SHORT = replace(
    FULL,
    clean_requests=300,
    # epochs as FULL's 25: at 20, the training sets of two loops in six (1,013 and 1,014
    # labelled rows) gave a candidate 0.95 on the held-out split, 2.2 points under v1, and the
    # gate refused it; at 25 all six passed it (0.969-0.989)
    retrain_after_s=1.0,
    timeout_s=200.0,
    rate=80.0,
    auto={
        "steps": [50, 100],
        "shadow_requests": 50,
        "dwell_s": 4,
        "poll_s": 1,
        "timeout_s": 45,
        "window_s": 5,
        "baseline_window_s": 60,
    },
    guardrails={"min_requests": 15},
)
