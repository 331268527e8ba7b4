"""`gpux build`: convert locked models into content-addressed ONNX artifacts (see docs/architecture.md)."""
