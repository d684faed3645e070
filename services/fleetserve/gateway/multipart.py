"""A small multipart/form-data reader (RFC 7578) for the image route's browser uploads.

The whole body is in memory already (its size is capped before it is read), so this splits on
the boundary rather than streaming.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetserve.protocol.errors import invalid


@dataclass(frozen=True, slots=True)
class Part:
    """One form field: its name, file name (for file fields), content type and bytes."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


def media_type(value: str) -> tuple[str, dict[str, str]]:
    """A Content-Type (or Content-Disposition) value split into its lower-case type and parameters."""
    head, *rest = _split_params(value)
    params: dict[str, str] = {}
    for item in rest:
        key, sep, val = item.partition("=")
        if not sep:
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[key.strip().lower()] = val
    return head.strip().lower(), params


def parse_form(body: bytes, content_type: str) -> list[Part]:
    """The parts of a multipart/form-data body; INVALID_ARGUMENT when it is malformed."""
    _, params = media_type(content_type)
    boundary = params.get("boundary")
    if not boundary or len(boundary) > 200:
        raise invalid("multipart/form-data needs a boundary parameter in Content-Type")
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0 or (start > 0 and body[start - 2 : start] != b"\r\n"):
        raise invalid("multipart body does not start with its boundary")
    pos = start + len(delimiter)
    parts: list[Part] = []
    while True:
        if body[pos : pos + 2] == b"--":
            return parts
        if body[pos : pos + 2] != b"\r\n":
            raise invalid("multipart boundary is not followed by a line break")
        pos += 2
        end = body.find(b"\r\n" + delimiter, pos)
        if end < 0:
            raise invalid("multipart body ends before its closing boundary")
        parts.append(_part(body[pos:end]))
        pos = end + 2 + len(delimiter)


def _part(raw: bytes) -> Part:
    head, sep, data = raw.partition(b"\r\n\r\n")
    if not sep:
        if raw.startswith(b"\r\n"):  # a part with no headers at all
            head, data = b"", raw[2:]
        else:
            raise invalid("multipart part has no blank line after its headers")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").split("\r\n"):
        key, colon, value = line.partition(":")
        if colon:
            headers[key.strip().lower()] = value.strip()
    kind, disposition = media_type(headers.get("content-disposition", ""))
    if kind != "form-data" or "name" not in disposition:
        raise invalid("multipart part needs 'Content-Disposition: form-data; name=...'")
    content_type = media_type(headers.get("content-type", "application/octet-stream"))[0]
    return Part(disposition["name"], disposition.get("filename"), content_type, data)


def _split_params(value: str) -> list[str]:
    # split on ';' outside double quotes
    out: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            out.append("".join(current))
            current = []
            continue
        current.append(ch)
    out.append("".join(current))
    return out
