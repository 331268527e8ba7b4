"""`gpux serve`. Its own module: its limit options read their defaults from the runtime's `ServeLimits`, and a
`gpux run` need not import the runtime (numpy, the session) before it starts pulling and exporting."""

from __future__ import annotations

from pathlib import Path

import click

from gpuxbuild.cli.app import DEVICE, OFFLINE, PROVIDER, Context, cli, locate_model, pass_context
from gpuxbuild.errors import GpuxError


def _limit_option(field: str, help_text: str):
    """A --max-... option of `gpux serve` for a ServeLimits field, also read from GPUX_SERVE_<FIELD>."""
    from gpuxbuild.runtime.server import ServeLimits

    default = ServeLimits.__dataclass_fields__[field].default
    return click.option(
        f"--{field.replace('_', '-')}",
        field,
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        envvar=ServeLimits.env_name(field),
        show_envvar=True,
        help=help_text,
    )


def _synced_models(ctx: Context) -> dict[str, Path]:
    """name -> folder of every model synced into the project (.gpux/models/NAME with an artifact.json)."""
    models_dir = ctx.project / ".gpux" / "models"
    found = (
        {p.name: p for p in sorted(models_dir.iterdir()) if (p / "artifact.json").is_file()}
        if models_dir.is_dir()
        else {}
    )
    if not found:
        raise GpuxError(
            f"no synced models in {models_dir}", "run gpux sync first, or name a model: gpux serve NAME", exit_code=2
        )
    return found


@cli.command()
@click.argument("names", nargs=-1)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 exposes it to the network)."
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Worker processes.")
@_limit_option("max_body_bytes", "Largest POST body; a larger one is answered 413.")
@_limit_option("max_batch", "Most texts (or tensor rows) in one request; more is answered 413.")
@_limit_option("max_json_depth", "Deepest nesting of JSON lists and objects; deeper is answered 400.")
@_limit_option("max_queue", "Predictions accepted at once per worker (one runs, the rest wait); more get 503.")
@_limit_option("retry_after_s", "Seconds in the Retry-After header of that 503.")
@_limit_option("max_wait_ms", "Dynamic batching: how long a request waits for others to share its onnxruntime run.")
@PROVIDER
@DEVICE
@OFFLINE
@pass_context
def serve(ctx: Context, names, host, port, workers, provider, device_id, offline, **limits) -> None:
    """Serve models over HTTP: the Hugging Face Inference API (POST /), OpenAI /v1, and GPUX's /predict.

    NAMES: models as for `gpux run`; none serves every synced model of the project. See `gpux help serve`.
    """
    from gpuxbuild.runtime import serve as do_serve
    from gpuxbuild.runtime.server import ServeLimits

    serve_limits = ServeLimits(**limits)  # bad limits fail before any model is located
    target: Path | dict[str, Path]
    if len(names) == 1:
        target = locate_model(ctx, names[0], offline)
    elif names:
        target = {name: locate_model(ctx, name, offline) for name in dict.fromkeys(names)}
    else:
        target = _synced_models(ctx)
    do_serve(
        target,
        host=host,
        port=port,
        workers=workers,
        provider=provider or None,
        device_id=device_id,
        limits=serve_limits,
    )
