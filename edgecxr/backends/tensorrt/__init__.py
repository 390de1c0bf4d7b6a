"""TensorRT backend (NVIDIA GPUs and Jetson): engines are built on the device they run on."""
