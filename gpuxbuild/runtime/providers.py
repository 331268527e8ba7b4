"""Execution provider choice: which onnxruntime EPs a model runs on, in which order, with which options.

`select_providers` is a pure function of (available providers, request, config) so every platform's
provider list can be tested on any machine. `gpuxbuild.runtime.doctor` reports what this machine offers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuxbuild.errors import GpuxError

CPU = "CPUExecutionProvider"

# Best first. CPU is always last and always the final fallback.
PROVIDER_ORDER = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "OpenVINOExecutionProvider",
    CPU,
)

# Short names accepted by --provider and gpux.yml runtime.gpu.backend (GPUX names metal/dx12 included).
ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "metal": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "dx12": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": CPU,
}

# A GPU EP that cannot place a node hands it to the next one; these are the sensible fallbacks.
_CHAINS = {
    "TensorrtExecutionProvider": ("TensorrtExecutionProvider", "CUDAExecutionProvider", CPU),
    "MIGraphXExecutionProvider": ("MIGraphXExecutionProvider", "ROCMExecutionProvider", CPU),
}

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class ProviderChoice:
    """The EPs to pass to an InferenceSession: names in fallback order and one options dict per name."""

    providers: list[str]
    options: list[dict] = field(default_factory=list)
    requested: str = "auto"
    notice: str | None = None

    @property
    def primary(self) -> str:
        """The provider expected to run the model."""
        return self.providers[0]

    def to_dict(self) -> dict:
        """JSON-ready view (for doctor and /info)."""
        return {
            "notice": self.notice,
            "options": [{k: str(v) for k, v in o.items()} for o in self.options],
            "primary": self.primary,
            "providers": list(self.providers),
            "requested": self.requested,
        }


def canonical_name(name: str) -> str:
    """Map a short name (cuda, dml, metal, ...) or a full EP name to the EP name onnxruntime uses."""
    key = name.strip()
    if key in PROVIDER_ORDER:
        return key
    lowered = key.lower().removesuffix("executionprovider")
    if lowered in ALIASES:
        return ALIASES[lowered]
    for full in PROVIDER_ORDER:
        if full.lower() == key.lower():
            return full
    raise GpuxError(
        f"unknown execution provider '{name}'",
        "use one of: auto, " + ", ".join(sorted(set(ALIASES))),
        exit_code=2,
    )


def parse_memory(value: str | int | None) -> int | None:
    """Parse a gpux.yml memory size ("2GB", "512MB", "1.5GiB", bytes as int) to bytes."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    match = _MEMORY.match(str(value))
    if not match:
        raise GpuxError(
            f"gpux.yml runtime.gpu.memory '{value}' is not a size",
            "write it like 2GB or 512MB",
            exit_code=2,
        )
    unit = match.group(2).upper().rstrip("B").rstrip("I")
    return int(float(match.group(1)) * _UNITS[unit])


def provider_options(name: str, device_id: int = 0, memory_bytes: int | None = None) -> dict:
    """Options for one EP (device, memory limit, compute units); empty for EPs that need none."""
    if name in ("CUDAExecutionProvider", "ROCMExecutionProvider"):
        opts: dict = {"device_id": device_id}
        if memory_bytes:
            opts["gpu_mem_limit"] = memory_bytes
        return opts
    if name == "TensorrtExecutionProvider":
        opts = {"device_id": device_id}
        if memory_bytes:
            opts["trt_max_workspace_size"] = memory_bytes
        return opts
    if name in ("MIGraphXExecutionProvider", "DmlExecutionProvider"):
        return {"device_id": device_id}
    if name == "CoreMLExecutionProvider":
        # ALL lets CoreML use the Neural Engine and GPU; it falls back to CPU per layer.
        return {"MLComputeUnits": "ALL"}
    if name == "OpenVINOExecutionProvider":
        return {"device_type": "AUTO"}
    return {}


def _chain(primary: str, available: list[str]) -> list[str]:
    chain = [p for p in _CHAINS.get(primary, (primary, CPU)) if p in available or p == CPU]
    return list(dict.fromkeys(chain))


def select_providers(
    available: list[str],
    requested: str | None = "auto",
    backend: str | None = None,
    device_id: int = 0,
    memory: str | int | None = None,
) -> ProviderChoice:
    """Choose the EP chain for a model.

    `requested` (the --provider option) wins over `backend` (gpux.yml runtime.gpu.backend); "auto" or
    None means the best of `available` in PROVIDER_ORDER. An explicit provider that is not available
    raises GpuxError listing what is: never a silent fallback.
    """
    memory_bytes = parse_memory(memory)
    explicit = None
    source = "--provider"
    for value, origin in ((requested, "--provider"), (backend, "gpux.yml runtime.gpu.backend")):
        if value and value.strip().lower() != "auto":
            explicit, source = value, origin
            break
    usable = [p for p in PROVIDER_ORDER if p in available]
    if CPU not in usable:
        usable.append(CPU)
    notice = None
    if explicit is not None:
        if explicit.strip().lower() == "vulkan":
            raise GpuxError(
                f"{source} asks for 'vulkan', which onnxruntime has no execution provider for",
                "use auto, or one of: " + ", ".join(available or [CPU]),
                exit_code=2,
            )
        primary = canonical_name(explicit)
        if primary not in usable:
            raise GpuxError(
                f"{source} asks for {primary}, which this onnxruntime does not offer "
                f"(available: {', '.join(available) or 'none'})",
                f"install the onnxruntime build for it (see `gpux help gpus`) or use --provider {_short(usable[0])}",
                exit_code=2,
            )
    else:
        primary = usable[0]
        if primary == CPU:
            notice = "no GPU execution provider available; running on CPU"
    chain = _chain(primary, usable)
    return ProviderChoice(
        providers=chain,
        options=[provider_options(p, device_id, memory_bytes) for p in chain],
        requested=explicit or "auto",
        notice=notice,
    )


def _short(name: str) -> str:
    for short, full in ALIASES.items():
        if full == name:
            return short
    return name
