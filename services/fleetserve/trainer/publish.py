"""Publishing a model version into a Triton-layout repository, atomically.

A version is written in full under ``<repo>/<model>/.tmp-<random>/`` and then renamed to
``<repo>/<model>/<N>/``, so a reader (the repository poller, Triton) sees either no version
``N`` or all of it. ``config.pbtxt`` and ``labels.txt`` are shared by all versions; they are
written before the first version appears and never overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.pbtxt"
LABELS_FILE = "labels.txt"
METADATA_FILE = "metadata.json"
TMP_PREFIX = ".tmp-"
# Other publishers may take the version number we picked; give up after this many tries.
_MAX_ATTEMPTS = 100


def version_numbers(model_dir: Path) -> list[int]:
    """The model's published versions: folders named by a positive integer, ascending."""
    if not model_dir.is_dir():
        return []
    numbers = []
    for entry in model_dir.iterdir():
        name = entry.name
        if name.isascii() and name.isdigit() and not name.startswith("0") and entry.is_dir():
            numbers.append(int(name))
    return sorted(numbers)


def publish_version(
    repository: Path,
    model: str,
    files: Mapping[str, bytes],
    metadata: Mapping[str, Any],
    *,
    config_text: str,
    labels: Sequence[str],
) -> Path:
    """Publish ``files`` plus ``metadata.json`` as the next version of ``model``.

    The version is 1 + the highest existing one. ``metadata.json`` gets ``model``,
    ``version`` and ``parent_version`` (the highest existing version, or null) ahead of the
    given ``metadata``. ``config.pbtxt`` is written from ``config_text`` when absent;
    ``labels.txt`` (one label a line) when absent, and a different existing one is an error.
    Returns the version folder.
    """
    _check_name(model, "model name")
    for name in files:
        _check_name(name, "file name")
        if name == METADATA_FILE:
            raise ValueError(f"{METADATA_FILE} is written from metadata, not passed in files")
    model_dir = repository / model
    model_dir.mkdir(parents=True, exist_ok=True)
    _write_shared_files(model_dir, config_text, labels)

    tmp_dir = _make_tmp_dir(model_dir)
    try:
        for name, content in files.items():
            _write_durably(tmp_dir / name, content)
        for _ in range(_MAX_ATTEMPTS):
            existing = version_numbers(model_dir)
            parent = existing[-1] if existing else None
            version = (parent or 0) + 1
            document = {"model": model, "version": version, "parent_version": parent}
            document.update({k: v for k, v in metadata.items() if k not in document})
            _write_durably(tmp_dir / METADATA_FILE, _json_bytes(document))
            _fsync_dir(tmp_dir)
            target = model_dir / str(version)
            try:
                os.rename(tmp_dir, target)
            except OSError as error:
                # Someone else published this number first: take the next one.
                if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue
                raise
            _fsync_dir(model_dir)
            return target
        raise RuntimeError(f"could not claim a version number for {model} in {_MAX_ATTEMPTS} attempts")
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def _write_shared_files(model_dir: Path, config_text: str, labels: Sequence[str]) -> None:
    _write_if_absent(model_dir / CONFIG_FILE, config_text.encode())
    labels_bytes = "".join(f"{label}\n" for label in labels).encode()
    labels_path = model_dir / LABELS_FILE
    if not _write_if_absent(labels_path, labels_bytes) and labels_path.read_bytes() != labels_bytes:
        raise ValueError(
            f"{labels_path} exists with other labels; labels are shared by every version of the model"
        )


def _write_if_absent(path: Path, content: bytes) -> bool:
    """Write ``path`` atomically unless it exists; True when this call wrote it."""
    if path.exists():
        return False
    tmp = path.with_name(f"{TMP_PREFIX}{secrets.token_hex(8)}-{path.name}")
    _write_durably(tmp, content)
    try:
        # link() fails when the target exists, so a concurrent writer's file is kept.
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as error:
        # Some network file systems have no hard links; a rename is atomic but not exclusive.
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if path.exists():
            return False
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


def _make_tmp_dir(model_dir: Path) -> Path:
    # Not tempfile.mkdtemp: its 0o700 mode would survive the rename and hide the version
    # from a server running as another user.
    while True:
        tmp_dir = model_dir / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        with contextlib.suppress(FileExistsError):
            tmp_dir.mkdir()
            return tmp_dir


def _write_durably(path: Path, content: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, allow_nan=False) + "\n").encode()


def _check_name(name: str, what: str) -> None:
    if not name or name.startswith(".") or "/" in name or "\\" in name or name != name.strip():
        raise ValueError(f"invalid {what}: {name!r}")
