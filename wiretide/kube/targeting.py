"""The live picture of the cluster a tap needs: which pods are targeted (their IPs to
capture), who every IP is (for the endpoints topic), kept current from a pod watch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.records import Endpoint
from wiretide.kube import model
from wiretide.kube.client import KubeApi, KubeError


@dataclass(frozen=True, slots=True)
class Picture:
    targets: tuple[dict[str, Any], ...]  # the selected, running pods
    target_ips: frozenset[str]
    endpoints: tuple[Endpoint, ...]  # every pod and service IP seen
    meshed: tuple[tuple[str, str, str], ...] = field(default=())  # (ns, pod, mesh)


def picture(pods: list[dict], services: list[dict], selector: model.PodSelector) -> Picture:
    targets = tuple(p for p in pods if selector.matches(p) and model.is_running(p))
    ips = frozenset(ip for p in targets for ip in model.pod_ips(p))
    meshed = tuple(
        (p["metadata"].get("namespace", ""), p["metadata"].get("name", ""), mesh)
        for p in targets
        if (mesh := model.mesh_of(p))
    )
    return Picture(targets, ips, tuple(model.endpoints(pods, services)), meshed)


class Targeting:
    """Lists pods and services once, then follows a pod watch in a thread; every change
    calls `on_change(old, new)` with the two pictures."""

    def __init__(self, api: KubeApi, selector: model.PodSelector) -> None:
        self.api = api
        self.selector = selector
        self._pods: dict[str, dict] = {}
        self._services: list[dict] = []
        self._version = ""
        self.current: Picture = Picture((), frozenset(), ())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def refresh(self) -> Picture:
        pods, self._version = self.api.list_pods()
        self._pods = {_uid(p): p for p in pods}
        self._services = self.api.list_services()
        self.current = picture(list(self._pods.values()), self._services, self.selector)
        return self.current

    def apply(self, kind: str, pod: dict) -> Picture:
        """One watch event into the picture (pure apart from `self`)."""
        if kind == "DELETED":
            self._pods.pop(_uid(pod), None)
        else:
            self._pods[_uid(pod)] = pod
        version = (pod.get("metadata") or {}).get("resourceVersion")
        if version:
            self._version = version
        self.current = picture(list(self._pods.values()), self._services, self.selector)
        return self.current

    def follow(self, on_change: Callable[[Picture, Picture], None]) -> None:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    for kind, pod in self.api.watch_pods(self._version, timeout_s=60):
                        old = self.current
                        new = self.apply(kind, pod)
                        if new != old:
                            on_change(old, new)
                        if self._stop.is_set():
                            return
                    self._stop.wait(0.5)  # the server ended the watch: start another
                except KubeError as ex:
                    self.error = str(ex)
                    self._stop.wait(2.0)
                except Exception as ex:  # the watch stream ended badly: list again
                    self.error = f"pod watch failed: {ex}"
                    self._stop.wait(2.0)
                    try:
                        old = self.current
                        new = self.refresh()
                        if new != old:
                            on_change(old, new)
                    except KubeError as again:
                        self.error = str(again)

        self._thread = threading.Thread(target=run, name="pod-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def _uid(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"
