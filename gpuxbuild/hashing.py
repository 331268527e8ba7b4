"""Hashes: sha256 of files and streams, and canonical digests of JSON-like data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


def is_hex_digest(s: str | None, length: int) -> bool:
    """True for a lowercase hex digest of `length` characters (64: sha256; 40: sha1, a git object id)."""
    return isinstance(s, str) and len(s) == length and set(s) <= _HEX


def is_sha256(s: str | None) -> bool:
    """True for a 64-char lowercase hex string."""
    return is_hex_digest(s, 64)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def canonical_json(data: object) -> bytes:
    """The one byte form of JSON-like data that digests are taken over: sorted keys, no spaces."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest(data: object) -> str:
    """`sha256:<hex>` of the canonical JSON of `data`."""
    return "sha256:" + sha256_bytes(canonical_json(data))
