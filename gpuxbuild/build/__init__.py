"""`gpux build`: convert locked models into content-addressed ONNX artifacts (see docs/architecture.md)."""

import os

# Models built in parallel by default: export is CPU-bound, and memory bounds it further (pipeline.memory_bounded_jobs).
DEFAULT_JOBS = min(2, os.cpu_count() or 1)
