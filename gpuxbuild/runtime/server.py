"""HTTP serving of one artifact with FastAPI + uvicorn (the 'serve' extra).

Paths match the GPUX runtime 0.1.1 server: GET /health, GET /info, GET /metrics, POST /predict.
POST /predict takes the same JSON as `gpux run` and answers what `Model.predict` returns.
"""

# No `from __future__ import annotations`: FastAPI must see the real `Request` class, imported inside create_app.
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from gpuxbuild.errors import GpuxError, MissingExtraError
from gpuxbuild.runtime.session import Model, load

_ENV_ARTIFACT = "GPUX_SERVE_ARTIFACT"
_ENV_PROVIDER = "GPUX_SERVE_PROVIDER"
_ENV_DEVICE = "GPUX_SERVE_DEVICE_ID"
# A body over the limit is read on (and dropped) up to this many bytes so the client sees the 413; past
# that the connection is closed.
_DRAIN_BYTES = 64 << 20


@dataclass(frozen=True)
class ServeLimits:
    """What requests may ask of one server process (see docs/serve.md); each has a GPUX_SERVE_* variable."""

    max_body_bytes: int = 1 << 20  # a larger POST body is answered 413
    max_batch: int = 32  # texts (or tensor rows) in one request; more is 413
    max_json_depth: int = 32  # nesting of lists and objects; deeper is 400
    max_queue: int = 8  # predictions read, waiting or running; one more is 503 with Retry-After
    retry_after_s: int = 1  # the Retry-After of that 503

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GpuxError(
                    f"serve limit {f.name} must be an integer >= 1, got {value!r}",
                    f"pass --{f.name.replace('_', '-')} 1 or more, or set {self.env_name(f.name)}",
                    exit_code=2,
                )

    @staticmethod
    def env_name(field_name: str) -> str:
        return f"GPUX_SERVE_{field_name.upper()}"

    @classmethod
    def from_env(cls) -> "ServeLimits":
        """Defaults overridden by GPUX_SERVE_MAX_BODY_BYTES, GPUX_SERVE_MAX_BATCH, ... when set."""
        values = {}
        for f in fields(cls):
            raw = os.environ.get(cls.env_name(f.name))
            if raw is not None:
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise GpuxError(
                        f"{cls.env_name(f.name)} must be an integer, got {raw[:40]!r}",
                        f"set {cls.env_name(f.name)} to e.g. {f.default}",
                        exit_code=2,
                    ) from None
        return cls(**values)

    def to_env(self) -> None:
        """Put these limits where `from_env` finds them (for uvicorn's worker processes)."""
        for name, value in asdict(self).items():
            os.environ[self.env_name(name)] = str(value)


def _depth(data, limit: int) -> int:
    """Nesting depth of lists and dicts in `data`, counted up to limit + 1 (iterative: no recursion limit)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, depth)
            if deepest > limit:
                break
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return deepest


def _batch_size(data) -> int:
    """Texts or tensor rows a request asks for: the longest list among its values (1 for a lone text)."""
    if isinstance(data, list):
        return len(data)
    if isinstance(data, dict):
        return max((len(v) for v in data.values() if isinstance(v, list)), default=1)
    return 1


def _model_name(model: Model) -> str:
    path = model.folder / "gpux.yml"
    if path.is_file():
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            data = {}
        if isinstance(data, dict) and data.get("name"):
            return str(data["name"])
    return model.folder.resolve().name


def _info(model: Model, name: str) -> dict:
    # A superset of the GPUX runtime's ModelInfo.to_dict(), without its absolute path.
    size = sum((model.folder / rel).stat().st_size for rel in model.graphs.values())
    base = model.info()
    return {
        "format": "onnx",
        "graphs": base["graphs"],
        "inputs": [{**i, "required": True} for i in base["inputs"]],
        "metadata": {"execution_providers": base["providers"], "task": model.task},
        "name": name,
        "notice": base["notice"],
        "outputs": base["outputs"],
        "providers": base["providers"],
        "size_bytes": size,
        "size_mb": round(size / (1024 * 1024), 2),
        "task": model.task,
        "version": str(model.config.get("transformers_version", "1.0.0")),
    }


class _Refused(Exception):
    """A request answered with an error before it reaches the model."""

    def __init__(self, status: int, message: str, hint: str):
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


def create_app(
    artifact_dir: str | Path, provider: str | None = "auto", device_id: int = 0, limits: ServeLimits | None = None
):
    """A FastAPI app serving the artifact at `artifact_dir` (loaded once, now) within `limits` (default: ServeLimits())."""
    try:
        import asyncio

        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
    except ImportError as exc:
        raise MissingExtraError("serve", "gpux serve") from exc

    limits = limits or ServeLimits()
    model = load(artifact_dir, provider, device_id)
    name = _model_name(model)
    info = _info(model, name)
    # One prediction at a time, in a worker thread so the event loop keeps answering /health: the tokenizer's
    # padding/truncation settings are per call. `pending` counts requests from body reading to answer.
    gate = asyncio.Lock()
    pending = 0
    app = FastAPI(title=f"gpux - {name}", version=info["version"])

    def error(status: int, message: str, hint: str | None = None, headers: dict | None = None) -> JSONResponse:
        # "detail" is what FastAPI clients read; "error" the same message for everyone else.
        return JSONResponse(
            status_code=status, content={"detail": message, "error": message, "hint": hint}, headers=headers
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error: {type(exc).__name__}")

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> dict:
        return {"model": name, "status": "healthy"}

    @app.api_route("/info", methods=["GET", "HEAD"])
    async def model_info() -> dict:
        return info

    @app.api_route("/metrics", methods=["GET", "HEAD"])
    def metrics() -> dict:
        import onnxruntime

        return {
            "available_providers": list(onnxruntime.get_available_providers()),
            "provider": {"chain": model.choice.to_dict(), "name": model.providers[0]},
        }

    async def read_body(request: Request) -> bytes:
        too_large = _Refused(
            413,
            f"the request body is over the limit of {limits.max_body_bytes} bytes",
            f"send smaller requests, or start the server with --max-body-bytes "
            f"(or {ServeLimits.env_name('max_body_bytes')}) raised",
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            over = True
        else:
            over, chunks, size = False, [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_body_bytes:
                    over = True
                    break
                chunks.append(chunk)
        if over:
            drained = 0
            async for chunk in request.stream():  # read (and drop) the rest so the client gets to read the 413
                drained += len(chunk)
                if drained > _DRAIN_BYTES:
                    break
            raise too_large
        return b"".join(chunks)

    def decode(body: bytes):
        try:
            data = json.loads(body)
        except RecursionError:
            data, depth = None, limits.max_json_depth + 1
        except ValueError:  # also non-UTF-8 bytes
            raise _Refused(
                400, "the request body is not JSON", 'send e.g. {"text": "..."} with Content-Type: application/json'
            ) from None
        else:
            depth = _depth(data, limits.max_json_depth)
        if depth > limits.max_json_depth:
            raise _Refused(
                400,
                f"the request JSON is nested deeper than {limits.max_json_depth} levels",
                f"raise --max-json-depth ({ServeLimits.env_name('max_json_depth')}) if you need more",
            )
        batch = _batch_size(data)
        if batch > limits.max_batch:
            raise _Refused(
                413,
                f"the request has {batch} inputs, over the batch limit of {limits.max_batch}",
                f"split it, or raise --max-batch ({ServeLimits.env_name('max_batch')})",
            )
        return data

    @app.post("/predict")
    async def predict(request: Request):
        nonlocal pending
        if pending >= limits.max_queue:
            return error(
                503,
                f"the server is busy ({pending} requests queued, the limit is {limits.max_queue})",
                f"retry after {limits.retry_after_s} s, or raise --max-queue ({ServeLimits.env_name('max_queue')})",
                {"Retry-After": str(limits.retry_after_s)},
            )
        pending += 1
        try:
            data = decode(await read_body(request))
            async with gate:
                return await run_in_threadpool(model.predict, data)
        except _Refused as exc:
            return error(exc.status, exc.message, exc.hint)
        except GpuxError as exc:
            return error(400 if exc.exit_code == 2 else 422, exc.message, exc.hint)
        finally:
            pending -= 1

    return app


def app_from_env():
    """uvicorn factory for multi-worker serving: each worker process loads the artifact named in the environment."""
    return create_app(
        os.environ[_ENV_ARTIFACT],
        os.environ.get(_ENV_PROVIDER) or "auto",
        int(os.environ.get(_ENV_DEVICE, "0")),
        ServeLimits.from_env(),
    )


def serve(
    artifact_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    provider: str | None = "auto",
    device_id: int = 0,
    limits: ServeLimits | None = None,
) -> None:
    """Serve the artifact with uvicorn until interrupted. Loads it first so errors show before binding.

    `limits` defaults to ServeLimits.from_env(): the GPUX_SERVE_* variables, else the defaults."""
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingExtraError("serve", "gpux serve") from exc
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise GpuxError(f"workers must be an integer >= 1, got {workers!r}", "pass --workers 1 or more", exit_code=2)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise GpuxError(f"port must be an integer from 0 to 65535, got {port!r}", "pass e.g. --port 8080", exit_code=2)
    limits = limits or ServeLimits.from_env()
    if workers == 1:
        uvicorn.run(create_app(artifact_dir, provider, device_id, limits), host=host, port=port, log_level="info")
        return
    load(artifact_dir, provider, device_id)  # fail fast, in this process, on a bad artifact or provider
    os.environ[_ENV_ARTIFACT] = str(Path(artifact_dir).resolve())
    os.environ[_ENV_PROVIDER] = provider or "auto"
    os.environ[_ENV_DEVICE] = str(device_id)
    limits.to_env()
    uvicorn.run(
        "gpuxbuild.runtime.server:app_from_env", factory=True, host=host, port=port, workers=workers, log_level="info"
    )
