"""The outside programs of the cluster (Debian packages) and how to get a missing one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

# Debian puts nginx in /usr/sbin, which a non-root PATH often lacks.
_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


@dataclass(frozen=True)
class Program:
    """An outside program: its name, the Debian package that has it, what it is for."""

    name: str
    package: str
    role: str

    def install_command(self) -> str:
        """The command that would add it."""
        return f"sudo apt-get install {self.package}"


NGINX = Program("nginx", "nginx", "load balancer in front of the replicas")
REDIS = Program("redis-server", "redis-server", "prediction stream and rollout plans")
PROMETHEUS = Program("prometheus", "prometheus", "metrics scraping")


def find(program: Program, configured: str | None) -> str | None:
    """The program's path: the configured one if it is an executable file, else looked up on
    PATH and in the sbin folders; None where it is not there."""
    if configured is not None:
        return configured if os.path.isfile(configured) and os.access(configured, os.X_OK) else None
    found = shutil.which(program.name)
    if found is not None:
        return found
    path = os.pathsep.join(_EXTRA_DIRS)
    return shutil.which(program.name, path=path)


def nginx_version(binary: str) -> tuple[int, ...]:
    """nginx's version from `nginx -v` (it prints to stderr), e.g. (1, 22, 1); (0,) if unknown."""
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return (0,)
    match = re.search(r"nginx/(\d+(?:\.\d+)*)", out.stderr + out.stdout)
    return tuple(int(p) for p in match.group(1).split(".")) if match else (0,)
