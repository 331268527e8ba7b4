"""gpuxbuild: a declarative, reproducible supply chain for models that run on the GPUX runtime."""

__version__ = "0.1.0"
