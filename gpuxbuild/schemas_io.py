"""Loading the JSON Schemas shipped in `schemas/` and turning validation errors into one line."""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

from gpuxbuild.errors import quote

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
ENUM_LISTED = 8  # an error lists the accepted values of an enum up to this many


@cache
def load_schema(name: str) -> dict:
    """The JSON Schema `schemas/<name>` as a dict."""
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


def schema_validator(schema: dict):
    """A JSON Schema draft 2020-12 validator of `schema` (no `format` is checked).

    jsonschema imports the optional IRI syntax checker `rfc3987_syntax` when it is installed, which compiles
    about 40 grammars at import: over a second of CPU in every command that reads gpux.models.yml, gpux.lock
    or writes a gpux.yml, for a format check gpuxbuild never asks for. It is kept out (a None entry in
    sys.modules makes its import fail, which jsonschema expects), unless this process imported it already.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None: "import fails"
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema)


def field_path(parts) -> str:
    """`models.sentiment.revision` from a jsonschema error path."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def describe_error(err) -> tuple[list, str]:
    """(path of the offending field, a short human reason) for a jsonschema ValidationError."""
    path = list(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(known)) if isinstance(err.instance, dict) else []
        if extra:
            reason = f"unknown key '{extra[0]}'"
            if known:
                reason += f" (known keys: {', '.join(known)})"
            return [*path, extra[0]], reason
    if v == "required":
        return path, err.message.replace("is a required property", "is required")
    if (
        v == "propertyNames"
        or "propertyNames" in err.relative_schema_path
        or (err.parent is not None and err.parent.validator == "propertyNames")
    ):
        return (
            path,
            f"invalid name {quote(err.instance)}: use letters, digits, '.', '_' or '-' (first a letter or digit)",
        )
    if v in ("enum", "const"):
        allowed = [str(a) for a in (err.validator_value if v == "enum" else [err.validator_value])]
        if len(allowed) <= ENUM_LISTED:
            return path, f"{quote(err.instance)} is not one of: {', '.join(allowed)}"
        # a long list would hide the one line's point: the likeliest value, and where the list is
        import difflib  # only for this message: every command validates a file, few of them fail

        close = difflib.get_close_matches(str(err.instance), allowed, n=1)
        guess = f"; did you mean '{close[0]}'?" if close else ""
        return (
            path,
            f"{quote(err.instance)} is not one of the {len(allowed)} accepted values{guess} (listed in `gpux help manifest`)",
        )
    if v == "type":
        return path, f"expected {err.validator_value}, got {type(err.instance).__name__} {quote(err.instance)}"
    # jsonschema's own messages start with the whole instance ("'xxx...' is too long"): cut it.
    return path, err.message.replace(repr(err.instance), quote(err.instance), 1)


def first_error(validator, data):
    """The most relevant validation error (deepest path first, then by path), or None."""
    errors = list(validator.iter_errors(data))
    if not errors:
        return None
    from jsonschema.exceptions import best_match

    return best_match(errors)
