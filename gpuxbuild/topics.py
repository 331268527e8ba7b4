"""`gpux help TOPIC`: the docs, shipped in the package (gpuxbuild/docs/*.md), one topic per page.

A hint says "see `gpux help manifest`" rather than a path of the source checkout, which a pip-installed
user does not have, or a URL, which an offline machine cannot open.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from gpuxbuild.errors import GpuxError


@dataclass(frozen=True)
class Topic:
    name: str  # the page's file name without .md
    title: str  # its first heading
    text: str


def _pages():
    return sorted((p for p in (files("gpuxbuild") / "docs").iterdir() if p.name.endswith(".md")), key=lambda p: p.name)


def topics() -> list[Topic]:
    """Every topic, sorted by name."""
    out = []
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        out.append(Topic(page.name[:-3], text.splitlines()[0].lstrip("# ").strip() if text else "", text))
    return out


def topic(name: str) -> Topic:
    """The topic `name`; a usage error naming the topics there are otherwise."""
    found = {t.name: t for t in topics()}
    if name not in found:
        raise GpuxError(
            f"no help topic {name!r}", "topics: " + ", ".join(found) + " (`gpux help` lists them)", exit_code=2
        )
    return found[name]
