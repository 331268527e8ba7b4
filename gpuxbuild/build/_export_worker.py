"""Entry point of the export process started by ``convert.export_onnx``: ``python -m ... REQUEST RESULT``.

Reads the request JSON, runs ``convert.run_export``, writes ``{"result": ...}`` or ``{"error": ...}`` (a
GpuxError) to RESULT. Any other exception leaves RESULT unwritten and its traceback on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gpuxbuild.build.convert import ValidationError, run_export
from gpuxbuild.errors import GpuxError


def main(request_path: str, result_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    try:
        payload = {"result": run_export(**request)}
    except GpuxError as exc:
        error = {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
        if isinstance(exc, ValidationError):
            error["max_diff"] = exc.max_diff
        payload = {"error": error}
    Path(result_path).write_text(json.dumps(payload))


if __name__ == "__main__":
    main(*sys.argv[1:])
