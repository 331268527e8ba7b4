"""`gpux run`, `gpux doctor`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gpuxbuild.cli.app import (
    DEVICE,
    JSON,
    OFFLINE,
    PROVIDER,
    Context,
    cli,
    console,
    counted,
    err_console,
    locate_model,
    pass_context,
    print_json,
)
from gpuxbuild.errors import GpuxError
from gpuxbuild.tasks import MEDIA_TASKS


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GpuxError(f"cannot read input file {path}: {exc.strerror}", "check the path", exit_code=2) from None


def _is_json_file(path: Path, data: bytes) -> bool:
    """A JSON input file (by name, or by its first character) rather than an image or a sound."""
    return path.suffix.lower() == ".json" or data.lstrip()[:1] in (b"{", b"[", b'"')


def _read_input(value: str | None, files: tuple[Path, ...], texts: tuple[str, ...]):
    given = [x for x in (value, files or None, texts or None) if x]
    if len(given) != 1:
        raise GpuxError(
            "give the input once: TEXT..., --input JSON, --input @file.json, --file file.json or --file IMAGE|AUDIO...",
            'e.g. gpux run NAME --input \'{"text": "I love this"}\'',
            exit_code=2,
        )
    if texts:
        return {"text": texts[0]} if len(texts) == 1 else {"text": list(texts)}
    path: Path | None
    if files:
        contents = [_read_bytes(path) for path in files]
        if len(files) == 1 and _is_json_file(files[0], contents[0]):
            path, data = files[0], contents[0]
        else:  # images or sounds: several make a batch
            return contents if len(files) > 1 else contents[0]
    else:
        path = Path(value[1:]) if value and value.startswith("@") else None
        data = _read_bytes(path) if path is not None else b""
    if path is not None:
        try:
            raw = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GpuxError(
                f"{path} is not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x})",
                'a JSON input file holds e.g. {"text": "..."}; pass images and sounds with --file',
                exit_code=2,
            ) from None
        where = str(path)
    elif value:
        raw, where = value, "--input"
    else:  # never: exactly one input was given, and it is not TEXT
        raise ValueError("no input to read")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise GpuxError(f"{where}: not valid JSON ({exc})", 'e.g. {"text": "I love this"}', exit_code=2) from None


def _parameters(value: str | None) -> dict:
    """--parameters JSON: an object of options."""
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise GpuxError(
            f"--parameters: not valid JSON ({exc})", "e.g. --parameters '{\"top_k\": 2}'", exit_code=2
        ) from None
    if not isinstance(parsed, dict):
        raise GpuxError("--parameters must be a JSON object", "e.g. --parameters '{\"top_k\": 2}'", exit_code=2)
    return parsed


@cli.command()
@click.argument("name")
@click.argument("texts", nargs=-1)
@click.option("-i", "--input", "input_", help="JSON input, or @file.json.")
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A JSON input file, or an image or sound file for vision and audio models (repeat it for a batch).",
)
@click.option("--revision", help="Branch, tag or commit of a pulled model (same as NAME@REVISION).")
@PROVIDER
@DEVICE
@click.option("--max-new-tokens", type=click.IntRange(min=1), help="Generation: tokens to generate.")
@click.option(
    "--temperature", type=click.FloatRange(min=0, min_open=True), help="Generation: sample with this temperature."
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    help="Generation: sample among the k likeliest tokens; other tasks: results to return.",
)
@click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), help="Generation: nucleus sampling.")
@click.option("--seed", type=click.IntRange(min=0), help="Generation: random seed for sampling.")
@click.option("--sample/--greedy", "do_sample", default=None, help="Generation: sampling or greedy (default greedy).")
@click.option(
    "--parameters",
    "parameters",
    help='Options as a JSON object, as in the Inference API\'s "parameters" (e.g. \'{"top_k": 2}\').',
)
@click.option("--benchmark", is_flag=True, help="Time the model: p50/p95/p99 latency and throughput.")
@click.option("--runs", default=100, show_default=True, type=click.IntRange(min=1), help="Benchmark runs.")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0), help="Benchmark warm-up runs.")
@OFFLINE
@JSON
@pass_context
def run(
    ctx: Context,
    name,
    texts,
    input_,
    files,
    revision,
    provider,
    device_id,
    max_new_tokens,
    temperature,
    top_k,
    top_p,
    seed,
    do_sample,
    parameters,
    benchmark,
    runs,
    warmup,
    offline,
    as_json,
) -> None:
    """Run a model on text (or raw tensors) and print the task's answer.

    NAME: a model of this project, a pulled org/name[@rev] (pulled and built first if needed), or an
    artifact folder. Input: TEXT..., --input '{"text": "..."}' (or the Inference API's '{"inputs": "...",
    "parameters": {...}}', answered in its shape), --input @file.json or --file file.json; for vision and
    audio models --file cat.png (several --file for a batch) or --input '{"image": BASE64}'.
    """
    from gpuxbuild.runtime import hfapi
    from gpuxbuild.runtime.inputs import check_inputs

    inputs = _read_input(input_, files, texts)
    extra = _parameters(parameters)
    if revision is not None:
        base, _, given = name.rpartition("@") if "@" in name else (name, "", "")
        if given and given != revision:
            raise GpuxError(
                f"{name}: revision given twice ({given!r} and --revision {revision!r})", "give it once", exit_code=2
            )
        name = f"{base}@{revision}"
    options = {
        k: v
        for k, v in {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "seed": seed,
            "do_sample": do_sample,
        }.items()
        if v is not None
    }
    hf = None
    if hfapi.is_hf_payload(inputs):
        if extra:
            inputs = {**inputs, "parameters": {**(inputs.get("parameters") or {}), **extra}}
        hf = hfapi.parse_request(inputs, None)
        data, options = hf.inputs, {**hf.options, **options}
    else:
        data, options = inputs, {**extra, **options}
    check_inputs(data, options)  # before locating (maybe building) and loading the model: a typo fails at once

    from gpuxbuild.runtime import benchmark as bench
    from gpuxbuild.runtime import load

    folder = locate_model(ctx, name, offline)
    model = load(folder, provider or None, device_id)
    if model.notice and not ctx.quiet:
        err_console.print(f"[yellow]notice:[/] {model.notice}", soft_wrap=True)
    if hf is not None:
        hf = hfapi.parse_request(inputs, model.task)
    plain = as_json or not sys.stdout.isatty()
    if benchmark:
        report = bench(model, data, runs=runs, warmup=warmup)
        if plain:
            print_json(report)
        else:
            lat = report["latency_ms"]
            console.print(
                f"{name} on {report['provider']}: p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms, "
                f"p99 {lat['p99']:.2f} ms, {report['throughput_per_s']:.1f} items/s ({counted(runs, 'run')})"
            )
        return
    streaming = not plain and model.task in ("text-generation", "text2text-generation")

    def show_token(_id: int | None, piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    result = model.predict(data, on_token=show_token if streaming else None, **options)
    if streaming:
        sys.stdout.write("\n")
        return
    if plain:
        print_json(hfapi.answer(result, hf, model.task, model.raw_task, model.config) if hf is not None else result)
    else:
        for line in _readable(result, model.task in MEDIA_TASKS):
            console.print(line, markup=False, soft_wrap=True)


def _score(item: dict) -> str:
    return f" ({item['score']:.3f})" if isinstance(item.get("score"), (int, float)) else ""


def _readable(result, all_labels: bool = False) -> list[str]:
    """A terminal's short answer for `gpux run`: one line per input (JSON stays for --json and pipes);
    `all_labels`: a classification line lists every label returned (top_k of them), not only the best."""
    if isinstance(result, list):  # question-answering with top_k > 1
        return [line for item in result for line in _readable(item)]
    if set(result) == {"results"}:
        return [line for item in result["results"] for line in _readable(item, all_labels)]
    if "label" in result and all_labels:
        return [", ".join(f"{item['label']}{_score(item)}" for item in result["labels"])]
    if "label" in result:
        return [f"{result['label']}{_score(result)}"]
    if "sequence" in result and "scores" in result:  # zero-shot classification
        return [
            ", ".join(f"{label} ({score:.3f})" for label, score in zip(result["labels"], result["scores"], strict=True))
        ]
    if "answer" in result:
        return [f"{result['answer'] or '(no answer)'}{_score(result)}"]
    if "generated_text" in result:
        return [result["generated_text"]]
    if "text" in result:  # speech recognition
        return [result["text"]]
    if "objects" in result:
        return [
            "; ".join(
                f"{o['label']}{_score(o)} at [{o['box']['xmin']}, {o['box']['ymin']}, {o['box']['xmax']}, {o['box']['ymax']}]"
                for o in result["objects"]
            )
            or "no objects"
        ]
    if "segments" in result:  # image segmentation: the labels by their share of the pixels
        shares = sorted(result["segments"], key=lambda s: -s["share"])
        return [", ".join(f"{s['label']} {100 * s['share']:.1f}%" for s in shares) or "no segments"]
    if "similarity" in result:  # a list: an image's similarities to several texts
        values = result["similarity"] if isinstance(result["similarity"], list) else [result["similarity"]]
        return [f"similarity {', '.join(f'{v:.4f}' for v in values)}"]
    if "embedding" in result:
        vector = result["embedding"]
        head = ", ".join(f"{v:.4f}" for v in vector[:4])
        return [f"embedding of {len(vector)} dimensions [{head}{', ...' if len(vector) > 4 else ''}]"]
    if "masks" in result:
        return [", ".join(f"{c['token_str']}{_score(c)}" for c in mask[:3]) for mask in result["masks"]]
    if "entities" in result:
        return [
            "; ".join(f"{e['word']}: {e.get('entity_group', e.get('entity'))}{_score(e)}" for e in result["entities"])
            or "no entities"
        ]
    import numpy as np  # raw tensor outputs by name: their shapes

    return [", ".join(f"{name}: shape {list(np.asarray(value).shape)}" for name, value in sorted(result.items()))]


@cli.command()
@click.option("--provider", default="auto", show_default=True, help="Provider request to evaluate.")
@JSON
@pass_context
def doctor(ctx: Context, provider, as_json) -> None:
    """What this machine offers: onnxruntime flavour, providers, device, and the provider each synced model uses."""
    from gpuxbuild.runtime import doctor as do_doctor
    from gpuxbuild.store.artifacts import ARTIFACT_MANIFEST

    models_dir = ctx.project / ".gpux" / "models"
    folders = (
        sorted(p for p in models_dir.iterdir() if (p / ARTIFACT_MANIFEST).is_file()) if models_dir.is_dir() else []
    )
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
        console.print(
            f"  {Path(art.get('path', '')).name}: {art.get('error') or ' -> '.join(art.get('providers', []))}"
        )
