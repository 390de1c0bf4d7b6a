#!/bin/sh
# Jetson container start: make sure the bundle has a TensorRT engine for this GPU and TensorRT
# version (built once, on the device, a few minutes), then watch the inbox.
set -eu
EDGECXR=/opt/edgecxr/venv/bin/edgecxr
"$EDGECXR" build-engine "$EDGECXR_BUNDLE" --precision int8 --if-needed
exec "$EDGECXR" watch /inbox --out /out --backend tensorrt "$@"
