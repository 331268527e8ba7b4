"""The export process started by ``convert.ExportPool``: ``python -m gpuxbuild.build._export_worker --serve``.

It reads one JSON line per export from stdin, ``[REQUEST, RESULT]`` (two file paths), runs ``convert.run_export``
on the request, writes ``{"result": ...}`` or ``{"error": ...}`` (a GpuxError) to RESULT, and answers with one line
on stdout. Any other exception leaves RESULT unwritten and its traceback on stderr. Libraries' prints go to
stderr, so stdout carries only the protocol.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

from gpuxbuild.allocator import release_freed_memory
from gpuxbuild.build.convert import ValidationError, run_export
from gpuxbuild.errors import GpuxError


def main(request_path: str, result_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    try:
        payload = {"result": run_export(**request)}
    except GpuxError as exc:
        error: dict[str, str | float | None] = {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
        if isinstance(exc, ValidationError):
            error["max_diff"] = exc.max_diff
        payload = {"error": error}
    Path(result_path).write_text(json.dumps(payload))


def serve() -> None:
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # These imports create some 500k objects, and the cyclic garbage collector traversed all of them again and
    # again while they were being created: 0.5-0.8 s of CPU of a 4-5 s start. It stays off until they are done;
    # what they created is then frozen (never traversed again), the few MB of cycles they left included.
    gc.disable()
    try:  # import what every export uses while the parent fetches sources; run_export reports a missing extra
        import onnxruntime  # noqa: F401  (validation)
        import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs)
    except ImportError:
        pass
    finally:
        gc.freeze()
        gc.enable()
    for line in sys.stdin:
        request_path, result_path = json.loads(line)
        main(request_path, result_path)
        protocol.write("done\n")
        protocol.flush()
        release_freed_memory()  # while waiting for the next export (see convert._worker_env)


if __name__ == "__main__":
    serve()
