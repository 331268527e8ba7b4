"""Replacing attributes of another library (torch, optimum, onnx) for the length of a block: how the export
hooks into steps those libraries offer no option for (see convert.py and exported_graphs.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_MISSING = object()


@contextmanager
def patched(owner: object, **replacements: object) -> Iterator[None]:
    """Inside the block `owner.NAME` is the value given as NAME=value; afterwards each attribute is again what
    `owner` itself held (a class's staticmethod stays one; an inherited attribute is inherited again)."""
    saved = {name: vars(owner).get(name, _MISSING) for name in replacements}
    for name, value in replacements.items():
        setattr(owner, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, value)
