"""A real Prometheus (Debian's package) scraping given targets, on a free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import pytest

from .ports import free_ports
from .processes import terminate


def binary() -> str:
    """The prometheus program; in CI its absence fails the test, elsewhere it skips it."""
    found = shutil.which("prometheus")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is not installed (make setup installs Debian's package)")
        pytest.skip("prometheus is not installed (make setup installs Debian's package)")
    return found


class PrometheusProcess:
    """Prometheus with a 1 s scrape interval over `targets` (host:port of /metrics)."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        listed = ", ".join(f"'{t}'" for t in targets)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: fleetserve\n    static_configs:\n      - targets: [{listed}]\n"
        )
        self.cmd = [
            binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusProcess:
        self._log = open(self.workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.workdir / "prometheus.log").read_text())
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready")

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        terminate(self.proc)
        self._log.close()
