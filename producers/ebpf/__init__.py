"""eBPF helpers shared by capture sources: prerequisite checks (support.py, errors.py) and
the pod-IP socket filter (ip_filter.py)."""
