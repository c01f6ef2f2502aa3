"""Who is who, from a real API server to the stream workers: the endpoints a Targeting
lists are published on the compacted endpoints topic (real broker), folded by a worker's
follower, and name both sides of a call in the pipeline."""

from __future__ import annotations

import time
import uuid

from schemas.config import Settings
from schemas.records import ACK, PSH, Segment
from streams.dissect.registry import default_registry
from streams.enrich import Directory
from streams.pipeline import Pipeline
from streams.redact import RedactionPolicy
from tests.wiretide.kube.conftest import create_pod, delete_pod, make_namespace, service
from tests.wiretide.kube.controlplane import Rest
from wiretide.kube.client import KubeApi
from wiretide.kube.model import PodSelector
from wiretide.kube.targeting import Targeting


def _shop(rest: Rest, front_ip: str) -> tuple[str, str]:
    """front (a pod behind service front) and catalogue (a service); (namespace, its IP)."""
    ns = make_namespace(rest, "ep")
    create_pod(rest, ns, "front-1", {"app": "front"}, ip=front_ip)
    rest.post(f"/api/v1/namespaces/{ns}/services", service("front", {"app": "front"}))
    svc = rest.post(f"/api/v1/namespaces/{ns}/services", service("catalogue", {"app": "cat"}))
    return ns, svc["spec"]["clusterIP"]


def test_calls_between_pods_carry_pod_and_service_names(rest: Rest, kubeconfig: str) -> None:
    ns, catalogue_ip = _shop(rest, "10.250.4.11")
    pic = Targeting(KubeApi(kubeconfig), PodSelector.parse(None, [ns])).refresh()
    directory = Directory()
    for endpoint in pic.endpoints:
        directory.update(endpoint)
    pipe = Pipeline(default_registry(), RedactionPolicy.default(), directory=directory)
    client, server = ("10.250.4.11", 40000), (catalogue_ip, 80)
    request = b"GET /catalogue HTTP/1.1\r\nHost: catalogue\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"
    segs = [
        Segment(1, *client, *server, 1, 0, ACK | PSH, request),
        Segment(2, *server, *client, 9, 0, ACK | PSH, response),
    ]
    [call] = pipe.process(0, segs).calls
    assert (call.src_pod, call.src_namespace, call.src_service) == ("front-1", ns, "front")
    assert (call.dst_pod, call.dst_namespace, call.dst_service) == ("", ns, "catalogue")


def test_endpoints_travel_through_the_compacted_topic_to_every_worker(
    rest: Rest, kubeconfig: str, kafka: str
) -> None:
    """The tap's publisher and a worker's follower agree on who is who, including a
    deleted pod (a tombstone)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from streams.endpoints import EndpointFollower
    from wiretide.kube.publish import EndpointPublisher

    ns, catalogue_ip = _shop(rest, "10.250.4.21")
    topic = f"t{uuid.uuid4().hex[:8]}-endpoints"
    admin = AdminClient({"bootstrap.servers": kafka})
    new = NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})
    admin.create_topics([new])[topic].result()
    targeting = Targeting(KubeApi(kubeconfig), PodSelector.parse(None, [ns]))
    publisher = EndpointPublisher(Settings(kafka=kafka), topic, linger_s=0)
    first = targeting.refresh()
    assert publisher.sync(first.endpoints) == len(first.endpoints)
    assert publisher.sync(first.endpoints) == 0  # nothing changed, nothing sent
    directory = Directory()
    follower = EndpointFollower(Settings(kafka=kafka), topic, directory)
    follower.start()
    try:
        deadline = time.monotonic() + 60
        while len(directory) < len(first.endpoints) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert directory.get("10.250.4.21").name == "front-1"
        delete_pod(rest, ns, "front-1")
        publisher.sync(targeting.refresh().endpoints)
        while directory.get("10.250.4.21") is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert directory.get("10.250.4.21") is None
        assert directory.get(catalogue_ip).kind == "service"
    finally:
        follower.stop()
        follower.join(5)
