"""`gpux run`, `gpux serve`, `gpux doctor`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gpuxbuild.cli.app import Context, JSON, OFFLINE, cli, console, counted, err_console, pass_context, print_json
from gpuxbuild.errors import GpuxError

PROVIDER = click.option("--provider", default=None,
                        help="Execution provider: auto, cuda, tensorrt, rocm, migraphx, coreml, directml, openvino, cpu "
                             "(default: gpux.yml runtime.gpu.backend, else auto).")
DEVICE = click.option("--device-id", default=0, show_default=True, help="GPU index for CUDA/ROCm/TensorRT.")


def _locate(ctx: Context, name: str, offline: bool) -> Path:
    from gpuxbuild.models.locate import locate
    from gpuxbuild.store.objects import Store

    def on_pull(ref):
        if not ctx.quiet:
            err_console.print(f"{ref} is not here yet: pulling and building it")

    def on_build(model):
        if not ctx.quiet:
            err_console.print(f"{model} is locked but not built here yet: building it (`gpux sync` places it in the project)")

    return locate(name, project=ctx.project, store=Store(), offline=offline, on_pull=on_pull, on_build=on_build)


def _read_input(value: str | None, file: Path | None, texts: tuple[str, ...]):
    given = [x for x in (value, file, texts or None) if x]
    if len(given) != 1:
        raise GpuxError("give the input once: TEXT..., --input JSON, --input @file.json or --file file.json",
                        "e.g. gpux run NAME --input '{\"text\": \"I love this\"}'", exit_code=2)
    if texts:
        return {"text": texts[0]} if len(texts) == 1 else {"text": list(texts)}
    if file is not None or value.startswith("@"):
        path = Path(file if file is not None else value[1:])
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise GpuxError(f"cannot read input file {path}: {exc.strerror}", "check the path", exit_code=2) from None
        where = str(path)
    else:
        raw, where = value, "--input"
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise GpuxError(f"{where}: not valid JSON ({exc})", 'e.g. {"text": "I love this"}', exit_code=2) from None


@cli.command()
@click.argument("name")
@click.argument("texts", nargs=-1)
@click.option("-i", "--input", "input_", help="JSON input, or @file.json.")
@click.option("-f", "--file", type=click.Path(dir_okay=False, path_type=Path), help="A JSON input file.")
@PROVIDER
@DEVICE
@click.option("--max-new-tokens", type=int, help="Generation: tokens to generate.")
@click.option("--temperature", type=float, help="Generation: sample with this temperature.")
@click.option("--top-k", type=int, help="Generation: sample among the k likeliest tokens; other tasks: results to return.")
@click.option("--top-p", type=float, help="Generation: nucleus sampling.")
@click.option("--seed", type=int, help="Generation: random seed for sampling.")
@click.option("--sample/--greedy", "do_sample", default=None, help="Generation: sampling or greedy (default greedy).")
@click.option("--benchmark", is_flag=True, help="Time the model: p50/p95/p99 latency and throughput.")
@click.option("--runs", default=100, show_default=True, help="Benchmark runs.")
@click.option("--warmup", default=10, show_default=True, help="Benchmark warm-up runs.")
@OFFLINE
@JSON
@pass_context
def run(ctx: Context, name, texts, input_, file, provider, device_id, max_new_tokens, temperature, top_k, top_p, seed,
        do_sample, benchmark, runs, warmup, offline, as_json) -> None:
    """Run a model on text (or raw tensors) and print the task's answer.

    NAME: a model of this project, a pulled org/name[@rev] (pulled and built first if needed), or an
    artifact folder. Input: TEXT..., --input '{"text": "..."}', --input @file.json or --file file.json.
    """
    from gpuxbuild.runtime import benchmark as bench, load

    inputs = _read_input(input_, file, texts)
    options = {k: v for k, v in {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k,
                                 "top_p": top_p, "seed": seed, "do_sample": do_sample}.items() if v is not None}
    folder = _locate(ctx, name, offline)
    model = load(folder, provider or None, device_id)
    if model.notice and not ctx.quiet:
        err_console.print(f"[yellow]notice:[/] {model.notice}", soft_wrap=True)
    plain = as_json or not sys.stdout.isatty()
    if benchmark:
        result = bench(model, inputs, runs=runs, warmup=warmup)
        if plain:
            print_json(result)
        else:
            lat = result["latency_ms"]
            console.print(f"{name} on {result['provider']}: p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms, "
                          f"p99 {lat['p99']:.2f} ms, {result['throughput_per_s']:.1f} items/s ({counted(runs, 'run')})")
        return
    streaming = not plain and model.task in ("text-generation", "text2text-generation")
    on_token = (lambda _id, piece: (sys.stdout.write(piece), sys.stdout.flush())) if streaming else None
    result = model.predict(inputs, on_token=on_token, **options)
    if streaming:
        sys.stdout.write("\n")
        return
    if plain:
        print_json(result)
    else:
        from rich.pretty import Pretty

        console.print(Pretty(result, max_length=12))


@cli.command()
@click.argument("name")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 exposes it to the network).")
@click.option("--port", default=8080, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Worker processes.")
@PROVIDER
@DEVICE
@OFFLINE
@pass_context
def serve(ctx: Context, name, host, port, workers, provider, device_id, offline) -> None:
    """Serve a model over HTTP: GET /health, GET /info, POST /predict (same JSON as `gpux run`)."""
    from gpuxbuild.runtime import serve as do_serve

    folder = _locate(ctx, name, offline)
    do_serve(folder, host=host, port=port, workers=workers, provider=provider or None, device_id=device_id)


@cli.command()
@click.option("--provider", default="auto", show_default=True, help="Provider request to evaluate.")
@JSON
@pass_context
def doctor(ctx: Context, provider, as_json) -> None:
    """What this machine offers: onnxruntime flavour, providers, device, and the provider each synced model uses."""
    from gpuxbuild.runtime import doctor as do_doctor

    models_dir = ctx.project / ".gpux" / "models"
    folders = sorted(p for p in models_dir.iterdir() if (p / "artifact.json").is_file()) if models_dir.is_dir() else []
    report = do_doctor(folders, provider)
    if as_json:
        print_json(report)
        return
    ort = report["onnxruntime"]
    console.print(f"onnxruntime: {ort.get('package')} {ort.get('version')}")
    console.print(f"device: {report.get('device', '-')}")
    console.print(f"available providers: {', '.join(report.get('available_providers', []))}")
    auto = report.get("auto", {})
    console.print(f"auto choice: {auto.get('error') or ' -> '.join(auto.get('providers', []))}")
    for key in ("warning", "error"):
        if report.get(key):
            err_console.print(f"[yellow]{key}:[/] {report[key]}", soft_wrap=True)
    for art in report.get("artifacts", []):
        console.print(f"  {Path(art.get('path', '')).name}: {art.get('error') or ' -> '.join(art.get('providers', []))}")
