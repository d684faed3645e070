"""Prometheus scraping every process of the cluster: its config from the package's template
and its command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined


@dataclass(frozen=True)
class Target:
    """One /metrics endpoint: host:port and the process it belongs to (a label on its series)."""

    address: str
    process: str


@dataclass
class Job:
    """A scrape job: the targets of one kind of process."""

    name: str
    targets: list[Target] = field(default_factory=list)


def render(jobs: list[Job], interval_s: float) -> str:
    """The prometheus.yml text for `jobs`, scraped every `interval_s` seconds."""
    env = Environment(
        loader=PackageLoader("fleetserve.cluster", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    interval = _duration(interval_s)
    timeout = _duration(min(interval_s, 10.0))
    return env.get_template("prometheus.yml.j2").render(jobs=jobs, interval=interval, timeout=timeout)


def _duration(seconds: float) -> str:
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def command(binary: str, config: Path, storage: Path, listen: str) -> list[str]:
    """Prometheus on `config`, its database in `storage`, listening on `listen` (host:port)."""
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={storage}",
        f"--web.listen-address={listen}",
        "--storage.tsdb.retention.time=7d",
        "--log.level=warn",
    ]
