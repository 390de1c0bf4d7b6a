# edgecxr on an NVIDIA Jetson (JetPack 6, TensorRT 10) with a TensorRT engine built on the device.
# Build on the Jetson itself: docker build -f deploy/containers/jetson.Dockerfile -t edgecxr-jetson .
# Run: docker run -d --restart on-failure --runtime nvidia -v /srv/xray/inbox:/inbox \
#        -v /var/lib/edgecxr:/out -v /var/lib/edgecxr-bundle:/bundle edgecxr-jetson
# /bundle holds a bundle from `edgecxr export --int8 --targets onnxruntime,tensorrt`; the first
# start builds its engine for this GPU and TensorRT (`edgecxr build-engine`), later starts reuse it.
FROM nvcr.io/nvidia/l4t-tensorrt:r10.3.0-runtime

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/edgecxr
COPY pyproject.toml README.md ./
COPY edgecxr ./edgecxr
# tensorrt comes from the base image (--system-site-packages); cuda-python gives the runner its buffers
RUN python3 -m venv --system-site-packages /opt/edgecxr/venv \
    && /opt/edgecxr/venv/bin/pip install --no-cache-dir ".[dicom]" cuda-python
COPY deploy/containers/jetson-entrypoint.sh /usr/local/bin/edgecxr-entrypoint

RUN useradd --system --no-create-home --shell /usr/sbin/nologin edgecxr
USER edgecxr
# MALLOC_ARENA_MAX as the systemd unit sets it (docs/bench.md, soak)
ENV EDGECXR_LOG_FORMAT=json EDGECXR_BUNDLE=/bundle MALLOC_ARENA_MAX=2
VOLUME ["/inbox", "/out", "/bundle"]
HEALTHCHECK --interval=30s --timeout=10s CMD ["/opt/edgecxr/venv/bin/edgecxr", "status", "/out"]
ENTRYPOINT ["/usr/local/bin/edgecxr-entrypoint"]
