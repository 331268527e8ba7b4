"""HTTP serving of one artifact with FastAPI + uvicorn (the 'serve' extra).

Paths match the GPUX runtime 0.1.1 server: GET /health, GET /info, GET /metrics, POST /predict.
POST /predict takes the same JSON as `gpux run` and answers what `Model.predict` returns.
"""

# No `from __future__ import annotations`: FastAPI must see the real `Request` class, imported inside create_app.
import os
import threading
from pathlib import Path

from gpuxbuild.errors import GpuxError, MissingExtraError
from gpuxbuild.runtime.session import Model, load

_ENV_ARTIFACT = "GPUX_SERVE_ARTIFACT"
_ENV_PROVIDER = "GPUX_SERVE_PROVIDER"
_ENV_DEVICE = "GPUX_SERVE_DEVICE_ID"


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


def create_app(artifact_dir: str | Path, provider: str | None = "auto", device_id: int = 0):
    """A FastAPI app serving the artifact at `artifact_dir` (loaded once, now)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
    except ImportError as exc:
        raise MissingExtraError("serve", "gpux serve") from exc

    model = load(artifact_dir, provider, device_id)
    name = _model_name(model)
    info = _info(model, name)
    # The tokenizer's padding/truncation settings are per call; one request at a time keeps them consistent.
    lock = threading.Lock()
    app = FastAPI(title=f"gpux - {name}", version=info["version"])

    def error(status: int, message: str, hint: str | None = None) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": message, "hint": hint})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/health")
    def health() -> dict:
        return {"model": name, "status": "healthy"}

    @app.get("/info")
    def model_info() -> dict:
        return info

    @app.get("/metrics")
    def metrics() -> dict:
        import onnxruntime

        return {"available_providers": list(onnxruntime.get_available_providers()),
                "provider": {"chain": model.choice.to_dict(), "name": model.providers[0]}}

    @app.post("/predict")
    async def predict(request: Request):
        try:
            data = await request.json()
        except ValueError:
            return error(400, "the request body is not JSON", 'send e.g. {"text": "..."} with Content-Type: application/json')
        try:
            with lock:
                return model.predict(data)
        except GpuxError as exc:
            return error(400 if exc.exit_code == 2 else 422, exc.message, exc.hint)

    return app


def app_from_env():
    """uvicorn factory for multi-worker serving: each worker process loads the artifact named in the environment."""
    return create_app(os.environ[_ENV_ARTIFACT], os.environ.get(_ENV_PROVIDER) or "auto",
                      int(os.environ.get(_ENV_DEVICE, "0")))


def serve(artifact_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          provider: str | None = "auto", device_id: int = 0) -> None:
    """Serve the artifact with uvicorn until interrupted. Loads it first so errors show before binding."""
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingExtraError("serve", "gpux serve") from exc
    if workers < 1:
        raise GpuxError("workers must be at least 1", "pass --workers 1 or more", exit_code=2)
    if workers == 1:
        uvicorn.run(create_app(artifact_dir, provider, device_id), host=host, port=port, log_level="info")
        return
    load(artifact_dir, provider, device_id)  # fail fast, in this process, on a bad artifact or provider
    os.environ[_ENV_ARTIFACT] = str(Path(artifact_dir).resolve())
    os.environ[_ENV_PROVIDER] = provider or "auto"
    os.environ[_ENV_DEVICE] = str(device_id)
    uvicorn.run("gpuxbuild.runtime.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="info")
