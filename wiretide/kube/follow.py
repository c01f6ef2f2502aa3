"""Keep a live capture aimed at the selected pods: publish who every IP is, narrow the
capture to the targeted pods' IPs, and follow pods as they come and go."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol

from wiretide.kube import model
from wiretide.kube.client import KubeApi
from wiretide.kube.publish import EndpointPublisher
from wiretide.kube.targeting import Picture, Targeting


class Aimable(Protocol):
    def set_hosts(self, hosts: list[str]) -> None: ...


class TapTargets:
    def __init__(
        self,
        api: KubeApi,
        selector: model.PodSelector,
        capture: Aimable,
        publisher: EndpointPublisher,
        on_targets: Callable[[Picture], None] | None = None,
    ) -> None:
        self.targeting = Targeting(api, selector)
        self.capture = capture
        self.publisher = publisher
        self.on_targets = on_targets  # e.g. TLS uprobes re-aimed at the pods' processes

    def start(self) -> Picture:
        picture = self.targeting.refresh()
        self._aim(picture)
        self.targeting.follow(lambda old, new: self._aim(new, old))
        return picture

    def _aim(self, new: Picture, old: Picture | None = None) -> None:
        self.publisher.sync(new.endpoints)
        if old is None or old.target_ips != new.target_ips:
            self.capture.set_hosts(sorted(new.target_ips))
        if self.on_targets is not None and (old is None or old.targets != new.targets):
            self.on_targets(new)
        if old is not None and old.target_ips != new.target_ips:
            added = len(new.target_ips - old.target_ips)
            gone = len(old.target_ips - new.target_ips)
            print(f"targets: +{added} -{gone} pod IPs, {len(new.targets)} pods",
                  file=sys.stderr, flush=True)  # fmt: skip

    def stop(self) -> None:
        self.targeting.stop()
