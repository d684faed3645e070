"""The built-in web page's static files (package data under gateway/web/, no build step)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}
# The page loads only its own files and talks only to this server.
CSP = (
    b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True, slots=True)
class Asset:
    """One file: its bytes and Content-Type."""

    body: bytes
    content_type: bytes


class WebAssets:
    """The page's files by URL path, read once from the package."""

    def __init__(self) -> None:
        folder = resources.files("fleetserve.gateway").joinpath("web")
        self._by_path: dict[str, Asset] = {}
        for entry in folder.iterdir():
            suffix = "." + entry.name.rpartition(".")[2]
            if entry.is_file() and suffix in _TYPES:
                asset = Asset(entry.read_bytes(), _TYPES[suffix])
                self._by_path[f"/web/{entry.name}"] = asset
                if entry.name == "index.html":
                    self._by_path["/"] = asset

    def get(self, path: str) -> Asset | None:
        """The file served at `path` ("/" is the page), or None."""
        return self._by_path.get(path)

    def paths(self) -> list[str]:
        """Every path served."""
        return sorted(self._by_path)
