"""The runtime behind `gpux run`, `gpux serve` and `gpux doctor`: ONNX Runtime + tokenizers, no torch.

Public API: `load`, `Model`, `benchmark`, `doctor`, `select_providers`, `create_app`, `serve`.
"""

from __future__ import annotations

from gpuxbuild.runtime.doctor import doctor
from gpuxbuild.runtime.providers import ProviderChoice, select_providers
from gpuxbuild.runtime.session import Model, benchmark, load

__all__ = ["Model", "ProviderChoice", "benchmark", "create_app", "doctor", "load", "select_providers", "serve"]


def create_app(artifact_dir, provider: str | None = "auto", device_id: int = 0, limits=None):
    """FastAPI app serving an artifact folder or {name: folder} (needs the 'serve' extra); see `runtime.server`."""
    from gpuxbuild.runtime.server import create_app as _create_app

    return _create_app(artifact_dir, provider, device_id, limits)


def serve(
    artifact_dir,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    provider: str | None = "auto",
    device_id: int = 0,
    limits=None,
) -> None:
    """Serve an artifact folder or {name: folder} over HTTP with uvicorn (blocks); `limits`: a `server.ServeLimits`,
    default from GPUX_SERVE_*."""
    from gpuxbuild.runtime.server import serve as _serve

    _serve(artifact_dir, host=host, port=port, workers=workers, provider=provider, device_id=device_id, limits=limits)
