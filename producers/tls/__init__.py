"""TLS plaintext capture with eBPF uprobes (OpenSSL/BoringSSL, Go crypto/tls).

Host setup: producers/tls/setup.sh (BCC, kernel headers, tracefs).
"""

from producers.ebpf.support import EbpfSupport, probe_ebpf
from producers.tls.capture import TlsCapture

__all__ = ["EbpfSupport", "TlsCapture", "probe_ebpf"]
