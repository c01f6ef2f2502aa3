# The node agent (`wiretide agent`): live capture (AF_PACKET) and TLS plaintext through
# eBPF uprobes, published to Kafka. BCC comes from Debian (python3-bpfcc is built for
# bookworm's python3, 3.11), so the project lives in a venv that sees the system's
# site-packages. Runs as root with a few capabilities (see the Helm chart); needs the
# host's /sys/kernel/btf or kernel headers (/lib/modules, /usr/src) mounted read-only.
#   docker build -f deploy/agent.Dockerfile -t wiretide-agent:0.1.0 .
FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/wiretide/bin:$PATH \
    WIRETIDE_DATA=/var/run/wiretide

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-bpfcc bpfcc-tools libbpfcc \
        tcpdump iproute2 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv --system-site-packages /opt/wiretide

WORKDIR /src
COPY pyproject.toml ./
COPY wiretide wiretide
COPY producers producers
COPY streams streams
COPY schemas schemas
COPY sinks sinks
RUN /opt/wiretide/bin/pip install --no-cache-dir . \
    && cd / && rm -rf /src \
    && /opt/wiretide/bin/python -c "import bcc, wiretide.cli, producers.tls" \
    && install -d /var/run/wiretide

WORKDIR /var/run/wiretide
CMD ["wiretide", "agent", "--all-namespaces", "--tls"]
