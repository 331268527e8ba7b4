"""`Record`: the base of persisted JSON records (the store's refs, the sync record).

Records are read on the no-op `gpux sync` path, which answers in a few milliseconds: importing
dataclasses (and with it inspect) and typing would cost more than the whole check. So a record is a
plain class whose fields are its `__slots__` (same names as its `__init__` parameters), and this base
gives it equality, a repr and `replace`; each record converts itself with `from_dict` / `as_dict`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Self


class Record:
    """Equality, repr and `replace` by the fields a subclass names in `__slots__`."""

    __slots__: tuple[str, ...] = ()
    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass

    def _fields(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__slots__}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._fields() == other._fields()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._fields().items())})"

    def replace(self, **changes: object) -> Self:
        """A copy with `changes` applied (as dataclasses.replace)."""
        return type(self)(**{**self._fields(), **changes})
