"""The model manager: which versions of which models serve, and changing that without a restart.

Loading runs in a worker thread; the serving map is replaced whole on the event loop, so a
request sees either the old set of versions or the new one. Replaced versions drain first.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from fleetserve.batching.batcher import BatchReport
from fleetserve.protocol.errors import ErrorCode, FleetError
from fleetserve.protocol.types import IndexEntry
from fleetserve.runtimes.base import RuntimeOptions
from fleetserve.wire import model_config_pb2 as mc

from . import policy
from .config import ConfigError, read_config
from .loader import load_version
from .version import ServedVersion

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}\Z")  # \Z: "$" would take "name\n"
Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass
class ModelEntry:
    """What the manager knows of one model folder."""

    name: str
    serving: dict[int, ServedVersion] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)  # versions that failed to load
    error: str = ""  # model-level failure (config)
    fingerprints: dict[int, Fingerprint] = field(default_factory=dict)
    config_fingerprint: Fingerprint = ()
    unloaded: bool = False  # explicitly unloaded: stays so until an explicit load


def check_model_name(name: str) -> None:
    """Model names are plain folder names: nothing that escapes the repository."""
    if not _NAME.match(name) or name in (".", ".."):
        raise FleetError(ErrorCode.INVALID_ARGUMENT, f"invalid model name {name!r}")


def _fingerprint(path: Path) -> Fingerprint:
    if not path.exists():
        return ()
    if path.is_file():
        st = path.stat()
        return ((path.name, st.st_size, st.st_mtime_ns),)
    rows = []
    for f in sorted(path.rglob("*")):
        if f.is_file():
            st = f.stat()
            rows.append((str(f.relative_to(path)), st.st_size, st.st_mtime_ns))
    return tuple(rows)


# Files in a model folder that are not the model's configuration: changing them reloads nothing.
_NOT_CONFIG = ("rollout.json",)


def _model_fingerprint(model_dir: Path) -> Fingerprint:
    files = (
        [
            f
            for f in model_dir.iterdir()
            if f.is_file() and f.name not in _NOT_CONFIG and not f.name.startswith(".")
        ]
        if model_dir.is_dir()
        else []
    )
    return tuple(row for f in sorted(files) for row in _fingerprint(f))


class ModelManager:
    """Loads, serves, reloads and unloads the models of one repository."""

    def __init__(
        self,
        repository: Path,
        options: RuntimeOptions,
        *,
        default_max_batch_size: int = 4,
        on_batch: Callable[[ServedVersion, BatchReport], None] | None = None,
        on_ready: Callable[[str, str, bool], None] | None = None,
        inline_below_s: float = 0.0,
        pinned: Callable[[str], set[int]] | None = None,
    ) -> None:
        self.repository = repository
        self._options = options
        self._default_max_batch_size = default_max_batch_size
        self._on_batch = on_batch
        self._on_ready = on_ready
        self._inline_below_s = inline_below_s
        self._pinned = pinned
        self._models: dict[str, ModelEntry] = {}
        self._lock = asyncio.Lock()
        self._draining: set[asyncio.Task[None]] = set()

    # --- reading (event loop, hot path) ---

    def resolve(self, name: str, version: str = "") -> ServedVersion:
        """The version that serves a request, or NOT_FOUND / UNAVAILABLE with the reason."""
        entry = self._models.get(name)
        if entry is None:
            raise FleetError(ErrorCode.NOT_FOUND, f"unknown model '{name}'")
        serving = entry.serving
        if not version:
            if serving:
                return serving[max(serving)]
            raise FleetError(ErrorCode.UNAVAILABLE, f"model '{name}' is not ready: {self._reason(entry)}")
        try:
            if not version.isdigit() or not version.isascii():
                raise ValueError(version)
            number = int(version)
        except ValueError:
            raise FleetError(ErrorCode.NOT_FOUND, f"model '{name}' has no version '{version}'") from None
        found = serving.get(number)
        if found is not None:
            return found
        if number in entry.reasons:
            raise FleetError(
                ErrorCode.UNAVAILABLE,
                f"model '{name}' version {number} is not ready: {entry.reasons[number]}",
            )
        served = ", ".join(str(v) for v in sorted(serving)) or "none"
        raise FleetError(ErrorCode.NOT_FOUND, f"model '{name}' has no version {number} (serving: {served})")

    def serving_numbers(self, name: str) -> Collection[int]:
        """The serving version numbers of a model (a live view; cheap)."""
        entry = self._models.get(name)
        return entry.serving.keys() if entry is not None else ()

    def served_versions(self, name: str) -> list[ServedVersion]:
        """The serving versions of a model, ascending."""
        entry = self._models.get(name)
        return [entry.serving[v] for v in sorted(entry.serving)] if entry else []

    def all_served(self) -> list[ServedVersion]:
        """Every serving version of every model."""
        return [sv for name in sorted(self._models) for sv in self.served_versions(name)]

    def is_ready(self, name: str, version: str = "") -> bool:
        """Whether a model (version) would serve a request now (a runtime with a `healthy()`
        check, such as the remote runtime, must also answer True)."""
        try:
            served = self.resolve(name, version)
        except FleetError:
            return False
        healthy = getattr(served.runtime, "healthy", None)
        return bool(healthy()) if callable(healthy) else True

    def all_ready(self) -> bool:
        """Every model the manager is asked to serve has a serving version."""
        return all(e.serving for e in self._models.values() if not e.unloaded)

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """Every model in the repository with each version's state (Triton's repository index)."""
        rows: list[IndexEntry] = []
        names = set(self._models)
        if self.repository.is_dir():
            names |= {p.name for p in self.repository.iterdir() if p.is_dir() and _NAME.match(p.name)}
        for name in sorted(names):
            entry = self._models.get(name)
            if entry is None or (entry.unloaded and not entry.serving):
                if not ready_only:
                    rows.append(IndexEntry(name, "", "UNAVAILABLE", "unloaded"))
                continue
            for v in sorted(entry.serving):
                # a version whose reload failed keeps serving its last good load: one row, READY
                reason = f"reload failed: {entry.reasons[v]}" if v in entry.reasons else ""
                rows.append(IndexEntry(name, str(v), "READY", reason))
            if ready_only:
                continue
            for v, reason in sorted(entry.reasons.items()):
                if v not in entry.serving:
                    rows.append(IndexEntry(name, str(v), "UNAVAILABLE", reason))
            if entry.error:
                rows.append(IndexEntry(name, "", "UNAVAILABLE", entry.error))
        return rows

    def _public(self, reason: str) -> str:
        """A reason as clients see it: paths relative to the repository, not the machine."""
        for root in {str(self.repository.resolve()), str(self.repository)}:
            reason = reason.replace(root + "/", "").replace(root, "")
        return reason

    @staticmethod
    def _reason(entry: ModelEntry) -> str:
        if entry.error:
            return entry.error
        if entry.reasons:
            return "; ".join(f"version {v}: {r}" for v, r in sorted(entry.reasons.items()))
        if entry.unloaded:
            return "unloaded"
        return "no version to serve"

    # --- changing (serialised) ---

    def model_dirs(self) -> list[str]:
        """The model folders of the repository."""
        if not self.repository.is_dir():
            return []
        return sorted(p.name for p in self.repository.iterdir() if p.is_dir() and _NAME.match(p.name))

    async def load(self, name: str) -> ModelEntry:
        """Load (or reload) a model: every version its policy serves. Explicit unload is lifted."""
        check_model_name(name)
        async with self._lock:
            if not (self.repository / name).is_dir():
                raise FleetError(ErrorCode.NOT_FOUND, f"no model '{name}' in the repository")
            entry = self._models.setdefault(name, ModelEntry(name))
            entry.unloaded = False
            await self._sync(entry, force=True)
            return entry

    async def unload(self, name: str) -> None:
        """Stop serving a model; it stays unloaded until loaded explicitly."""
        check_model_name(name)
        async with self._lock:
            entry = self._models.get(name)
            if entry is None:
                if not (self.repository / name).is_dir():
                    raise FleetError(ErrorCode.NOT_FOUND, f"unknown model '{name}'")
                entry = self._models.setdefault(name, ModelEntry(name))
            entry.unloaded = True
            old = entry.serving
            entry.serving = {}
            entry.reasons = {}
            entry.error = ""
            entry.fingerprints = {}
            entry.config_fingerprint = ()
            self._retire(list(old.values()))

    async def poll_forever(self, every_s: float) -> None:
        """`poll` every `every_s` seconds until cancelled; a failed poll is logged, the next retries."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.poll()
            except Exception:  # a broken poll must not stop serving
                log.exception("repository poll failed")

    async def poll(self) -> None:
        """Pick up new, changed and removed models and versions."""
        async with self._lock:
            present = set(self.model_dirs())
            for name in sorted(present | set(self._models)):
                entry = self._models.get(name)
                if name not in present:
                    if entry is not None:
                        self._retire(list(entry.serving.values()))
                        del self._models[name]
                    continue
                if entry is None:
                    entry = self._models.setdefault(name, ModelEntry(name))
                if not entry.unloaded:
                    await self._sync(entry, force=False)

    async def _sync(self, entry: ModelEntry, force: bool) -> None:
        model_dir = self.repository / entry.name
        config_fp = _model_fingerprint(model_dir)
        config_changed = force or config_fp != entry.config_fingerprint
        try:
            config = read_config(model_dir)
            available = policy.version_folders(model_dir)
            wanted = policy.select(config.version_policy if config else mc.ModelVersionPolicy(), available)
            if self._pinned is not None:
                # versions the rollout plan routes to stay loaded whatever the version policy says
                wanted = sorted(set(wanted) | (self._pinned(entry.name) & set(available)))
        except (ConfigError, OSError) as exc:
            entry.error = self._public(str(exc))
            entry.config_fingerprint = config_fp
            self._retire(list(entry.serving.values()))
            entry.serving = {}
            log.warning("model %s unavailable: %s", entry.name, exc)
            return
        entry.error = ""
        new_serving: dict[int, ServedVersion] = {}
        reasons: dict[int, str] = {}
        fingerprints: dict[int, Fingerprint] = {}
        for v in wanted:
            fp = _fingerprint(model_dir / str(v))
            fingerprints[v] = fp
            current = entry.serving.get(v)
            if current is not None and not config_changed and entry.fingerprints.get(v) == fp:
                new_serving[v] = current
                if v in entry.reasons:
                    reasons[v] = entry.reasons[v]  # the same files failed to reload before
                continue
            if not config_changed and v in entry.reasons and entry.fingerprints.get(v) == fp:
                reasons[v] = entry.reasons[v]
                continue
            try:
                new_serving[v] = await asyncio.to_thread(
                    load_version,
                    model_dir,
                    v,
                    config,
                    self._options,
                    self._default_max_batch_size,
                    self._on_batch,
                    self._inline_below_s,
                )
                log.info("loaded %s version %d", entry.name, v)
            except Exception as exc:  # any failure to load makes that version UNAVAILABLE
                reasons[v] = self._public(f"{type(exc).__name__}: {exc}")
                log.warning("model %s version %d failed to load: %s", entry.name, v, reasons[v])
                if current is not None and v in entry.serving:
                    new_serving[v] = current  # keep serving the version that worked
        retired = [sv for v, sv in entry.serving.items() if new_serving.get(v) is not sv]
        entry.serving = new_serving
        entry.reasons = reasons
        entry.fingerprints = fingerprints
        entry.config_fingerprint = config_fp
        self._retire(retired)
        if self._on_ready is not None:
            for v in new_serving:
                self._on_ready(entry.name, str(v), True)

    def _retire(self, versions: list[ServedVersion]) -> None:
        for sv in versions:
            if self._on_ready is not None:
                self._on_ready(sv.name, sv.version_str, False)
            task = asyncio.get_running_loop().create_task(sv.close())
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)

    async def start(self, mode: str, load_models: list[str]) -> None:
        """Initial loads: everything (modes none and poll) or the named models (explicit)."""
        names = load_models if mode == "explicit" else self.model_dirs()
        if mode == "explicit" and "*" in load_models:
            names = self.model_dirs()
        for name in names:
            try:
                await self.load(name)
            except FleetError as exc:
                log.warning("cannot load %s: %s", name, exc.message)

    async def stop(self) -> None:
        """Unload everything and wait for drains."""
        for entry in self._models.values():
            self._retire(list(entry.serving.values()))
            entry.serving = {}
        if self._draining:
            await asyncio.gather(*self._draining, return_exceptions=True)
