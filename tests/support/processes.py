"""Stopping what a test started, by its process id."""

from __future__ import annotations

import signal
import subprocess


def terminate(proc: subprocess.Popen[bytes] | None, grace_s: float = 10.0) -> int | None:
    """SIGTERM to `proc` by its pid, SIGKILL after `grace_s`; its exit status (None: no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode
