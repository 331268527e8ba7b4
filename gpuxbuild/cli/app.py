"""The click application behind `gpux`: options, errors as one line, rich consoles.

Each command group lives in its own module of this package and registers itself on `cli`.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import sys
from pathlib import Path
from typing import NamedTuple, NoReturn

import click

from gpuxbuild import __version__
from gpuxbuild.errors import GpuxError


class LazyConsole:
    """A rich Console made on first use. Importing rich costs ~20 ms of start-up; a command such as
    `gpux pull` first prints once its downloads are under way, so it pays that while they run.

    It stands for the Console wherever rich takes one (`Live(console=...)`, `Progress(console=...)`):
    attributes are read and set on the Console, and `with console:` (which rich's live display and its
    stderr redirection use) enters it; special methods bypass `__getattr__`, hence their own definitions.
    """

    __slots__ = ("_console", "_options")

    def __init__(self, **options):
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_console", None)

    def get(self):
        """The rich Console itself (for rich objects that take one)."""
        if self._console is None:
            from rich.console import Console

            made = Console(**self._options)
            # Piped output is read by scripts: a line naming a model is never broken at 80 columns there. A
            # terminal keeps rich's wrapping at word boundaries.
            made.soft_wrap = not made.is_terminal
            object.__setattr__(self, "_console", made)
        return self._console

    @property
    def is_terminal(self) -> bool:
        """rich's answer; without importing rich when the stream is no TTY and no variable overrides it."""
        stream = sys.stderr if self._options.get("stderr") else sys.stdout
        try:
            tty = bool(stream.isatty())
        except (AttributeError, ValueError):  # no such method, or a closed stream
            tty = False
        if not tty and "TTY_COMPATIBLE" not in os.environ and "FORCE_COLOR" not in os.environ:
            return False
        return self.get().is_terminal

    def __getattr__(self, name):
        return getattr(self.get(), name)

    def __setattr__(self, name, value):
        setattr(self.get(), name, value)

    def __enter__(self):
        return self.get().__enter__()

    def __exit__(self, *exc):
        return self.get().__exit__(*exc)


console = LazyConsole(highlight=False, emoji=False)
err_console = LazyConsole(stderr=True, highlight=False, emoji=False)


class Context:
    """What every command gets: the project folder and output preferences."""

    def __init__(self, project: Path, quiet: bool):
        self.folder = project
        self.quiet = quiet

    @property
    def project(self) -> Path:
        """The project folder, which must exist (only `gpux init` makes it: it reads `folder`)."""
        if not self.folder.is_dir():
            raise GpuxError(
                f"project folder {self.folder} does not exist",
                "check --project (or $GPUX_PROJECT); `gpux --project DIR init` starts a new project there",
                exit_code=2,
            )
        return self.folder


pass_context = click.make_pass_decorator(Context)
# Options several commands share.
OFFLINE = click.option("--offline", is_flag=True, help="Make no network request (also: HF_HUB_OFFLINE=1).")
JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
PROVIDER = click.option(
    "--provider",
    default=None,
    help="Execution provider: auto, cuda, tensorrt, rocm, migraphx, coreml, directml, openvino, cpu "
    "(default: gpux.yml runtime.gpu.backend, else auto).",
)
DEVICE = click.option(
    "--device-id", default=0, show_default=True, type=click.IntRange(min=0), help="GPU index for CUDA/ROCm/TensorRT."
)


def locate_model(ctx: Context, name: str, offline: bool) -> Path:
    """The folder of model NAME for `gpux run`/`serve`: synced, locked (built now), or pulled (pulled now)."""
    from gpuxbuild.models.locate import locate
    from gpuxbuild.store.objects import Store

    def on_pull(ref):
        if not ctx.quiet:
            err_console.print(f"{ref} is not here yet: pulling and building it")

    def on_build(model):
        if not ctx.quiet:
            err_console.print(
                f"{model} is locked but not built here yet: building it (`gpux sync` places it in the project)"
            )

    return locate(name, project=ctx.project, store=Store(), offline=offline, on_pull=on_pull, on_build=on_build)


def REMOTE(f):
    """--remote URL (repeatable) and --remote-optional: the remote cache (docs/remote-cache.md)."""
    f = click.option(
        "--remote-optional",
        is_flag=True,
        help="When a remote cache fails (unreachable, refused), warn and go on without it.",
    )(f)
    return click.option(
        "--remote",
        "remote",
        multiple=True,
        metavar="URL",
        help="Remote cache (file:///path, s3://bucket/prefix); repeat for several. Default: GPUX_REMOTE, cache.remote.",
    )(f)


def open_remotes(ctx: Context, remote: tuple[str, ...], optional: bool, *, manifest: bool = True):
    """The remote cache configured for the project (flags, GPUX_REMOTE, and unless not `manifest` the manifest's
    `cache:`), warnings on stderr."""
    from gpuxbuild.build.remote_artifact import project_remotes

    project = ctx.project if manifest else None
    return project_remotes(project, remote, optional=optional, warn=lambda m: print_error(m, prefix="warning:"))


class CommandEntry(NamedTuple):
    """Where a command is defined, and its summary for `gpux --help`: the first paragraph of its help, kept
    here so that the command list imports no command module (a test keeps the two equal)."""

    module: str
    summary: str


# A command line imports only its command's module (start-up time).
COMMANDS: dict[str, CommandEntry] = {
    "init": CommandEntry("project_cmds", "Write a commented starter gpux.models.yml."),
    "add": CommandEntry("project_cmds", "Add a model to gpux.models.yml and lock it."),
    "remove": CommandEntry("project_cmds", "Remove a model from gpux.models.yml and gpux.lock."),
    "lock": CommandEntry(
        "project_cmds", "Pin every model of gpux.models.yml to a commit and every file to its sha256, in gpux.lock."
    ),
    "build": CommandEntry(
        "build_cmds", "Build locked models into reproducible ONNX artifacts with a generated gpux.yml."
    ),
    "sync": CommandEntry(
        "sync_cmds", "Make .gpux/models/ hold exactly the models of gpux.lock: add, update, remove, restore."
    ),
    "pull": CommandEntry(
        "store_cmds",
        "Download a model (org/name[@REV], hf:org/name[@REV], path:./dir) into the store and build it.",
    ),
    "ls": CommandEntry("store_cmds", "List pulled and synced models."),
    "images": CommandEntry("store_cmds", "List pulled and synced models."),
    "rm": CommandEntry(
        "store_cmds", "Forget pulled models (NAME[@REV]); files another model or a synced project uses stay."
    ),
    "rmi": CommandEntry(
        "store_cmds", "Forget pulled models (NAME[@REV]); files another model or a synced project uses stay."
    ),
    "inspect": CommandEntry("store_cmds", "Everything known about a pulled model or a model of this project."),
    "cache": CommandEntry("store_cmds", "Inspect and maintain the store ($GPUX_HOME)."),
    "run": CommandEntry("run_cmds", "Run a model on text (or raw tensors) and print the task's answer."),
    "serve": CommandEntry(
        "serve_cmds",
        "Serve models over HTTP: the Hugging Face Inference API (POST /), OpenAI /v1, and GPUX's /predict.",
    ),
    "doctor": CommandEntry(
        "run_cmds",
        "What this machine offers: onnxruntime flavour, providers, device, and the provider each synced model uses.",
    ),
    "registries": CommandEntry(
        "registry_cmds",
        "List the model registries: built in, and those installed plugins add, with their source prefixes.",
    ),
    "help": CommandEntry(
        "help_cmds", "The documentation of a topic (manifest, lockfile, sync, store, ...); without TOPIC, the list."
    ),
    "verify": CommandEntry(
        "supply_cmds",
        "Re-check an artifact offline: files, digest, provenance, signature; exit 1 at the first mismatch.",
    ),
    "sbom": CommandEntry(
        "supply_cmds",
        "Print the project's models as an ML-BOM (CycloneDX 1.6; or SPDX 2.3), from gpux.lock; deterministic.",
    ),
    "search": CommandEntry(
        "search_cmds", "Find models on the Hub, an MLflow registry and OCI registries; SOURCE is what `gpux add` takes."
    ),
    "push": CommandEntry(
        "build_cmds",
        "Upload built artifacts of gpux.lock's models (all, or NAMES) or of pulled models to the first remote cache.",
    ),
}


class GpuxGroup(click.Group):
    """A click group that loads each command's module when the command is used, and turns `GpuxError`
    into one line on stderr and its exit code."""

    def get_command(self, ctx, name):
        if name in COMMANDS and name not in self.commands:
            importlib.import_module(f"gpuxbuild.cli.{COMMANDS[name].module}")  # registers its commands on `cli`
        return super().get_command(ctx, name)

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def format_commands(self, ctx, formatter) -> None:
        """The command list from the table's summaries, as click would write it, importing no command."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        # A bare click.Command shortens the summary exactly as the real command would its help.
        rows = [
            (name, click.Command(name, help=COMMANDS[name].summary).get_short_help_str(limit))
            for name in sorted(COMMANDS)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:  # bare `gpux`: click's help, as it prints it
            raise
        except click.UsageError as exc:  # gpux's own options (`gpux --bogus`)
            usage_error(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GpuxError as exc:
            show_traceback(ctx, exc)
            print_error(exc.message, exc.hint)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:  # a command's options or arguments
            usage_error(exc)
        except OSError as exc:
            explained = explain_os_error(exc)
            if explained is None:
                raise
            show_traceback(ctx, exc)
            print_error(*explained)
            sys.exit(1)
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            sys.exit(130)


def usage_error(exc: click.UsageError) -> NoReturn:
    """Bad options or arguments: one error line and where the usage is told, not click's three lines."""
    where = exc.ctx.command_path if exc.ctx else "gpux"
    print_error(exc.format_message(), f"see `{where} --help`")
    sys.exit(exc.exit_code)


def show_traceback(ctx: click.Context, exc: BaseException) -> None:
    """With --debug (or GPUX_DEBUG=1), the full traceback of an error that is otherwise one line."""
    if ctx.params.get("debug") or os.environ.get("GPUX_DEBUG", "") not in ("", "0"):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)


def explain_os_error(exc: OSError) -> tuple[str, str] | None:
    """(message, hint) for what the machine, not gpuxbuild, got wrong: a full disk, a folder it may not
    write. None for anything else (a bug keeps its traceback)."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        from gpuxbuild.models.pull import human_size
        from gpuxbuild.store.objects import Store

        try:
            kept = sum(size for _, size in Store().partials())
        except OSError:
            kept = 0
        # A partial download stays to be resumed, and resuming it into the same full disk fails again.
        frees = (
            f"`gpux cache prune --partials` removes the {human_size(kept)} of interrupted downloads and what nothing uses"
            if kept
            else "`gpux cache prune` removes what nothing uses"
        )
        return (f"no space left on the device{where}", f"free space: {frees}; or set GPUX_HOME to a larger disk")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"cannot write{where}: {exc.strerror}",
            "make the folder writable, or set GPUX_HOME (the store) or --project to one that is",
        )
    return None


def print_error(message: str, hint: str | None = None, prefix: str = "error:") -> None:
    """One error line on stderr (and its hint), with user text escaped from rich markup."""
    from rich.markup import escape

    err_console.print(f"[bold red]{prefix}[/] {escape(message)}", soft_wrap=True)
    if hint:
        err_console.print(f"  [dim]hint:[/] {escape(hint)}", soft_wrap=True)


def counted(n: int, noun: str) -> str:
    """ "1 model", "2 models": a count and its noun, in agreement."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def print_json(data) -> None:
    """Write `data` as JSON to stdout (sorted keys, stable)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True))


# The variables gpuxbuild reads (the registries' own, such as HF_TOKEN, as huggingface_hub reads them).
# "\b" keeps click from re-flowing the lines.
ENVIRONMENT = """\b
Environment:
  GPUX_PROJECT       the project folder when --project is not given
  GPUX_HOME          the store (default: $XDG_CACHE_HOME/gpux, else ~/.cache/gpux)
  GPUX_HTTP_RETRIES  retries of a transient network failure (default 3)
  GPUX_HTTP_TIMEOUT  seconds each connect and read may take (default 30; else
                     HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT where set)
  GPUX_REMOTE        remote cache URL(s) when --remote is not given (file://,
                     s3://, oci://; several separated by spaces or commas)
  GPUX_REMOTE_PART_SIZE
                     bytes per part of a remote transfer (default 8 MiB)
  HF_HUB_OFFLINE     1: no network request, as --offline
  HF_TOKEN           Hugging Face token, for gated or private repos
  HF_ENDPOINT        the Hugging Face Hub to use (default: https://huggingface.co)
  MLFLOW_TRACKING_URI
                     the MLflow server of mlflow: sources (auth: MLFLOW_TRACKING_TOKEN,
                     or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)
  GPUX_SEARCH_OCI    OCI registries `gpux search` lists (hosts, space or comma
                     separated)
  FORCE_COLOR        draw colours and live progress even when not on a terminal
  GPUX_DEBUG         1: show the full traceback of an error, as --debug
  SOURCE_DATE_EPOCH  the creation time `gpux sbom --format spdx-json` writes
                     (default: 1970-01-01, so one lock gives one document)
"""


@click.group(cls=GpuxGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=ENVIRONMENT)
@click.version_option(__version__, "--version", prog_name="gpux")
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="GPUX_PROJECT",
    help="Project folder (holds gpux.models.yml and gpux.lock). Default: $GPUX_PROJECT, else the current folder.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and results.")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error (also: GPUX_DEBUG=1).")
@click.pass_context
def cli(ctx: click.Context, project: Path | None, quiet: bool, debug: bool) -> None:
    """gpux: lock, build, sync and run models for the GPUX runtime."""
    ctx.obj = Context(project=(project or Path(".")).resolve(), quiet=quiet)
