# edgecxr on an Intel box (CPU, integrated GPU or NPU) with OpenVINO.
# Built on the target or any x86-64 machine with Docker: docker build -f deploy/containers/intel.Dockerfile -t edgecxr-intel .
# Run: docker run -d --restart on-failure -v /srv/xray/inbox:/inbox -v /var/lib/edgecxr:/out \
#        [--device /dev/dri --device /dev/accel] edgecxr-intel [--openvino-device GPU|NPU|AUTO]
FROM openvino/ubuntu22_runtime:2024.6.0

USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/edgecxr
COPY pyproject.toml README.md ./
COPY edgecxr ./edgecxr
RUN python3 -m venv --system-site-packages /opt/edgecxr/venv \
    && /opt/edgecxr/venv/bin/pip install --no-cache-dir ".[openvino,onnxruntime,dicom]"

RUN useradd --system --no-create-home --shell /usr/sbin/nologin edgecxr
USER edgecxr
# MALLOC_ARENA_MAX as the systemd unit sets it (docs/bench.md, soak)
ENV EDGECXR_LOG_FORMAT=json MALLOC_ARENA_MAX=2
VOLUME ["/inbox", "/out"]
HEALTHCHECK --interval=30s --timeout=10s CMD ["/opt/edgecxr/venv/bin/edgecxr", "status", "/out"]
ENTRYPOINT ["/opt/edgecxr/venv/bin/edgecxr", "watch", "/inbox", "--out", "/out", "--backend", "openvino"]
