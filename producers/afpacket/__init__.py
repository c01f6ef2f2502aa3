"""Live capture from AF_PACKET TPACKET_V3 rings (see capture.py); ring.py and bpf.py are
pure, ring_socket.py and netns.py are the thin system-call shell."""

from producers.afpacket.capture import AfPacketCapture
from producers.afpacket.ring import RingSpec
from producers.afpacket.ring_socket import LiveCaptureError

__all__ = ["AfPacketCapture", "LiveCaptureError", "RingSpec"]
