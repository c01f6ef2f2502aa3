"""The pod-IP BPF socket filter for AF_PACKET capture (see producers/ebpf/ip_filter.py)."""

from producers.ebpf.ip_filter import IpFilter, address_key

__all__ = ["IpFilter", "address_key"]
