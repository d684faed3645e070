"""Offline trainer: data, model, training, evaluation, ONNX export and publishing a version.

The entry point is :func:`fleetserve.trainer.pipeline.run`. Nothing here is imported by the
serving path; torch is only needed by ``model``, ``train``, ``export`` and ``pipeline``.
"""
