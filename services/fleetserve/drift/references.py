"""The reference profiles of the versions in a model repository, loaded when first needed.

`<repository>/<model>/<version>/metadata.json`, key `reference_profile` (`profile` module). A
version without one (or with a malformed one, logged) is looked up again after `retry_s`, so
a profile added later is picked up. Names that are not a plain folder name (model) or a
positive integer (version) are never looked up.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fleetserve.common.clock import Clock, SystemClock

from .profile import Reference, load_reference

log = logging.getLogger(__name__)


def _valid(model: str, version: str) -> bool:
    plain = bool(model) and not model.startswith(".") and "/" not in model and "\\" not in model
    return plain and version.isdigit() and int(version) > 0


class ReferenceStore:
    """Reference profiles by (model, version), cached."""

    def __init__(self, repository: Path, retry_s: float = 30.0, clock: Clock | None = None) -> None:
        self.repository = Path(repository)
        self.retry_s = retry_s
        self.clock: Clock = clock or SystemClock()
        self._found: dict[tuple[str, str], Reference] = {}
        self._missing: dict[tuple[str, str], float] = {}  # when last looked up in vain

    def get(self, model: str, version: str) -> Reference | None:
        """The version's reference profile, or None when it has none (yet)."""
        key = (model, version)
        found = self._found.get(key)
        if found is not None:
            return found
        now = self.clock.monotonic()
        last = self._missing.get(key)
        if last is not None and now - last < self.retry_s:
            return None
        reference = self._load(model, version) if _valid(model, version) else None
        if reference is None:
            self._missing[key] = now
            return None
        self._missing.pop(key, None)
        self._found[key] = reference
        log.info(
            "reference profile of %s v%s: %d items, %d input features",
            model,
            version,
            reference.items,
            len(reference.inputs),
        )
        return reference

    def _load(self, model: str, version: str) -> Reference | None:
        folder = self.repository / model / version
        try:
            reference = load_reference(folder)
        except (ValueError, OSError) as exc:
            log.warning("reference profile of %s v%s unusable: %s", model, version, exc)
            return None
        if reference is None and (model, version) not in self._missing:
            log.warning(
                "%s v%s has no reference profile in %s: its drift is not measured",
                model,
                version,
                folder / "metadata.json",
            )
        return reference
