"""`gpux build --shard I/N`: a deterministic share of the lock's models for one of N CI runners.

Models are dealt largest first (by source bytes, then name) to the share with the fewest bytes so far (the
lowest-numbered on a tie), so every runner computes the same split from the same lock, and the shares convert
about the same amount of weights.
"""

from __future__ import annotations

import re

from gpuxbuild.errors import GpuxError

_SHARD = re.compile(r"^([1-9]\d*)/([1-9]\d*)$")


def parse_shard(text: str) -> tuple[int, int]:
    """(I, N) from "I/N" with 1 <= I <= N; a usage error otherwise."""
    m = _SHARD.match(text.strip())
    if not m or int(m.group(1)) > int(m.group(2)):
        raise GpuxError(
            f"--shard {text!r}: expected I/N with 1 <= I <= N", "e.g. --shard 1/4 ... --shard 4/4", exit_code=2
        )
    return int(m.group(1)), int(m.group(2))


def shard_of(sizes: dict[str, int], index: int, count: int) -> list[str]:
    """The names (sorted) that share `index` of `count` (1-based) gets, from name -> source bytes."""
    loads = [0] * count
    mine = []
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        i = min(range(count), key=lambda k: (loads[k], k))
        loads[i] += sizes[name]
        if i == index - 1:
            mine.append(name)
    return sorted(mine)
