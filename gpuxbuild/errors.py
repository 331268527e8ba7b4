"""User-facing errors: one line, what to do about it, and an exit code."""

from __future__ import annotations


class GpuxError(Exception):
    """An error caused by the user's input or environment, shown without a traceback.

    ``hint`` says what to do about it. ``exit_code`` is what the CLI exits with.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


QUOTE_LIMIT = 100  # characters of a value an error message quotes


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` for an error message, cut to a short prefix: a 10 MB value must not make a 10 MB line."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def quote(value, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)`, shortened, for an error message."""
    return shorten(repr(value), limit)


class ManifestError(GpuxError):
    """The manifest (gpux.models.yml) or a lock file is malformed. Exit code 2, like a usage error."""

    exit_code = 2


class RegistryError(GpuxError):
    """A registry could not resolve or fetch a model (missing repo, revision, auth, network)."""


class StaleLockError(GpuxError):
    """The lock does not match the manifest."""


class IntegrityError(GpuxError):
    """Bytes did not match their expected sha256."""


class InferenceError(GpuxError):
    """The model failed while running on inputs it accepted (an onnxruntime or execution provider failure):
    the artifact's or the machine's fault, not the request's. `gpux serve` answers it with 500."""


class MissingExtraError(GpuxError):
    """An optional dependency group is needed for this operation."""

    def __init__(self, extra: str, what: str):
        super().__init__(
            f"{what} needs the '{extra}' extra, which is not installed",
            f"install it with: pip install 'gpuxbuild[{extra}]'",
        )
