"""HTTP serving of one or more artifacts with FastAPI + uvicorn (the 'serve' extra), in three protocols:

- GPUX runtime 0.1.1: GET /health, GET /info, POST /predict with the JSON of `gpux run` (answers `Model.predict`'s);
- Hugging Face Inference API: POST / and /predict with {"inputs", "parameters"} (runtime/hfapi.py);
- OpenAI /v1: models, embeddings, completions, chat/completions, with streaming (runtime/openai_api.py);
plus GET /metrics (Prometheus). With several models, /models/NAME[/predict] or a "model" field selects one.
"""

# No `from __future__ import annotations`: FastAPI must see the real `Request` class, imported inside create_app.
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from gpuxbuild.errors import GpuxError, InferenceError, MissingExtraError
from gpuxbuild.runtime.session import Model, load

if TYPE_CHECKING:
    import asyncio

    from gpuxbuild.runtime.batching import Batcher

_ENV_ARTIFACT = "GPUX_SERVE_ARTIFACT"
_ENV_PROVIDER = "GPUX_SERVE_PROVIDER"
_ENV_DEVICE = "GPUX_SERVE_DEVICE_ID"
# Request bodies that are a file (the Inference API's image and audio requests), not JSON.
_FILE_CONTENT_TYPES = ("image/", "audio/", "application/octet-stream")
# A body over the limit is read on (and dropped) up to this many bytes so the client sees the 413; past
# that the connection is closed.
_DRAIN_BYTES = 64 << 20
_log = logging.getLogger("gpuxbuild.serve")


@dataclass(frozen=True)
class ServeLimits:
    """What requests may ask of one server process (see docs/serve.md); each has a GPUX_SERVE_* variable."""

    max_body_bytes: int = 1 << 20  # a larger POST body is answered 413
    max_batch: int = 32  # texts (or tensor rows) in one request; more is 413
    max_json_depth: int = 32  # nesting of lists and objects; deeper is 400
    max_queue: int = 8  # predictions read, waiting or running; one more is 503 with Retry-After
    retry_after_s: int = 1  # the Retry-After of that 503
    max_wait_ms: int = 5  # how long a request waits for others to join its batch (dynamic batching)

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


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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
    """A request answered with an error before (or instead of) reaching the model."""

    def __init__(self, status: int, message: str, hint: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.hint, self.headers = status, message, hint, headers


def _usage_error(exc: GpuxError) -> _Refused:
    """The answer to a GpuxError: 400 for bad requests, 422 for inputs the model cannot take, 500 for a model
    that failed on inputs it took."""
    if isinstance(exc, InferenceError):
        _log.error("%s (%s)", exc.message, exc.hint)
        return _Refused(500, exc.message, exc.hint)
    return _Refused(400 if exc.exit_code == 2 else 422, exc.message, exc.hint)


def _internal_error(exc: Exception) -> _Refused:
    """The answer to an unexpected exception: a 500 naming only its type; the traceback goes to the server log."""
    _log.error("internal error while answering a request", exc_info=exc)
    return _Refused(500, f"internal error: {type(exc).__name__}", "the server log has the details")


@dataclass
class _Served:
    """One model of the server: loaded once, one prediction (or batch) at a time under `gate`."""

    name: str
    model: Model
    info: dict
    gate: "asyncio.Lock"
    batcher: "Batcher | None"  # for encoder tasks


def _artifacts(artifacts) -> dict[str, Path]:
    """name -> folder: one folder (named by its gpux.yml), or a mapping of names to folders."""
    if isinstance(artifacts, dict):
        if not artifacts:
            raise GpuxError("no models to serve", "sync models with gpux sync, or name one: gpux serve NAME")
        return {str(k): Path(v) for k, v in sorted(artifacts.items())}
    return {"": Path(artifacts)}


class _Metrics:
    """The Prometheus series of one app (its own registry: several apps may live in one process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("gpux_requests", "HTTP requests answered", ["path", "status"], registry=self.registry)
        self.errors = Counter(
            "gpux_errors", "Requests answered 4xx/5xx, by status code", ["status"], registry=self.registry
        )
        self.latency = Histogram(
            "gpux_request_duration_seconds",
            "Time from request to answer (to the first byte of a stream)",
            ["path"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.batch = Histogram(
            "gpux_batch_size",
            "Texts per onnxruntime run of a batched model",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )


class _Counted:
    """ASGI middleware: each answer counted in `metrics` by route template and status, timed to its first byte."""

    def __init__(self, app, metrics: _Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, started = time.perf_counter(), False

        def count(status: int) -> None:
            path = getattr(scope.get("route"), "path", "other")  # the router has matched by now
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)
            if status >= 400:
                self.metrics.errors.labels(str(status)).inc()

        async def counted(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                count(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counted)
        except Exception:
            if not started:  # Starlette's outermost middleware answers it with a 500, outside this one
                count(500)
            raise


def create_app(artifacts, provider: str | None = "auto", device_id: int = 0, limits: ServeLimits | None = None):
    """A FastAPI app serving `artifacts` (a folder, or {name: folder}; loaded once, now) within `limits`
    (default: ServeLimits())."""
    try:
        import asyncio

        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, Response, StreamingResponse
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
    except ImportError as exc:
        raise MissingExtraError("serve", "gpux serve") from exc
    try:
        import prometheus_client
    except ImportError as exc:
        raise MissingExtraError("serve", "gpux serve") from exc

    from gpuxbuild.runtime import hfapi, openai_api
    from gpuxbuild.runtime.batching import BATCHED_TASKS, Batcher
    from gpuxbuild.runtime.inputs import parse_inputs

    limits = limits or ServeLimits()
    metrics = _Metrics()
    served: dict[str, _Served] = {}
    for key, folder in _artifacts(artifacts).items():
        model = load(folder, provider, device_id, spin=False)
        name = key or _model_name(model)
        gate = asyncio.Lock()
        batcher = None
        if model.task in BATCHED_TASKS:
            batcher = Batcher(
                model,
                gate,
                limits.max_batch,
                limits.max_wait_ms / 1000.0,
                run_in_threadpool,
                metrics.batch.labels(name).observe,
            )
        served[name] = _Served(name, model, _info(model, name), gate, batcher)
    names = sorted(served)
    single = served[names[0]] if len(names) == 1 else None
    # `pending` counts requests from body reading to answer (to the end of a stream).
    pending = 0
    title = single.name if single else f"{len(names)} models"
    app = FastAPI(title=f"gpux - {title}", version=single.info["version"] if single else "1.0.0")

    def error(
        status: int, message: str, hint: str | None = None, headers: dict | None = None, openai: bool = False
    ) -> JSONResponse:
        content: dict[str, object]
        if openai:  # the OpenAI clients read {"error": {"message", "type", ...}}
            kind = "invalid_request_error" if status < 500 else "server_error"
            content = {"error": {"code": status, "hint": hint, "message": message, "param": None, "type": kind}}
        else:  # "detail" is what FastAPI clients read; "error" the same message for everyone else (HF clients)
            content = {"detail": message, "error": message, "hint": hint}
        return JSONResponse(status_code=status, content=content, headers=headers)

    def is_openai(request: Request) -> bool:
        return request.url.path.startswith("/v1/")

    app.add_middleware(_Counted, metrics=metrics)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None), is_openai(request))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error: {type(exc).__name__}", None, None, is_openai(request))

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> dict:
        if single:
            return {"model": single.name, "status": "healthy"}
        return {"models": names, "status": "healthy"}

    @app.api_route("/info", methods=["GET", "HEAD"])
    async def model_info() -> dict:
        return single.info if single else {"models": {n: served[n].info for n in names}}

    @app.api_route("/models/{name}/info", methods=["GET", "HEAD"])
    async def named_info(name: str):
        try:
            return choose(name, False).info
        except _Refused as exc:
            return error(exc.status, exc.message, exc.hint)

    @app.api_route("/metrics", methods=["GET", "HEAD"])
    def prometheus() -> Response:
        return Response(
            prometheus_client.generate_latest(metrics.registry), media_type=prometheus_client.CONTENT_TYPE_LATEST
        )

    def choose(name, openai: bool) -> _Served:
        if name is None or name == "":
            if single:
                return single
            raise _Refused(
                400,
                f"this server serves {len(names)} models: say which",
                f'POST /models/NAME, or add "model": NAME to the body; models: {names}',
            )
        if not isinstance(name, str) or name not in served:
            if single and openai:  # OpenAI clients always send some model name; one model answers to any
                return single
            raise _Refused(404, f"no model {str(name)[:80]!r} is served here", f"models: {names}")
        return served[name]

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

    def decode(body: bytes, batch_of=_batch_size, content_type: str = ""):
        if content_type.startswith(_FILE_CONTENT_TYPES):
            return body
        try:
            data = json.loads(body)
        except RecursionError:
            data, depth = None, limits.max_json_depth + 1
        except ValueError:
            if body.lstrip()[:1] not in (b"{", b"[", b'"') and not _is_utf8(body):
                return body  # an image or a sound sent without its Content-Type
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
        batch = batch_of(data)
        if batch > limits.max_batch:
            raise _Refused(
                413,
                f"the request has {batch} inputs, over the batch limit of {limits.max_batch}",
                f"split it, or raise --max-batch ({ServeLimits.env_name('max_batch')})",
            )
        return data

    def admit() -> None:
        nonlocal pending
        if pending >= limits.max_queue:
            raise _Refused(
                503,
                f"the server is busy ({pending} requests queued, the limit is {limits.max_queue})",
                f"retry after {limits.retry_after_s} s, or raise --max-queue ({ServeLimits.env_name('max_queue')})",
                {"Retry-After": str(limits.retry_after_s)},
            )
        pending += 1

    def release() -> None:
        nonlocal pending
        pending -= 1

    async def infer(target: _Served, data, options: dict | None = None):
        """`Model.predict(data, **options)`, batched with other requests when the model's task allows."""
        options = options or {}
        try:
            parsed = parse_inputs(data, target.model.input_types, target.model.task, options)
            # Zero-shot runs a row per candidate label: batched on its own, not with other requests' texts.
            if target.batcher is not None and not parsed.is_tensors and "candidate_labels" not in parsed.options:
                results = await target.batcher.submit(parsed)
                return {"results": results} if parsed.batched else results[0]
            async with target.gate:
                return await run_in_threadpool(target.model.predict, data, **options)
        except GpuxError as exc:
            raise _usage_error(exc) from None

    async def handle(request: Request, work, openai: bool = False, batch_of=_batch_size):
        """Admit, read and decode the body, then `await work(data)`; refusals in the protocol's error shape."""
        try:
            admit()
        except _Refused as exc:
            return error(exc.status, exc.message, exc.hint, exc.headers, openai)
        streaming = False
        try:
            data = decode(await read_body(request), batch_of, request.headers.get("content-type", ""))
            answer = await work(data)
            streaming = isinstance(answer, StreamingResponse)
            # Plain JSON answers skip FastAPI's jsonable_encoder walk (same bytes: JSONResponse renders them).
            return answer if isinstance(answer, Response) else JSONResponse(answer)
        except _Refused as exc:
            return error(exc.status, exc.message, exc.hint, exc.headers, openai)
        except GpuxError as exc:
            refused = _usage_error(exc)
            return error(refused.status, refused.message, refused.hint, None, openai)
        except Exception as exc:  # a bug or a failure below: the protocol's error shape, never a traceback
            refused = _internal_error(exc)
            return error(refused.status, refused.message, refused.hint, None, openai)
        finally:
            if not streaming:  # a stream releases its place when it ends
                release()

    def hf_batch(data) -> int:
        """Rows a request asks for: texts, times candidate labels for zero-shot classification."""
        if not isinstance(data, dict):
            return _batch_size(data)
        hf = hfapi.is_hf_payload(data)
        options = data.get("parameters") if hf else data
        labels = options.get("candidate_labels") if isinstance(options, dict) else None
        if labels is None:
            return _batch_size(data["inputs"] if hf else data)
        rest = data["inputs"] if hf else {k: v for k, v in data.items() if k != "candidate_labels"}
        return _batch_size(rest) * (labels.count(",") + 1 if isinstance(labels, str) else _batch_size(labels))

    async def predict_any(data, name=None):
        if isinstance(data, bytes):  # the Inference API's image and audio requests: the file is the body
            target = choose(name, False)
            result = await infer(target, data)
            return hfapi.answer(result, hfapi.HFRequest(inputs=data), target.model.task, target.model.raw_task)
        if hfapi.is_hf_payload(data):
            target = choose(name or data.get("model"), False)
            try:
                parsed = hfapi.parse_request(data, target.model.task)
            except GpuxError as exc:
                raise _usage_error(exc) from None
            result = await infer(target, parsed.inputs, parsed.options)
            return hfapi.answer(result, parsed, target.model.task, target.model.raw_task, target.model.config)
        if isinstance(data, dict) and "model" in data and not single:
            target = choose(data["model"], False)
            data = {k: v for k, v in data.items() if k != "model"}
        else:
            target = choose(name, False)
        return await infer(target, data)

    @app.post("/")
    @app.post("/predict")
    async def predict(request: Request):
        return await handle(request, predict_any, batch_of=hf_batch)

    @app.post("/models/{name}")
    @app.post("/models/{name}/predict")
    async def predict_named(name: str, request: Request):
        try:  # before the body is read: a wrong name costs no upload
            choose(name, False)
        except _Refused as exc:
            return error(exc.status, exc.message, exc.hint)
        return await handle(request, lambda data: predict_any(data, name), batch_of=hf_batch)

    # --- OpenAI /v1 ---

    @app.api_route("/v1/models", methods=["GET", "HEAD"])
    async def list_models() -> dict:
        return {
            "data": [
                {"created": 0, "id": n, "object": "model", "owned_by": "gpux", "task": served[n].model.task}
                for n in names
            ],
            "object": "list",
        }

    def v1_target(data, tasks: tuple[str, ...], endpoint: str) -> _Served:
        if not isinstance(data, dict):
            raise _Refused(400, "the request body must be a JSON object", f"see POST {endpoint} in the OpenAI API")
        target = choose(data.get("model"), True)
        if target.model.task not in tasks:
            raise _Refused(
                400,
                f"model {target.name} is a {target.model.task} model; {endpoint} needs {' or '.join(tasks)}",
                f"models here: {', '.join(f'{n} ({served[n].model.task})' for n in names)}",
            )
        return target

    def v1_batch(data) -> int:
        return _batch_size(data.get("input")) if isinstance(data, dict) and "input" in data else 1

    async def embeddings_work(data):
        target = v1_target(data, ("feature-extraction",), "/v1/embeddings")
        texts, encoding = openai_api.embedding_texts(data)
        result = await infer(target, texts if len(texts) > 1 else texts[0])
        vectors = [r["embedding"] for r in result["results"]] if "results" in result else [result["embedding"]]
        tokens = int(target.model.tokenizer.encode(texts).arrays["attention_mask"].sum())
        return openai_api.embeddings_answer(target.name, vectors, encoding, tokens)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        return await handle(request, embeddings_work, openai=True, batch_of=v1_batch)

    async def generation_work(data, chat: bool):
        endpoint = "/v1/chat/completions" if chat else "/v1/completions"
        target = v1_target(data, ("text-generation", "text2text-generation"), endpoint)
        req = openai_api.chat_request(data, target.model.folder) if chat else openai_api.completion_request(data)
        completion = openai_api.Completion(target.name, chat, int(time.time()))
        if not req.stream:
            async with target.gate:
                result, used = await run_in_threadpool(
                    lambda: target.model.generate(req.prompt, add_special_tokens=not req.chat, **req.options)
                )
            text = result.get("completion", result["generated_text"])
            return completion.answer(text, result["finish_reason"], used, len(result["token_ids"]))
        return StreamingResponse(stream(target, req, completion), media_type="text/event-stream")

    async def stream(target: _Served, req, completion):
        """Server-sent events: a chunk per piece of text, a last chunk with finish_reason, data: [DONE]."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()

        def on_token(_token_id, piece: str) -> None:
            if piece:
                loop.call_soon_threadsafe(pieces.put_nowait, piece)

        def run():
            try:
                return target.model.generate(req.prompt, on_token, add_special_tokens=not req.chat, **req.options)
            finally:
                loop.call_soon_threadsafe(pieces.put_nowait, None)

        try:
            async with target.gate:
                job = asyncio.ensure_future(run_in_threadpool(run))
                yield openai_api.sse(completion.chunk(None, role=True) if completion.chat else completion.chunk(""))
                while (piece := await pieces.get()) is not None:
                    yield openai_api.sse(completion.chunk(piece))
                try:
                    result, used = await job
                except Exception as exc:  # the answer has begun (200): the error comes as an event
                    if isinstance(exc, GpuxError) and not isinstance(exc, InferenceError):
                        message, kind = exc.message, "invalid_request_error"
                    else:
                        refused = _usage_error(exc) if isinstance(exc, GpuxError) else _internal_error(exc)
                        message, kind = refused.message, "server_error"
                    yield openai_api.sse({"error": {"message": message, "type": kind}})
                    yield openai_api.sse("[DONE]")
                    return
            yield openai_api.sse(completion.chunk(None, result["finish_reason"]))
            if req.include_usage:
                yield openai_api.sse(completion.usage_chunk(used, len(result["token_ids"])))
            yield openai_api.sse("[DONE]")
        finally:
            release()

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await handle(request, lambda data: generation_work(data, False), openai=True, batch_of=lambda d: 1)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await handle(request, lambda data: generation_work(data, True), openai=True, batch_of=lambda d: 1)

    return app


def app_from_env():
    """uvicorn factory for multi-worker serving: each worker process loads the artifacts named in the environment
    (a folder, or a JSON object of names to folders)."""
    raw = os.environ[_ENV_ARTIFACT]
    return create_app(
        json.loads(raw) if raw.startswith("{") else raw,
        os.environ.get(_ENV_PROVIDER) or "auto",
        int(os.environ.get(_ENV_DEVICE, "0")),
        ServeLimits.from_env(),
    )


def serve(
    artifact_dir: str | Path | dict[str, Path],
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    provider: str | None = "auto",
    device_id: int = 0,
    limits: ServeLimits | None = None,
) -> None:
    """Serve the artifact (or {name: artifact folder}) with uvicorn until interrupted. Loads them first so errors
    show before binding.

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
    folders = _artifacts(artifact_dir)
    for folder in folders.values():
        load(folder, provider, device_id)  # fail fast, in this process, on a bad artifact or provider
    if isinstance(artifact_dir, dict):
        os.environ[_ENV_ARTIFACT] = json.dumps({k: str(v.resolve()) for k, v in folders.items()}, sort_keys=True)
    else:
        os.environ[_ENV_ARTIFACT] = str(Path(artifact_dir).resolve())
    os.environ[_ENV_PROVIDER] = provider or "auto"
    os.environ[_ENV_DEVICE] = str(device_id)
    limits.to_env()
    uvicorn.run(
        "gpuxbuild.runtime.server:app_from_env", factory=True, host=host, port=port, workers=workers, log_level="info"
    )
