"""Kubernetes targeting: which pods to watch, who each IP is, where their processes run.

`model` is pure (API objects as the JSON dicts the API returns); `client` talks to the
API server with the kubernetes client; `targeting` keeps the picture current from a watch.
"""
