"""The manifest's license policy (`policy: {allow_licenses: [...]}`) over the licenses a lock records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpuxbuild.errors import GpuxError, quote

if TYPE_CHECKING:
    from collections.abc import Iterable


def check_licenses(allowed: tuple[str, ...] | None, entries: Iterable) -> None:
    """Raise GpuxError naming the first model (by name) whose license is not in `allowed` (None: no policy).

    Ids compare case-insensitively (cards write `apache-2.0`, SPDX `Apache-2.0`); a model without a recorded
    license is refused too: what is unknown cannot be allowed."""
    if allowed is None:
        return
    ok = {a.lower() for a in allowed}
    for entry in sorted(entries, key=lambda e: e.name):
        if (entry.license or "").lower() not in ok:
            found = f"license {quote(entry.license)}" if entry.license else "no license in its card or config"
            raise GpuxError(
                f"model {entry.name!r}: {found} is not allowed by policy.allow_licenses ({', '.join(allowed)})",
                "use another model, or add its license to policy.allow_licenses in gpux.models.yml",
            )
