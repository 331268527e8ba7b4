"""Helpers for end-to-end tests: run the real CLI (in this process, or in a subprocess where a test needs a
process of its own), publish tiny models on the test Hub."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import io
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import tinymodels
import yaml
from tinymodels import make_repo

CARDS = {
    "bert": {"pipeline_tag": "text-classification", "library_name": "transformers", "license": "apache-2.0"},
    "sentence-transformers": {
        "pipeline_tag": "sentence-similarity",
        "library_name": "sentence-transformers",
        "license": "apache-2.0",
    },
}


def gpux(*args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None, timeout: float = 600):
    """Run `gpux ARGS` in this process, as pdm's test fixture does: `gpuxbuild.cli.main(args)` with its own
    working folder, environment (`env` replaces it whole, as for a subprocess) and captured output.
    Returns a CompletedProcess. Start-up cost is paid once per test run instead of once per command;
    tests of what a process imports, of signals, races or terminals use `gpux_process`."""
    del timeout  # pytest-timeout bounds the test
    from gpuxbuild.cli import main
    from gpuxbuild.cli.app import console, err_console

    out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    code = 0
    with contextlib.ExitStack() as stack:
        monkeypatch = stack.enter_context(pytest.MonkeyPatch.context())
        if env is not None:
            for name in set(os.environ) - set(env):
                monkeypatch.delenv(name)
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            sync_hf_constants(monkeypatch)
        if cwd is not None:
            monkeypatch.chdir(cwd)
        for lazy in (console, err_console):  # rich reads FORCE_COLOR, COLUMNS, ... when a Console is made
            monkeypatch.setattr(lazy, "_console", None)
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        try:
            main(list(args))
        except SystemExit as exc:
            if isinstance(exc.code, str):
                print(exc.code, file=err)
                code = 1
            else:
                code = exc.code or 0
        except Exception:  # what an uncaught error does to a process: a traceback and status 1
            traceback.print_exc(file=err)
            code = 1
        finally:
            out.flush()
            err.flush()
    r = subprocess.CompletedProcess(["gpux", *args], code, _text(out), _text(err))
    if check and r.returncode != 0:
        raise AssertionError(f"gpux {' '.join(args)} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def _text(stream: io.TextIOWrapper) -> str:
    """What a subprocess reader with text=True would get: decoded, universal newlines."""
    data = stream.buffer.getvalue().decode("utf-8", errors="replace")
    return data.replace("\r\n", "\n").replace("\r", "\n")


def gpux_process(
    *args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None, timeout: float = 600
):
    """Run `python -m gpuxbuild ARGS` in a process of its own; returns the CompletedProcess."""
    r = subprocess.run(
        [sys.executable, "-m", "gpuxbuild", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and r.returncode != 0:
        raise AssertionError(f"gpux {' '.join(args)} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


# Names other huggingface_hub modules copied from constants at import time.
_HF_CONSTANT_COPIES = {
    "huggingface_hub.utils._cache_manager": ("HF_HUB_CACHE",),
    "huggingface_hub.utils._cache_assets": ("HF_ASSETS_CACHE",),
}


def sync_hf_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the imported huggingface_hub see os.environ as a fresh process would (HF_HOME, offline, ...)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import reset_sessions

    spec = importlib.util.spec_from_file_location("_hf_constants_now", constants.__file__)
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    for name, value in vars(fresh).items():
        if name.isupper() and getattr(constants, name, None) != value:
            monkeypatch.setattr(constants, name, value)
    for module, names in _HF_CONSTANT_COPIES.items():
        for name in names:
            monkeypatch.setattr(f"{module}.{name}", getattr(fresh, name))
    # Sessions are cached and pick the offline adapter when created.
    reset_sessions()


def publish(hub, repo_id: str, kind: str = "bert", *, card: dict | None = None, seed: int = 0, **kw) -> str:
    """Create `repo_id` on the hub holding a tiny model of `kind`; returns the commit sha of main."""
    hub.create_repo(repo_id, card=card if card is not None else CARDS.get(kind, {}), **kw)
    return hub.commit(repo_id, make_repo(kind, seed=seed), message=f"add {kind}")


def write_manifest(project: Path, models: dict, defaults: dict | None = None) -> Path:
    """Write gpux.models.yml with `models` (name -> entry)."""
    project.mkdir(parents=True, exist_ok=True)
    doc = {"version": 1, "models": models}
    if defaults:
        doc["defaults"] = defaults
    path = project / "gpux.models.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def gets(hub, repo_id: str) -> dict[str, int]:
    """Downloads per file: GETs of small files (resolve) and of LFS files (CDN)."""
    out: dict[str, int] = {}
    for r in hub.requests("GET", repo=repo_id):
        if r.kind in ("resolve", "lfs"):
            out[r.path] = out.get(r.path, 0) + 1
    return out


def synced_project(root: Path, models: dict) -> Path:
    """`root`/project with `models` in its gpux.models.yml, locked, built and synced with its own GPUX_HOME
    (`root`/gpux-home), as a user would: `gpux lock`, `gpux build`, `gpux sync --locked`."""
    project = root / "project"
    write_manifest(project, models)
    env = {**os.environ, "GPUX_HOME": str(root / "gpux-home")}
    gpux("lock", cwd=project, env=env)
    gpux("build", "--jobs", "2", cwd=project, env=env)
    gpux("sync", "--locked", cwd=project, env=env)
    return project


def read_lock(project: Path) -> dict:
    return yaml.safe_load((project / "gpux.lock").read_text())


@dataclass(frozen=True)
class TtyRun:
    """What a command run on a pseudo-terminal did: its exit status and what the terminal received."""

    returncode: int
    output: str


def gpux_tty(
    *args: str,
    cwd: Path | None = None,
    env: dict | None = None,
    timeout: float = 600,
    interrupt_when: str | None = None,
    columns: int = 120,
) -> TtyRun:
    """Run `python -m gpuxbuild ARGS` with stdin, stdout and stderr on a new pseudo-terminal, as in an
    interactive shell. With `interrupt_when`, the terminal's Ctrl-C (SIGINT to the foreground process
    group) is sent once that text has appeared in the output."""
    primary, secondary = os.openpty()
    # rich reads the size from the terminal (when $COLUMNS does not say it)
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuxbuild", *args],
        cwd=cwd,
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    out = bytearray()
    deadline = time.monotonic() + timeout
    interrupted = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # EIO: every holder of the terminal has closed it
                    break
                if not chunk:
                    break
                out += chunk
            if interrupt_when and not interrupted and interrupt_when.encode() in out:
                os.killpg(proc.pid, signal.SIGINT)
                interrupted = True
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(
                f"gpux {' '.join(args)} did not end within {timeout}s on a terminal:\n{out.decode(errors='replace')}"
            )
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(primary)
    if interrupt_when and not interrupted:
        raise AssertionError(f"{interrupt_when!r} never appeared:\n{out.decode(errors='replace')}")
    return TtyRun(rc, out.decode(errors="replace"))


def check_exported_files(kind: str, task: str, folder: Path, graphs: dict[str, str]) -> None:
    """What an export of tiny model `kind` for `task` must have placed in `folder` (an export's output or a built
    artifact): its graphs, the files the runtime reads and no weights, stripped graphs, a KV cache where it decodes."""
    import onnx

    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    seq2seq = task == "text2text-generation" or kind == "whisper"
    expected_graphs = (
        {"encoder": "encoder_model.onnx", "decoder": "decoder_model_merged.onnx"}
        if seq2seq
        else {"model": "model.onnx"}
    )
    assert graphs == expected_graphs
    runtime_files = {"config.json", *expected_graphs.values()}
    media = tinymodels.IMAGE_KINDS | tinymodels.AUDIO_KINDS
    if kind in media | tinymodels.IMAGE_TEXT_KINDS:  # the processor config, a CTC model's vocab
        runtime_files |= {"preprocessor_config.json"} | ({"vocab.json"} if kind == "wav2vec2-ctc" else set())
    if kind not in media or kind == "whisper":
        runtime_files |= {"tokenizer.json", "tokenizer_config.json"}
        assert "vocab.json" not in files
    assert runtime_files <= files
    assert not any(f.endswith((".safetensors", ".bin", ".txt", ".model")) for f in files)
    assert ("generation_config.json" in files) == (task in {"text-generation", "text2text-generation"} or seq2seq)
    if kind == "sentence-transformers":
        assert {"modules.json", "sentence_bert_config.json", "1_Pooling/config.json"} <= files
    graph = onnx.load(str(folder / expected_graphs.get("model", expected_graphs.get("decoder"))))
    inputs = {i.name for i in graph.graph.input}
    if task in {"text-generation", "text2text-generation"} or seq2seq:
        assert any(name.startswith("past_key_values") for name in inputs)
    assert not graph.doc_string and not graph.metadata_props
