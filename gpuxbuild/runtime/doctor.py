"""`gpux doctor`: what this machine offers to run models, and which providers each artifact would get."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gpuxbuild.errors import GpuxError
from gpuxbuild.runtime.providers import PROVIDER_ORDER, select_providers
from gpuxbuild.runtime.session import read_runtime_config
from gpuxbuild.store.artifacts import ARTIFACT_MANIFEST

# onnxruntime's distributions: one module, several packages.
FLAVOURS = (
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-silicon",
    "onnxruntime-rocm",
    "onnxruntime-training",
    "onnxruntime",
)


def onnxruntime_flavour() -> tuple[str | None, str | None]:
    """The installed onnxruntime distribution (name, version), e.g. ("onnxruntime-gpu", "1.20.1")."""
    from importlib import metadata

    for name in FLAVOURS:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None, None


def doctor(artifact_dirs: Sequence[str | Path] = (), provider: str | None = "auto") -> dict:
    """What this machine offers to run models: onnxruntime flavour, providers, device, and per artifact the chosen EPs.

    Problems are reported in the dict (never raised) so the CLI can print all of them at once.
    """
    flavour, version = onnxruntime_flavour()
    report: dict = {"onnxruntime": {"package": flavour, "version": version}, "artifacts": []}
    try:
        import onnxruntime
    except ImportError as exc:
        report["error"] = f"onnxruntime cannot be imported: {exc}"
        report["available_providers"] = []
        return report
    available = list(onnxruntime.get_available_providers())
    report["onnxruntime"]["version"] = onnxruntime.__version__
    report["available_providers"] = available
    report["device"] = onnxruntime.get_device()
    report["provider_order"] = list(PROVIDER_ORDER)
    installed = [name for name in FLAVOURS if _installed(name)]
    if len(installed) > 1:
        report["warning"] = (
            f"several onnxruntime packages are installed ({', '.join(installed)}); "
            "they share one module and the last installed wins: keep only one"
        )
    try:
        report["auto"] = select_providers(available, provider).to_dict()
    except GpuxError as exc:
        report["auto"] = {"error": str(exc)}
    for folder in artifact_dirs:
        report["artifacts"].append(_artifact_report(Path(folder), available, provider))
    return report


def _installed(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def _artifact_report(folder: Path, available: list[str], provider: str | None) -> dict:
    entry: dict = {"path": str(folder)}
    if not (folder / ARTIFACT_MANIFEST).is_file():
        entry["error"] = f"{folder} has no {ARTIFACT_MANIFEST}: not an artifact folder"
        return entry
    try:
        cfg = read_runtime_config(folder)
        choice = select_providers(available, provider, cfg.backend, memory=cfg.memory)
    except GpuxError as exc:
        entry["error"] = str(exc)
        return entry
    entry.update(choice.to_dict())
    return entry
