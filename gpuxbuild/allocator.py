"""The C allocator's handling of large buffers, for the processes that download, load and export models.

glibc gives every allocation over 32 MB (a weight, a graph's bytes, an ONNX Runtime initializer) pages of its own
and returns them to the system when it is freed, so the next large buffer faults in fresh, zeroed pages again.
An export or a session load makes dozens of such buffers; on a VM whose host reclaims freed memory, each fresh page
may also stall on the host. Served from the heap and never trimmed, freed memory is reused instead (roberta-base's
export: 7.0 and 6.5 s -> 4.2 and 5.1 s; its ONNX Runtime session: 1.7-2.0 s -> 1.2-1.3 s; a download's 10 MiB
chunks: 0.06 s less of a 100 MB `gpux pull` on loopback), and the peak memory is the same. The export worker gets
it from its environment, the `gpux` process from `cli.main` (a program using the Python API decides for itself).
Other C libraries than glibc ignore all of this.
"""

from __future__ import annotations

import ctypes
import os

# glibc's names for the two settings, as environment variables (read when a process starts) and mallopt codes
_MMAP_MAX, _TRIM_THRESHOLD = "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"
_M_MMAP_MAX, _M_TRIM_THRESHOLD = -4, -1
_NEVER = (1 << 31) - 1  # mallopt takes an int: 2 GB of free memory at the top of the heap before it is trimmed


def reuse_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child process that reuses freed memory, keeping any allocator setting `env` already has."""
    return {_MMAP_MAX: "0", _TRIM_THRESHOLD: str(_NEVER)} | env


def reuse_freed_memory() -> None:
    """From now on, let this process reuse the large buffers it frees (unless the user set glibc's variables)."""
    libc = _glibc()
    if libc is None:
        return
    if _MMAP_MAX not in os.environ:
        libc.mallopt(_M_MMAP_MAX, 0)
    if _TRIM_THRESHOLD not in os.environ:
        libc.mallopt(_M_TRIM_THRESHOLD, _NEVER)


def release_freed_memory() -> None:
    """Give the memory this process has freed back to the system (after an export, before waiting for the next)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    # musl and macOS's libc lack one or both
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
