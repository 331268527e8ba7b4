"""Provider choice as a pure function of each platform's onnxruntime provider list."""

from __future__ import annotations

import pytest

from gpuxbuild.errors import GpuxError
from gpuxbuild.runtime.doctor import doctor
from gpuxbuild.runtime.providers import CPU, canonical_name, parse_memory, select_providers

MACOS = ["CoreMLExecutionProvider", "AzureExecutionProvider", CPU]
LINUX_CUDA = ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]
LINUX_CUDA_ONLY = ["CUDAExecutionProvider", CPU]
ROCM = ["MIGraphXExecutionProvider", "ROCMExecutionProvider", CPU]
WINDOWS_DML = ["DmlExecutionProvider", CPU]
OPENVINO = ["OpenVINOExecutionProvider", CPU]
CPU_ONLY = ["AzureExecutionProvider", CPU]


@pytest.mark.parametrize(
    "available, chain",
    [
        (MACOS, ["CoreMLExecutionProvider", CPU]),
        (LINUX_CUDA, ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]),
        (LINUX_CUDA_ONLY, ["CUDAExecutionProvider", CPU]),
        (ROCM, ["ROCMExecutionProvider", CPU]),
        (WINDOWS_DML, ["DmlExecutionProvider", CPU]),
        (OPENVINO, ["OpenVINOExecutionProvider", CPU]),
        (CPU_ONLY, [CPU]),
    ],
)
def test_auto_picks_the_best_available(available, chain):
    choice = select_providers(available, "auto")
    assert choice.providers == chain
    assert len(choice.options) == len(chain)
    assert (choice.notice is not None) == (chain == [CPU])


def test_rocm_is_preferred_over_migraphx_but_migraphx_chains_to_rocm():
    assert select_providers(ROCM, "migraphx").providers == ["MIGraphXExecutionProvider", "ROCMExecutionProvider", CPU]


@pytest.mark.parametrize(
    "name, available, primary",
    [
        ("cuda", LINUX_CUDA, "CUDAExecutionProvider"),
        ("CUDAExecutionProvider", LINUX_CUDA, "CUDAExecutionProvider"),
        ("tensorrt", LINUX_CUDA, "TensorrtExecutionProvider"),
        ("trt", LINUX_CUDA, "TensorrtExecutionProvider"),
        ("coreml", MACOS, "CoreMLExecutionProvider"),
        ("metal", MACOS, "CoreMLExecutionProvider"),
        ("dml", WINDOWS_DML, "DmlExecutionProvider"),
        ("directml", WINDOWS_DML, "DmlExecutionProvider"),
        ("dx12", WINDOWS_DML, "DmlExecutionProvider"),
        ("openvino", OPENVINO, "OpenVINOExecutionProvider"),
        ("rocm", ROCM, "ROCMExecutionProvider"),
        ("cpu", LINUX_CUDA, CPU),
    ],
)
def test_explicit_provider(name, available, primary):
    choice = select_providers(available, name)
    assert choice.primary == primary
    assert choice.providers[-1] == CPU
    assert choice.notice is None


@pytest.mark.parametrize(
    "name, available", [("cuda", MACOS), ("coreml", LINUX_CUDA), ("dml", CPU_ONLY), ("tensorrt", LINUX_CUDA_ONLY)]
)
def test_explicit_but_unavailable_is_an_error_listing_what_is(name, available):
    with pytest.raises(GpuxError) as err:
        select_providers(available, name)
    assert "available: " + ", ".join(available) in err.value.message
    assert err.value.hint


def test_unknown_name_and_vulkan_are_errors():
    with pytest.raises(GpuxError, match="unknown execution provider"):
        select_providers(LINUX_CUDA, "tpu")
    with pytest.raises(GpuxError, match="vulkan"):
        select_providers(LINUX_CUDA, None, backend="vulkan")


def test_cli_request_wins_over_gpux_yml_backend():
    assert select_providers(LINUX_CUDA, "cpu", backend="cuda").primary == CPU
    assert select_providers(LINUX_CUDA, "auto", backend="cuda").primary == "CUDAExecutionProvider"
    assert select_providers(LINUX_CUDA, None, backend="auto").primary == "TensorrtExecutionProvider"
    with pytest.raises(GpuxError, match=r"runtime\.gpu\.backend"):
        select_providers(CPU_ONLY, "auto", backend="cuda")


def test_options_carry_device_and_memory():
    choice = select_providers(LINUX_CUDA, "auto", device_id=1, memory="2GB")
    trt, cuda, cpu = choice.options
    assert cuda == {"device_id": 1, "gpu_mem_limit": 2 * 1024**3}
    assert trt["device_id"] == 1
    assert cpu == {}
    assert select_providers(MACOS).options[0] == {"MLComputeUnits": "ALL"}
    assert select_providers(WINDOWS_DML, device_id=2).options[0] == {"device_id": 2}
    assert select_providers(OPENVINO).options[0] == {"device_type": "AUTO"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2GB", 2 << 30),
        ("512MB", 512 << 20),
        ("1.5GiB", int(1.5 * (1 << 30))),
        ("100", 100),
        (None, None),
        (4096, 4096),
    ],
)
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


def test_parse_memory_rejects_garbage():
    with pytest.raises(GpuxError, match=r"runtime\.gpu\.memory"):
        parse_memory("lots")


def test_canonical_name_accepts_full_names_case_insensitively():
    assert canonical_name("cudaexecutionprovider") == "CUDAExecutionProvider"
    assert canonical_name("Dml") == "DmlExecutionProvider"


def test_to_dict_is_json_ready():
    data = select_providers(LINUX_CUDA, "auto", memory="1GB").to_dict()
    assert data["providers"] == LINUX_CUDA
    assert data["options"][1]["gpu_mem_limit"] == str(1 << 30)


def test_doctor_reports_this_machine(tmp_path):
    report = doctor([tmp_path / "missing"])
    assert report["onnxruntime"]["package"] in (
        "onnxruntime",
        "onnxruntime-gpu",
        "onnxruntime-directml",
        "onnxruntime-openvino",
        "onnxruntime-silicon",
    )
    assert CPU in report["available_providers"]
    assert report["device"] in ("CPU", "GPU", "NPU")
    assert report["auto"]["providers"][-1] == CPU
    assert "error" in report["artifacts"][0]
