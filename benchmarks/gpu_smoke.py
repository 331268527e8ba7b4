"""GPU smoke test: run a tiny exported model on CUDA and compare it with CPU.

    python benchmarks/gpu_smoke.py [ARTIFACT_DIR]

Exits 0 with a message when this onnxruntime has no CUDA provider. Without ARTIFACT_DIR a tiny BERT
classifier and a tiny GPT-2 are exported first (needs the 'convert' extra).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def _tiny(kind: str, root: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
    import runtime_artifacts

    return runtime_artifacts.export_artifact(
        kind, runtime_artifacts.write_source(kind, root / f"{kind}-src"), root / kind
    )


def main() -> int:
    import onnxruntime

    from gpuxbuild.runtime import benchmark, doctor, load

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        print(f"no CUDA execution provider (available: {onnxruntime.get_available_providers()}); nothing to test")
        return 0
    print(doctor())
    with tempfile.TemporaryDirectory() as tmp:
        folders = [Path(sys.argv[1])] if len(sys.argv) > 1 else [_tiny("bert", Path(tmp)), _tiny("gpt2", Path(tmp))]
        for folder in folders:
            gpu, cpu = load(folder, provider="cuda"), load(folder, provider="cpu")
            assert gpu.providers[0] == "CUDAExecutionProvider", gpu.providers
            if gpu.task == "text-generation":
                inputs = {"text": "hello world", "max_new_tokens": 8}
                assert gpu.predict(inputs)["token_ids"] == cpu.predict(inputs)["token_ids"]
            else:
                inputs = {"text": ["hello world", "paris is the capital of france"]}
                arrays = cpu.tokenizer.encode(inputs["text"]).arrays
                feed = {k: v.tolist() for k, v in cpu.feed(arrays).items()}
                a, b = gpu.predict(feed), cpu.predict(feed)
                for name in a:
                    np.testing.assert_allclose(np.array(a[name]), np.array(b[name]), atol=1e-3)
            print(folder.name, gpu.providers, benchmark(gpu, inputs, runs=20, warmup=3)["latency_ms"])
    print("CUDA smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
