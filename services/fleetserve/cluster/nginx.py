"""nginx in front of the replicas: its config rendered from the package's Jinja2 template,
checked with `nginx -t`, and the command that runs it as a foreground child."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from .layout import PortPlan

# HTTP/2 became a directive of its own in nginx 1.25.1 (`listen ... http2` is deprecated there).
_HTTP2_DIRECTIVE_SINCE = (1, 25, 1)
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class NginxConfigError(Exception):
    """`nginx -t` rejected the rendered config (the message holds nginx's own words)."""


@dataclass(frozen=True)
class NginxFiles:
    """Where this nginx keeps its config, pid and temp files, and where it logs."""

    prefix: Path
    logs: Path

    @property
    def config(self) -> Path:
        return self.prefix / "nginx.conf"


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("fleetserve.cluster", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _worker_user(folder: Path) -> tuple[str, str] | None:
    """As root, the owner of `folder` (user and group names) for the workers; else None."""
    if os.geteuid() != 0:
        return None
    st = folder.stat()
    try:
        return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        return None


def render(
    plan: PortPlan,
    files: NginxFiles,
    *,
    workers: int = 0,
    version: tuple[int, ...] = (1, 22),
    max_body: str = "128m",
    max_fails: int = 3,
    fail_timeout: str = "5s",
    worker_user: tuple[str, str] | None = None,
) -> str:
    """The nginx config for `plan`'s replicas (text; `write` puts it in place)."""
    user = worker_user or (None, None)
    return (
        _environment()
        .get_template("nginx.conf.j2")
        .render(
            prefix=files.prefix,
            logs=files.logs,
            workers=workers if workers > 0 else "auto",
            user=user[0],
            group=user[1],
            replicas=[{"http": plan.address(r.http), "grpc": plan.address(r.grpc)} for r in plan.replicas],
            listen_http=plan.address(plan.http),
            listen_grpc=plan.address(plan.grpc),
            http2_in_listen=version < _HTTP2_DIRECTIVE_SINCE,
            max_body=max_body,
            max_fails=max_fails,
            fail_timeout=fail_timeout,
        )
    )


def write(plan: PortPlan, files: NginxFiles, binary: str, version: tuple[int, ...], workers: int = 0) -> Path:
    """Render the config into the prefix (creating its folders) and check it with `nginx -t`."""
    for name in _TEMP_DIRS:
        (files.prefix / "temp" / name).mkdir(parents=True, exist_ok=True)
    files.logs.mkdir(parents=True, exist_ok=True)
    text = render(plan, files, workers=workers, version=version, worker_user=_worker_user(files.prefix))
    files.config.write_text(text)
    check(binary, files)
    return files.config


def command(binary: str, files: NginxFiles) -> list[str]:
    """nginx in the foreground (`daemon off` is in the config) on the rendered config."""
    # -e: the error log from the first line on, before the config names its own (the built-in
    # default under /var/log is not writable for a non-root user).
    return [
        binary,
        "-e",
        str(files.logs / "nginx-error.log"),
        "-p",
        str(files.prefix),
        "-c",
        str(files.config),
    ]


def check(binary: str, files: NginxFiles) -> None:
    """`nginx -t` on the config; NginxConfigError with nginx's output when it fails."""
    result = subprocess.run([*command(binary, files), "-t", "-q"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise NginxConfigError(
            f"nginx -t rejected {files.config}:\n{(result.stderr + result.stdout).strip()}"
        )
