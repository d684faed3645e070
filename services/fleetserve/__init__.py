"""fleetserve: a KServe v2 model-serving cluster for computer-vision models."""

__version__ = "0.1.0"
