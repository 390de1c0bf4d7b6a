"""ONNX Runtime backend (CPU, or CUDA where onnxruntime-gpu is installed)."""
