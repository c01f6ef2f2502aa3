"""Aiming a live capture at the pods a selector picks: the API and selector checked
before anything starts, the capture narrowed to the pods' IPs as they change, the
endpoints topic filled, TLS capture narrowed to their processes on this node, and the
loopback of meshed pods here captured too."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from producers.afpacket import AfPacketCapture
from schemas.config import Settings
from schemas.errors import WiretideError
from wiretide.kube import model
from wiretide.kube.client import KubeApi
from wiretide.kube.follow import TapTargets
from wiretide.kube.pids import local_pids, pids_of_containers, pods_of_pids
from wiretide.kube.publish import EndpointPublisher
from wiretide.kube.targeting import Targeting


@dataclass(frozen=True)
class Cluster:
    """The API and the pod selector of a targeted capture."""

    api: KubeApi
    selector: model.PodSelector

    @classmethod
    def open(
        cls,
        pod_regex: str | None,
        namespaces: list[str] | None,
        all_namespaces: bool,
        kubeconfig: str | None,
    ) -> Cluster:
        """A bad regex or namespace is one line, before anything starts."""
        try:
            selector = model.PodSelector.parse(pod_regex, namespaces or (), all_namespaces)
        except ValueError as ex:
            raise WiretideError(str(ex)) from None
        return cls(KubeApi(kubeconfig), selector)

    def local_pids(self, node: str) -> list[int]:
        """The selected pods' processes on this node, now (for TLS capture from the start)."""
        return local_pids(Targeting(self.api, self.selector).refresh().targets, node)


def aim_at_pods(cluster: Cluster, sources: list, settings: Settings, node: str) -> TapTargets:
    """Follow the selected pods: sources[0] narrowed to their IPs, a TLS source to their
    processes here, the endpoints topic filled, and a capture added on the loopback of
    each meshed pod on this node (appended to `sources`). Returns the TapTargets to stop."""
    tls = next((s for s in sources if hasattr(s, "set_pids")), None)

    def aim_tls(picture) -> None:  # noqa: ANN001 - the targeting's Picture
        if tls is not None:  # the targeted pods' processes on this node, as they change
            owners = pods_of_pids(picture.targets, node)
            tls.set_pids(sorted(owners))
            if hasattr(tls, "set_pods"):  # coverage names each TLS process's pod
                tls.set_pods(owners)

    publisher = EndpointPublisher(settings)
    targets = TapTargets(cluster.api, cluster.selector, sources[0], publisher, aim_tls)
    picture = targets.start()
    selector = cluster.selector
    where = "every namespace" if selector.all_namespaces else ", ".join(selector.namespaces)
    print(f"targeting {len(picture.targets)} pods ({len(picture.target_ips)} IPs) in {where}",
          file=sys.stderr, flush=True)  # fmt: skip
    sources.extend(_meshed_loopbacks(picture.targets, node))
    return targets


def _meshed_loopbacks(pods: list[dict], node: str) -> list:
    """A meshed pod's calls are mTLS between pods; the plaintext leg runs between the app
    and its sidecar on the pod's own loopback, so capture there too (pods on this node)."""
    extra = []
    for pod in pods:
        if not model.mesh_of(pod) or (pod.get("spec") or {}).get("nodeName") != node:
            continue
        pids = [p for ps in pids_of_containers(model.container_ids(pod)).values() for p in ps]
        if pids:
            extra.append(AfPacketCapture(["lo"], netns=f"pid:{pids[0]}", node=node))
    return extra
