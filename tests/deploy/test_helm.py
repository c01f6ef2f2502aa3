"""The Helm chart, rendered with the real helm binary over every pair of documented
settings: lint passes, every object deserializes into the Kubernetes client's models
without losing a field, and the rendered cluster does what the values promise."""

from __future__ import annotations

import base64
import itertools
import re
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import pytest
import yaml
from kubernetes.client import ApiClient

from tests.deploy._support import CHART, cli_error, env_names_read, find_helm

HELM = find_helm()
pytestmark = pytest.mark.skipif(
    HELM is None,
    reason="no helm binary: set $WIRETIDE_HELM, run scripts/build-helm.sh or put helm on PATH",
)

RELEASE, NAMESPACE = "wt", "observe"
FULLNAME = f"{RELEASE}-wiretide"
PARTITIONS = 6
READ_ONLY = {"get", "list", "watch"}
RBAC_EXPECTED = {
    (group, resource, verb)
    for group, resource in [
        ("", "pods"),
        ("", "services"),
        ("", "nodes"),
        ("", "namespaces"),
        ("discovery.k8s.io", "endpointslices"),
    ]
    for verb in READ_ONLY
}
AGENT_CAPS = {"BPF", "PERFMON", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE", "SYS_RESOURCE"}
HOST_MOUNTS = {"/sys/kernel/btf", "/sys/kernel/tracing", "/lib/modules"}
CUSTOM_KINDS = {
    "kafka.strimzi.io/v1beta2": {"Kafka", "KafkaNodePool", "KafkaUser"},
    "clickhouse.altinity.com/v1": {"ClickHouseInstallation"},
    "clickhouse-keeper.altinity.com/v1": {"ClickHouseKeeperInstallation"},
}

# Each documented setting and the values it can take; the combinations cover every pair.
DIMENSIONS: dict[str, list[str]] = {
    "agent": ["off", "on", "on-tls"],
    "hub": ["off", "on", "on-token"],
    "kafka": ["plain", "tls", "tls-ca", "sasl", "sasl-tls", "sasl-tls-ca"],
    "cluster": ["none", "set"],
    "password": ["none", "secret"],
    "strimzi": ["off", "on"],
    "altinity": ["off", "on"],
    "namespaces": ["all", "list", "default"],
    "replicas": ["under", "over"],
    "rules": ["none", "set"],
}


def _pairwise(dimensions: dict[str, list[str]]) -> list[dict[str, str]]:
    """A small set of combinations in which every pair of settings appears (greedy)."""
    names = list(dimensions)
    uncovered = {
        ((a, va), (b, vb))
        for a, b in itertools.combinations(names, 2)
        for va in dimensions[a]
        for vb in dimensions[b]
    }
    candidates = [dict(zip(names, c, strict=True)) for c in itertools.product(*dimensions.values())]

    def pairs(combo: dict[str, str]) -> set:
        return {((a, combo[a]), (b, combo[b])) for a, b in itertools.combinations(names, 2)}

    chosen = []
    while uncovered:
        best = max(candidates, key=lambda c: len(pairs(c) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
    return chosen


COMBOS = _pairwise(DIMENSIONS)


def combo_id(combo: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in combo.items())


RULES = """rules:
  - name: catalogue-latency
    type: latency
    path: /catalogue
    latency: 300
"""


def values_for(combo: dict[str, str]) -> dict:
    replicas = 2 if combo["replicas"] == "under" else PARTITIONS + 5
    kafka = combo["kafka"]
    values: dict = {
        "partitions": PARTITIONS,
        "streams": {"replicas": replicas},
        "writer": {"replicas": max(1, replicas - 1)},
        "agent": {"enabled": combo["agent"] != "off", "tls": combo["agent"] == "on-tls"},
        "hub": {"enabled": combo["hub"] != "off"},
        "kafka": {
            "bootstrap": "broker-0.kafka.svc:9092",
            "tls": {"enabled": "tls" in kafka, "caSecret": "kafka-ca" if "ca" in kafka else ""},
            "sasl": {
                "enabled": "sasl" in kafka,
                "mechanism": "SCRAM-SHA-256",
                "secret": "kafka-login",
            },
        },
        "clickhouse": {
            "dsn": "http://writer@ch.db.svc:8123/calls",
            "cluster": "shards" if combo["cluster"] == "set" else "",
            # The Altinity template needs the wiretide user's password.
            "passwordSecret": "ch-login"
            if combo["password"] == "secret" or combo["altinity"] == "on"
            else "",
        },
        "strimzi": {"enabled": combo["strimzi"] == "on"},
        "altinity": {"enabled": combo["altinity"] == "on"},
    }
    if combo["hub"] == "on-token":
        values["hub"]["tokenSecret"] = "hub-token"
    if combo.get("rules") == "set":
        values["rules"] = RULES
    agent = values["agent"]
    if combo["namespaces"] == "all":
        agent.update(allNamespaces=True, namespaces=["ignored"])
    elif combo["namespaces"] == "list":
        agent.update(allNamespaces=False, namespaces=["shop", "payments"])
    else:
        agent.update(allNamespaces=False, namespaces=[])
    return values


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)


def write_values(tmp: Path, values: dict) -> Path:
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@cache
def render(combo_key: str) -> list[dict]:
    combo = dict(item.split("=", 1) for item in combo_key.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        values = write_values(Path(tmp), values_for(combo))
        done = helm("template", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values))
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]


def one(docs: list[dict], kind: str, name: str) -> dict | None:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) <= 1
    return found[0] if found else None


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _prune(value: object) -> object:
    """Drop empty values, which the client's serializer leaves out as well."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


API = ApiClient()


def deserialize(doc: dict) -> object:
    group_version, kind = doc["apiVersion"], doc["kind"]
    version = group_version.split("/")[-1]
    model = f"{version.capitalize()}{kind}"
    return API._ApiClient__deserialize(doc, model)


combos = pytest.mark.parametrize("combo", COMBOS, ids=combo_id)


def test_the_combinations_cover_every_documented_pair() -> None:
    seen = {
        ((a, c[a]), (b, c[b])) for c in COMBOS for a, b in itertools.combinations(DIMENSIONS, 2)
    }
    assert len(seen) == sum(
        len(DIMENSIONS[a]) * len(DIMENSIONS[b]) for a, b in itertools.combinations(DIMENSIONS, 2)
    )
    assert len(COMBOS) < 60


@combos
def test_helm_lint_passes(combo: dict[str, str], tmp_path: Path) -> None:
    values = write_values(tmp_path, values_for(combo))
    done = helm("lint", "--strict", str(CHART), "-n", NAMESPACE, "-f", str(values))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@combos
def test_every_object_is_a_valid_kubernetes_object(combo: dict[str, str]) -> None:
    docs = render(combo_id(combo))
    names = set()
    for doc in docs:
        meta = doc.get("metadata", {})
        key = (doc["kind"], meta.get("name"))
        assert key not in names, f"two objects named {key}"
        names.add(key)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]), meta["name"]
        assert len(meta["name"]) <= 63
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert meta.get("namespace") == NAMESPACE, key
        if doc["apiVersion"] in CUSTOM_KINDS:
            assert doc["kind"] in CUSTOM_KINDS[doc["apiVersion"]], key
            assert isinstance(doc.get("spec"), dict), key
            continue
        model = deserialize(doc)
        # A misspelt or misplaced field would be dropped by the model: nothing may be lost.
        assert _prune(API.sanitize_for_serialization(model)) == _prune(doc), key


@combos
def test_rbac_is_read_only_and_exactly_what_targeting_needs(combo: dict[str, str]) -> None:
    docs = render(combo_id(combo))
    assert not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding")
    (role,) = by_kind(docs, "ClusterRole")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == RBAC_EXPECTED
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in role["rules"])
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (account,) = by_kind(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]
        # Only the agent talks to the Kubernetes API; the others get no token at all.
        if workload["kind"] != "DaemonSet":
            assert pod["automountServiceAccountToken"] is False


@combos
def test_agent_has_the_host_access_capture_needs_and_no_more(combo: dict[str, str]) -> None:
    docs = render(combo_id(combo))
    agent = one(docs, "DaemonSet", f"{FULLNAME}-agent")
    if combo["agent"] == "off":
        assert agent is None
        return
    pod = agent["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert {"operator": "Exists"} in pod["tolerations"], "must run on every node, tainted too"
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security.get("privileged") is not True
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    added = security["capabilities"]["add"]
    assert set(added) == AGENT_CAPS and len(added) == len(AGENT_CAPS)
    host_volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert HOST_MOUNTS <= set(host_volumes.values())
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    for name, path in host_volumes.items():
        assert mounts[name]["readOnly"] is True, f"host path {path} must be read-only"
        assert mounts[name]["mountPath"] == path
    env = env_of(container)
    assert env["WIRETIDE_DATA"]["value"] == "/var/run/wiretide"
    (heartbeat,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/var/run/wiretide"]
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == heartbeat["name"])
    assert env["WIRETIDE_NODE"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert not any(name.startswith("WIRETIDE_CLICKHOUSE") for name in env), "agent never stores"

    args = container["args"]
    assert ("--tls" in args) == (combo["agent"] == "on-tls")
    namespaces = [args[i + 1] for i, a in enumerate(args) if a == "--namespace"]
    if combo["namespaces"] == "all":
        assert "--all-namespaces" in args and namespaces == []
    elif combo["namespaces"] == "list":
        assert "--all-namespaces" not in args and namespaces == ["shop", "payments"]
    else:  # the CLI's default namespace
        assert "--all-namespaces" not in args and namespaces == []


@combos
def test_nothing_else_runs_privileged_or_as_root(combo: dict[str, str]) -> None:
    for workload in workloads(render(combo_id(combo))):
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert container["securityContext"].get("privileged") is not True
        if workload["kind"] == "Deployment":
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == 10001
            assert not pod.get("hostNetwork") and not pod.get("hostPID")
            assert not any("hostPath" in v for v in pod.get("volumes", []))
            for container in pod["containers"]:
                assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


@combos
def test_workers_and_writers_never_outnumber_partitions(combo: dict[str, str]) -> None:
    docs = render(combo_id(combo))
    values = values_for(combo)
    for name, key in (("streams", "streams"), ("writer", "writer")):
        deployment = one(docs, "Deployment", f"{FULLNAME}-{name}")
        asked = values[key]["replicas"]
        assert deployment["spec"]["replicas"] == min(asked, PARTITIONS)
    if combo["replicas"] == "over":
        assert one(docs, "Deployment", f"{FULLNAME}-streams")["spec"]["replicas"] == PARTITIONS


@combos
def test_every_container_is_sized_probed_and_runs_a_real_command(combo: dict[str, str]) -> None:
    for workload in workloads(render(combo_id(combo))):
        pod_spec = workload["spec"]["template"]["spec"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for container in pod_spec["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert {"cpu", "memory"} <= set(resources["limits"]), where
            assert "command" not in container, "the image's entrypoint stays"
            assert cli_error(container["args"]) is None, (where, cli_error(container["args"]))
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in container, f"{where} has no {probe}"
                check = container[probe]
                if "exec" in check:
                    command = check["exec"]["command"]
                    assert cli_error(command) is None, (where, cli_error(command))
                else:
                    port = check["httpGet"]["port"]
                    assert port in {p["name"] for p in container["ports"]}, where
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert mounts <= {v["name"] for v in pod_spec.get("volumes", [])}, where


@combos
def test_env_names_are_settings_the_code_reads(combo: dict[str, str]) -> None:
    read = env_names_read()
    for workload in workloads(render(combo_id(combo))):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            defined: list[str] = []
            for item in container.get("env", []):
                name = item["name"]
                if name.startswith("WIRETIDE_"):
                    assert name in read, f"{name} is set but nothing in the code reads it"
                # The kubelet expands $(VAR) only for variables defined above it.
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", item.get("value", "")):
                    assert ref in defined, f"{name} uses $({ref}) before it is defined"
                defined.append(name)


def _secret_refs(env: dict[str, dict], name: str) -> tuple[str, str] | None:
    ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


@combos
def test_kafka_security_settings_reach_every_process(combo: dict[str, str]) -> None:
    docs = render(combo_id(combo))
    kafka, strimzi = combo["kafka"], combo["strimzi"] == "on"
    tls, sasl = "tls" in kafka, "sasl" in kafka
    strimzi_ca = f"{FULLNAME}-kafka-cluster-ca-cert" if strimzi else ""
    ca_secret = "kafka-ca" if "ca" in kafka else strimzi_ca
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = env_of(container)
        expected = {
            (True, True): "SASL_SSL",
            (True, False): "SSL",
            (False, True): "SASL_PLAINTEXT",
        }.get((tls, sasl))
        assert env.get("WIRETIDE_KAFKA_SECURITY_PROTOCOL", {}).get("value") == expected
        bootstrap = env["WIRETIDE_KAFKA"]["value"]
        if strimzi:
            port = 9093 if tls else 9092
            assert bootstrap == f"{FULLNAME}-kafka-kafka-bootstrap:{port}"
        else:
            assert bootstrap == "broker-0.kafka.svc:9092"
        if tls and ca_secret:
            ca_path = env["WIRETIDE_KAFKA_CA"]["value"]
            (mount,) = [
                m for m in container["volumeMounts"] if ca_path.startswith(m["mountPath"] + "/")
            ]
            assert mount["readOnly"] is True
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            assert volume["secret"]["secretName"] == ca_secret
            assert ca_path.endswith("/" + volume["secret"]["items"][0]["path"])
        else:
            assert "WIRETIDE_KAFKA_CA" not in env
            assert not any("secret" in v for v in pod.get("volumes", []))
        if sasl and strimzi:
            assert env["WIRETIDE_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
            assert env["WIRETIDE_KAFKA_USERNAME"]["value"] == FULLNAME
            assert _secret_refs(env, "WIRETIDE_KAFKA_PASSWORD") == (FULLNAME, "password")
            assert one(docs, "KafkaUser", FULLNAME) is not None
        elif sasl:
            assert env["WIRETIDE_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-256"
            assert _secret_refs(env, "WIRETIDE_KAFKA_USERNAME") == ("kafka-login", "username")
            assert _secret_refs(env, "WIRETIDE_KAFKA_PASSWORD") == ("kafka-login", "password")
        else:
            assert not {"WIRETIDE_KAFKA_USERNAME", "WIRETIDE_KAFKA_PASSWORD"} & set(env)
    if strimzi:
        kafka_cr = one(docs, "Kafka", f"{FULLNAME}-kafka")
        listeners = {item["port"]: item for item in kafka_cr["spec"]["kafka"]["listeners"]}
        assert listeners[9093]["tls"] is True and listeners[9092]["tls"] is False
        auth = {item.get("authentication", {}).get("type") for item in listeners.values()}
        assert auth == ({"scram-sha-512"} if sasl else {None})


@combos
def test_clickhouse_settings_reach_the_writer_and_hub_only(combo: dict[str, str]) -> None:
    docs = render(combo_id(combo))
    altinity = combo["altinity"] == "on"
    cluster = "shards" if combo["cluster"] == "set" else ("wiretide" if altinity else None)
    password = combo["password"] == "secret" or altinity
    stores = [f"{FULLNAME}-writer"] + ([f"{FULLNAME}-hub"] if combo["hub"] != "off" else [])
    for workload in workloads(docs):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        if workload["metadata"]["name"] not in stores:
            assert not any("CLICKHOUSE" in name for name in env), workload["metadata"]["name"]
            continue
        assert env.get("WIRETIDE_CLICKHOUSE_CLUSTER", {}).get("value") == cluster
        assert env["WIRETIDE_RETENTION_DAYS"]["value"] == "7"
        dsn = env["WIRETIDE_CLICKHOUSE"]["value"]
        host = f"clickhouse-{FULLNAME}:8123" if altinity else "ch.db.svc:8123/calls"
        user = "wiretide" if altinity else "writer"
        if password:
            assert dsn == f"http://{user}:$(CLICKHOUSE_PASSWORD)@{host}"
            assert _secret_refs(env, "CLICKHOUSE_PASSWORD") == ("ch-login", "password")
        else:
            assert dsn == f"http://{user}@{host}" and "CLICKHOUSE_PASSWORD" not in env
    chi = one(docs, "ClickHouseInstallation", FULLNAME)
    assert (chi is not None) == altinity
    if altinity:
        (chi_cluster,) = chi["spec"]["configuration"]["clusters"]
        assert chi_cluster["name"] == cluster
        users = chi["spec"]["configuration"]["users"]
        assert users["wiretide/k8s_secret_password"] == f"{NAMESPACE}/ch-login/password"
        keeper = one(docs, "ClickHouseKeeperInstallation", f"{FULLNAME}-keeper")
        (zk,) = chi["spec"]["configuration"]["zookeeper"]["nodes"]
        assert zk["host"] == f"keeper-{keeper['metadata']['name']}"


@combos
def test_hub_is_served_on_its_port_with_its_token(combo: dict[str, str]) -> None:
    docs = render(combo_id(combo))
    hub = one(docs, "Deployment", f"{FULLNAME}-hub")
    service = one(docs, "Service", f"{FULLNAME}-hub")
    if combo["hub"] == "off":
        assert hub is None and service is None
        return
    (container,) = hub["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["wiretide", "hub", "--listen"]
    assert container["args"][3].endswith(":8899")
    assert service["spec"]["ports"][0]["port"] == 8899
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    pod_labels = hub["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    # Every replica must ask for the same token: the user's Secret, or one the chart makes.
    token = _secret_refs(env_of(container), "WIRETIDE_HUB_TOKEN")
    made = one(docs, "Secret", f"{FULLNAME}-hub-token")
    if combo["hub"] == "on-token":
        assert token == ("hub-token", "token") and made is None
    else:
        assert token == (f"{FULLNAME}-hub-token", "token")
        assert re.fullmatch(r"[A-Za-z0-9]{40}", base64.b64decode(made["data"]["token"]).decode())


# Settings that cannot work say so in one line instead of rendering a broken cluster.
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"altinity": {"enabled": True}}, "altinity.enabled needs clickhouse.passwordSecret"),
        ({"kafka": {"sasl": {"enabled": True}}}, "kafka.sasl.secret is required"),
        ({"kafka": {"bootstrap": ""}}, "kafka.bootstrap is required"),
        ({"clickhouse": {"dsn": ""}}, "clickhouse.dsn is required"),
        ({"kafka": {"tls": {"enabeld": True}}}, "additional properties 'enabeld' not allowed"),
        ({"partitions": 0}, "/partitions"),
        ({"kafka": {"sasl": {"mechanism": "GSSAPI"}}}, "/kafka/sasl/mechanism"),
    ],
)
def test_broken_settings_fail_with_a_clear_message(
    values: dict, message: str, tmp_path: Path
) -> None:
    done = helm("template", RELEASE, str(CHART), "-f", str(write_values(tmp_path, values)))
    assert done.returncode != 0
    assert message in done.stderr


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("resources", "nodeSelector"):
            out.extend(_leaves(value, path + "."))
        else:
            out.append(path)
    return out


def test_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [path for path in _leaves(values) if f"`{path}`" not in readme]
    assert not missing, f"values not in deploy/helm/wiretide/README.md: {missing}"


def test_rules_reach_every_worker_and_the_hub() -> None:
    combo = next(c for c in COMBOS if c["rules"] == "set" and c["hub"] != "off")
    docs = render(combo_id(combo))
    maps = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-rules")]
    assert [m["data"]["rules.yaml"] for m in maps] == [RULES]
    for component in ("streams", "hub"):
        [dep] = [
            d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith(component)
        ]
        pod = dep["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["WIRETIDE_RULES"] == "/etc/wiretide/rules/rules.yaml", component
        names = [v.get("configMap", {}).get("name") for v in pod["volumes"]]
        assert maps[0]["metadata"]["name"] in names, component
    none = next(c for c in COMBOS if c["rules"] == "none")
    assert not [
        d for d in by_kind(render(combo_id(none)), "ConfigMap") if "-rules" in d["metadata"]["name"]
    ]


def test_service_monitor_scrapes_the_hub_with_its_token_and_the_pipeline(tmp_path: Path) -> None:
    """metrics.serviceMonitor.enabled: one ServiceMonitor selecting the hub's Service (its
    /metrics behind the hub token) and a metrics Service per pipeline component, whose
    pods serve /metrics on metrics.port; off by default (no operator CRDs needed)."""
    assert not by_kind(render(combo_id(COMBOS[0])), "ServiceMonitor")
    monitor_values = {"enabled": True, "labels": {"release": "kps"}}
    values = write_values(tmp_path, {"metrics": {"port": 9555, "serviceMonitor": monitor_values}})
    done = helm("template", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values))
    assert done.returncode == 0, done.stderr
    docs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    [monitor] = by_kind(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    spec = monitor["spec"]
    ports = {e["port"]: e for e in spec["endpoints"]}
    assert {e["path"] for e in ports.values()} == {"/metrics"}
    assert ports["http"]["authorization"]["credentials"] == {
        "name": f"{FULLNAME}-hub-token",
        "key": "token",
    }
    wanted, among = spec["selector"]["matchLabels"], spec["selector"]["matchExpressions"][0]
    selected = [
        d
        for d in by_kind(docs, "Service")
        if all(d["metadata"]["labels"].get(k) == v for k, v in wanted.items())
        and d["metadata"]["labels"]["app.kubernetes.io/component"] in among["values"]
    ]
    by_port = {p["name"]: d["metadata"]["name"] for d in selected for p in d["spec"]["ports"]}
    assert set(by_port) == {"http", "metrics"}
    components = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in selected}
    assert components == {"hub", "agent", "streams", "writer"}
    for workload in workloads(docs):
        if workload["metadata"]["labels"]["app.kubernetes.io/component"] == "hub":
            continue
        [container] = workload["spec"]["template"]["spec"]["containers"]
        assert env_of(container)["WIRETIDE_METRICS_PORT"]["value"] == "9555"
        assert {"name": "metrics", "containerPort": 9555, "protocol": "TCP"} in container["ports"]
    for service in selected:
        if service["metadata"]["name"].endswith("-metrics"):
            assert service["spec"]["ports"][0]["targetPort"] == "metrics"
