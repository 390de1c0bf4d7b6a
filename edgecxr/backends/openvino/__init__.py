"""OpenVINO backend (Intel CPU, integrated GPU, NPU)."""
