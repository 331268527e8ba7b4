"""Placing store files elsewhere (a project's .gpux/models/, a build's staging folder): reflink, hard link
or copy, whichever this filesystem offers (docs/sync.md says what each guarantees)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from gpuxbuild.errors import GpuxError

LINK_MODES = ("auto", "reflink", "hardlink", "copy")
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
_NO_REFLINK = {errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS, errno.EBADF, errno.EPERM}
_NO_HARDLINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP}


class Linker:
    """Places store files elsewhere (a project, a build's staging folder): reflink, hardlink or copy;
    `auto` keeps the first that works on this filesystem."""

    def __init__(self, mode: str = "auto"):
        if mode not in LINK_MODES:
            raise GpuxError(f"--link-mode {mode}: unknown", f"use one of: {', '.join(LINK_MODES)}", exit_code=2)
        self.mode = mode
        self.used: set[str] = set()
        self._candidates = ["reflink", "hardlink", "copy"] if mode == "auto" else [mode]

    def place(self, src: Path, dst: Path) -> None:
        for how in list(self._candidates):
            try:
                getattr(self, f"_{how}")(src, dst)
            except OSError as exc:
                dst.unlink(missing_ok=True)
                fallback = _NO_REFLINK if how == "reflink" else _NO_HARDLINK if how == "hardlink" else set()
                if self.mode != "auto" or exc.errno not in fallback:
                    if self.mode != "auto" and exc.errno in fallback:
                        raise GpuxError(
                            f"--link-mode {how}: not supported here ({os.strerror(exc.errno)}) for {dst}",
                            "use --link-mode auto, which falls back to hardlink or copy",
                        ) from None
                    raise
                self._candidates.remove(how)  # this filesystem does not do it: do not try again
                continue
            self.used.add(how)
            return
        raise GpuxError(f"cannot place {dst}", "check permissions of the target folder")

    @staticmethod
    def _reflink(src: Path, dst: Path) -> None:
        import fcntl

        with open(src, "rb") as s, open(dst, "xb") as d:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
        os.chmod(dst, 0o444)

    @staticmethod
    def _hardlink(src: Path, dst: Path) -> None:
        os.link(src, dst)  # store files are 0444 already: an edit in the project cannot reach the store

    @staticmethod
    def _copy(src: Path, dst: Path) -> None:
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o444)
