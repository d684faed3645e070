"""Open-loop load: Poisson arrivals fired on schedule, whatever the server answers.

A closed-loop client waits for an answer before it sends again, so a slow server slows the
client down and its queueing never shows (coordinated omission). Here the arrival times are
drawn in advance (a seeded RNG, exponential gaps) and each arrival fires its request as its
own asyncio task, without waiting for earlier ones; a request's latency is measured from its
*scheduled* send time, so time spent behind a late generator or in the server's queue counts.

Everything a point's numbers come from is kept apart from the I/O and pure (no clock, no
network): the schedule, the judgement of whether the generator really drove the offered load
(``judge_driven``), the classification of an answer and the point's summary. ``drive`` is the
only coroutine: it takes any ``call`` coroutine function, so the unit tests run it against a
fake and the benchmark against tritonclient.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from loadtests.stats import percentile

# A point is "driven" when at most MAX_LATE_FRACTION of its arrivals were sent more than
# SEND_TOLERANCE_S after their scheduled time and at least MIN_ACHIEVED_FRACTION of the
# offered arrivals were sent on time.
SEND_TOLERANCE_S = 0.005
MAX_LATE_FRACTION = 0.01
MIN_ACHIEVED_FRACTION = 0.95
# Hard bounds, whatever the rate and duration say.
MAX_ARRIVALS = 500_000
MAX_OUTSTANDING = 4096

# Answers that mean "the server refused or dropped this request on purpose" (load shedding):
# gRPC UNAVAILABLE / DEADLINE_EXCEEDED, HTTP 503 / 504. Anything else that is not an answer is
# an error.
REJECTED_STATUSES = frozenset(
    {
        "StatusCode.UNAVAILABLE",
        "StatusCode.DEADLINE_EXCEEDED",
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "503",
        "504",
    }
)
# An UNAVAILABLE that the transport raised itself (no server there, connection lost) is an
# error, not a refusal: gRPC's own wording of those.
TRANSPORT_FAILURES = (
    "failed to connect",
    "connection refused",
    "socket closed",
    "connection reset",
    "backends failing",
)
OK, REJECTED, ERROR = "ok", "rejected", "error"


# --------------------------------------------------------------------------------------------
# The schedule


def poisson_schedule(
    rate: float, duration: float, rng: np.random.Generator, max_arrivals: int = MAX_ARRIVALS
) -> list[float]:
    """Return the arrival offsets (seconds from 0, increasing, all < ``duration``) of a Poisson
    process of ``rate`` per second over ``duration`` seconds, drawn from ``rng``.

    Gaps are exponential with mean ``1 / rate``; at most ``max_arrivals`` arrivals.
    """
    if rate < 0 or duration < 0 or math.isnan(rate) or math.isnan(duration):
        raise ValueError(f"rate and duration must be non-negative, got {rate}, {duration}")
    if rate == 0 or duration == 0:
        return []
    offsets: list[float] = []
    now = 0.0
    chunk = max(16, min(max_arrivals, int(rate * duration * 1.2) + 16))
    while len(offsets) < max_arrivals:
        gaps = rng.exponential(1.0 / rate, size=chunk)
        for gap in gaps:
            now += float(gap)
            if now >= duration or len(offsets) >= max_arrivals:
                return offsets
            offsets.append(now)
    return offsets


def phased_schedule(
    phases: Sequence[tuple[float, float]], rng: np.random.Generator, max_arrivals: int = MAX_ARRIVALS
) -> list[float]:
    """Return the offsets of consecutive Poisson phases ``(rate, duration)``, one after another."""
    offsets: list[float] = []
    start = 0.0
    for rate, duration in phases:
        offsets += [start + t for t in poisson_schedule(rate, duration, rng, max_arrivals - len(offsets))]
        start += duration
    return offsets


# --------------------------------------------------------------------------------------------
# One request's record, and what it came to


@dataclass(frozen=True, slots=True)
class Record:
    """One arrival: offsets from the start of the schedule, in seconds.

    ``lateness``: when it was really sent minus when it was due; ``latency``: from its scheduled
    send time to its answer (or failure); ``kind``: ok, rejected or error.
    """

    scheduled: float
    lateness: float
    latency: float
    kind: str
    detail: str = ""

    @property
    def end(self) -> float:
        """When the answer came, from the start of the schedule."""
        return self.scheduled + self.latency


def classify_status(status: str | None, message: str = "") -> str:
    """Return ``rejected`` for a load-shedding status (UNAVAILABLE, DEADLINE_EXCEEDED, 503,
    504) from the server, ``error`` for any other failure status (or none at all) and for a
    transport failure (``message`` in gRPC's wording of a lost or refused connection)."""
    if status is None or str(status) not in REJECTED_STATUSES:
        return ERROR
    lowered = message.lower()
    return ERROR if any(text in lowered for text in TRANSPORT_FAILURES) else REJECTED


def classify_exception(exc: BaseException, latency: float, client_timeout: float) -> tuple[str, str]:
    """Return ``(kind, detail)`` of a failed call.

    A call that ran into the client's own timeout is an error (the server did not answer in
    time at all), even though gRPC reports it as DEADLINE_EXCEEDED like a server's refusal.
    """
    status = None
    status_method = getattr(exc, "status", None)
    if callable(status_method):
        status = status_method()
    detail = f"{status or type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, TimeoutError | asyncio.TimeoutError) or latency >= client_timeout * 0.98:
        return ERROR, f"client timeout after {latency:.3f} s: {detail}"
    return classify_status(status, str(exc)), detail


# --------------------------------------------------------------------------------------------
# Was the load really offered?


@dataclass(frozen=True, slots=True)
class Drive:
    """How well the generator kept to its schedule over a window."""

    scheduled: int  # arrivals due in the window
    sent_on_time: int  # of those, sent at most `tolerance` late
    late_fraction: float
    max_lateness_ms: float
    offered_rate: float  # scheduled / seconds
    achieved_rate: float  # sent_on_time / seconds
    driven: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


def judge_driven(
    lateness: Sequence[float],
    seconds: float,
    tolerance_s: float = SEND_TOLERANCE_S,
    max_late_fraction: float = MAX_LATE_FRACTION,
    min_achieved: float = MIN_ACHIEVED_FRACTION,
) -> Drive:
    """Judge whether arrivals of the given send lateness (seconds, one per scheduled arrival;
    ``inf`` for one never sent) offered their load over ``seconds``.

    Driven when at most ``max_late_fraction`` were sent more than ``tolerance_s`` late and at
    least ``min_achieved`` of them were sent on time. A point that is not driven measured a
    lower load than it claims: it is reported, never used to claim anything.
    """
    scheduled = len(lateness)
    late = sum(1 for x in lateness if x > tolerance_s)
    on_time = scheduled - late
    late_fraction = late / scheduled if scheduled else 0.0
    offered = scheduled / seconds if seconds > 0 else 0.0
    achieved = on_time / seconds if seconds > 0 else 0.0
    reasons = []
    if scheduled == 0:
        reasons.append("no arrivals")
    if late_fraction > max_late_fraction:
        reasons.append(
            f"{100 * late_fraction:.2f}% of arrivals sent > {tolerance_s * 1e3:g} ms late"
            f" (limit {100 * max_late_fraction:g}%)"
        )
    if scheduled and achieved < min_achieved * offered:
        reasons.append(f"achieved {achieved:.1f}/s < {100 * min_achieved:g}% of offered {offered:.1f}/s")
    finite = [x for x in lateness if math.isfinite(x)]
    return Drive(
        scheduled=scheduled,
        sent_on_time=on_time,
        late_fraction=late_fraction,
        max_lateness_ms=max(finite, default=0.0) * 1e3,
        offered_rate=offered,
        achieved_rate=achieved,
        driven=not reasons,
        reason="; ".join(reasons),
    )


# --------------------------------------------------------------------------------------------
# A point's summary


def _ms(values: Sequence[float], q: float) -> float | None:
    return percentile(values, q) * 1e3 if values else None


def summarize_records(records: Sequence[Record], start: float, stop: float) -> dict[str, Any]:
    """Summarize the arrivals scheduled in ``[start, stop)`` (offsets, seconds).

    Throughput counts ok answers that *arrived* inside the window (steady state: what the
    server delivers per second); shares, percentiles and the driven judgement are over the
    arrivals scheduled in it. Latencies are from the scheduled send time, in ms.
    """
    return summarize_rounds([(records, start, stop)])


def summarize_rounds(rounds: Sequence[tuple[Sequence[Record], float, float]]) -> dict[str, Any]:
    """Summarize several windows ``(records, start, stop)`` of one point as one: a point run in
    rounds (each its own schedule) pools their arrivals; throughput is the ok answers that
    arrived inside the windows over their total seconds."""
    seconds = sum(stop - start for _, start, stop in rounds)
    inside = [r for records, start, stop in rounds for r in records if start <= r.scheduled < stop]
    ok = [r.latency for r in inside if r.kind == OK]
    rejected = [r.latency for r in inside if r.kind == REJECTED]
    errors = [r for r in inside if r.kind == ERROR]
    answered_in_window = sum(
        1 for records, start, stop in rounds for r in records if r.kind == OK and start <= r.end <= stop
    )
    drive = judge_driven([r.lateness for r in inside], seconds)
    count = len(inside)
    return {
        **drive.as_dict(),
        "seconds": seconds,
        "requests": count,
        "ok": len(ok),
        "rejected": len(rejected),
        "errors": len(errors),
        "throughput": answered_in_window / seconds if seconds > 0 else 0.0,
        "p50_ms": _ms(ok, 50.0),
        "p99_ms": _ms(ok, 99.0),
        "max_ok_ms": max(ok, default=0.0) * 1e3 if ok else None,
        "rejected_pct": 100.0 * len(rejected) / count if count else 0.0,
        "error_pct": 100.0 * len(errors) / count if count else 0.0,
        "rejected_p50_ms": _ms(rejected, 50.0),
        "max_rejected_ms": max(rejected) * 1e3 if rejected else None,
        "first_error": errors[0].detail if errors else None,
    }


def timeline(
    records: Sequence[Record], start: float, stop: float, bin_s: float = 1.0
) -> list[dict[str, Any]]:
    """Return, per ``bin_s`` bin of scheduled time in ``[start, stop)``, the arrivals, the ok
    answers, the rejected share and the p99 of the ok answers (ms) of the arrivals in it."""
    if bin_s <= 0 or stop <= start:
        return []
    bins = []
    count = math.ceil((stop - start) / bin_s - 1e-9)
    for index in range(count):
        low = start + index * bin_s
        high = min(stop, low + bin_s)
        inside = [r for r in records if low <= r.scheduled < high]
        ok = [r.latency for r in inside if r.kind == OK]
        rejected = sum(1 for r in inside if r.kind == REJECTED)
        bins.append(
            {
                "start": low,
                "requests": len(inside),
                "ok": len(ok),
                "rejected": rejected,
                "rejected_pct": 100.0 * rejected / len(inside) if inside else 0.0,
                "p99_ms": _ms(ok, 99.0),
            }
        )
    return bins


# --------------------------------------------------------------------------------------------
# The generator


async def drive(
    call: Callable[[], Awaitable[Any]],
    schedule: Sequence[float],
    client_timeout: float,
    max_outstanding: int = MAX_OUTSTANDING,
    lead_s: float = 0.05,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Record]:
    """Fire ``call()`` at each offset of ``schedule`` (seconds after a start ``lead_s`` from now),
    each as its own task, with at most ``max_outstanding`` in flight; return one record per
    arrival, in schedule order, once every call has finished.

    ``call`` must bound itself by ``client_timeout`` (the tritonclient call takes it as its
    ``client_timeout``); ``asyncio.timeout`` cuts it one second later regardless. A call that
    returns is ok; one that raises is classified (``classify_exception``).
    """
    records: list[Record | None] = [None] * len(schedule)
    tasks: set[asyncio.Task[None]] = set()
    t0 = clock() + lead_s

    async def one(index: int, due: float) -> None:
        sent = clock()
        kind, detail = OK, ""
        try:
            async with asyncio.timeout(client_timeout + 1.0):
                await call()
        except Exception as exc:  # every failure is recorded, never raised
            kind, detail = classify_exception(exc, clock() - due, client_timeout)
        end = clock()
        records[index] = Record(due - t0, sent - due, end - due, kind, detail)

    for index, offset in enumerate(schedule):
        due = t0 + offset
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        for _ in range(MAX_ARRIVALS):  # bounded: each round waits for a task to finish
            if len(tasks) < max_outstanding:
                break
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(one(index, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return [
        r if r is not None else Record(offset, math.inf, math.inf, ERROR, "never ran")
        for r, offset in zip(records, schedule, strict=True)
    ]
