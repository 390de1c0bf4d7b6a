"""Workstation-only export code: PyTorch -> ONNX -> INT8 engines -> a model bundle."""
