"""The on-device runtime: choose an engine, classify images, watch a scanner's folder.

Torch-free by design: it runs on Jetson (TensorRT) and Intel (OpenVINO) boxes.
"""
