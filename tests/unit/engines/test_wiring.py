"""What every engine's gateway replica sets up in its process."""

from __future__ import annotations

import sys

from fleetserve.engines.wiring import GIL_SWITCH_INTERVAL_S, share_the_gil_finely


def test_a_gateway_replica_hands_the_gil_over_finely() -> None:
    saved = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)  # Python's default
        share_the_gil_finely()
        assert sys.getswitchinterval() == GIL_SWITCH_INTERVAL_S
        assert GIL_SWITCH_INTERVAL_S < 0.005
    finally:
        sys.setswitchinterval(saved)
