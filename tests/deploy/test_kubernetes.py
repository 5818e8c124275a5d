"""The Kubernetes manifests (deploy/k8s), checked offline against the code.

Each overlay is rendered by a small kustomize written here (``kustomize``
below), then:

- every core object is validated against the Kubernetes API schemas bundled
  with ``kubernetes-validate`` (strict: no unknown fields), for the oldest
  version the manifests support (1.30: the preStop ``sleep`` action) and the
  newest bundled; the Prometheus Operator's ServiceMonitor and PodMonitor,
  which have no bundled schema, are checked by hand;
- the manifests are checked against the code: probe paths are routes of
  ``interlock.api.table`` on the port the Service targets, the containers'
  arguments parse with the real CLI parser, every env var is one the code or
  the config reads, the config parses with the project's loader, the HPA's
  custom metric is a gauge the gateway exports, the grace period outlasts
  the drain;
- the rules for every pod: security context, resources, labels and
  selectors, network policy, volumes.

Every check is a function that raises AssertionError; ``test_check_can_fail``
breaks the rendered manifests one way per check and expects the check to
notice, so no check passes vacuously.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import kubernetes_validate
import pytest
import yaml

from interlock.api.table import exact_routes
from interlock.cli.app import command as interlock_command
from interlock.config import ConfigError, GatewayConfig, parse_config
from interlock.config.loading import ENV_PREFIX

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SRC = ROOT / "src" / "interlock"
OVERLAYS = ("dev", "prod")
SECRET = "interlock-secrets"
CONFIG_PATH = "/etc/interlock/interlock.yaml"
CONFIG_KEY = "interlock.yaml"
# The oldest Kubernetes the manifests support (the preStop sleep action) and
# the newest schema bundled.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Service",
    "ServiceAccount",
}
MONITOR_KINDS = {"ServiceMonitor", "PodMonitor"}
COMPONENTS = {"gateway": "interlock-gateway", "worker": "interlock-worker"}
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")

Obj = dict[str, Any]

# --------------------------------------------------------------------------
# A small kustomize: only what these overlays use, and it refuses the rest.
#
#   resources           files (multi-document YAML) or directories (built recursively)
#   configMapGenerator  `files:` only; the name gets a content hash suffix and the
#                       pods' configMap volumes follow the new name, as in kustomize
#   patches             strategic-merge patches of a whole object, found by kind and
#                       metadata.name (`path:` or inline `patch:`): dicts merge deeply,
#                       lists are replaced except those kustomize merges by `name`
#                       (containers, volumes, env), null deletes a key
#   namespace           set on every object
#   images              newName / newTag / digest on matching container images
# --------------------------------------------------------------------------

_KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "patches",
    "namespace",
    "images",
}
_MERGED_BY_NAME = {"containers", "initContainers", "volumes", "env"}


def _documents(path: Path) -> list[Obj]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def kustomize(directory: Path) -> list[Obj]:
    spec = _documents(directory / "kustomization.yaml")[0]
    unknown = set(spec) - _KUSTOMIZATION_KEYS
    assert not unknown, f"{directory}: the test's kustomize does not implement {sorted(unknown)}"
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        objects += kustomize(path) if path.is_dir() else _documents(path)
    for generator in spec.get("configMapGenerator", []):
        config_map = _generate_config_map(directory, generator)
        _rename_config_map(objects, generator["name"], config_map["metadata"]["name"])
        objects.append(config_map)
    for patch in spec.get("patches", []):
        _apply_patch(objects, directory, patch)
    if "namespace" in spec:
        for obj in objects:
            obj["metadata"]["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        _set_image(objects, image)
    return objects


def _generate_config_map(directory: Path, generator: Obj) -> Obj:
    assert set(generator) <= {"name", "files", "options"}, generator
    assert set(generator.get("options", {})) <= {"labels"}, generator
    data = {}
    for name in generator["files"]:
        assert "=" not in name, "key=path entries are not implemented"
        data[Path(name).name] = (directory / name).read_text(encoding="utf-8")
    digest = hashlib.sha256(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()[:10]
    metadata: Obj = {"name": f"{generator['name']}-{digest}"}
    if "labels" in generator.get("options", {}):
        metadata["labels"] = dict(generator["options"]["labels"])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def _rename_config_map(objects: list[Obj], old: str, new: str) -> None:
    for obj in objects:
        for volume in _pod_spec(obj).get("volumes", []) if obj["kind"] == "Deployment" else []:
            if volume.get("configMap", {}).get("name") == old:
                volume["configMap"]["name"] = new


def _apply_patch(objects: list[Obj], directory: Path, entry: Obj) -> None:
    assert set(entry) in ({"path"}, {"patch"}), f"only whole-object patches: {entry}"
    patch = (
        _documents(directory / entry["path"])[0]
        if "path" in entry
        else yaml.safe_load(entry["patch"])
    )
    targets = [
        i
        for i, obj in enumerate(objects)
        if obj["kind"] == patch["kind"] and obj["metadata"]["name"] == patch["metadata"]["name"]
    ]
    assert len(targets) == 1, f"{entry}: patches {len(targets)} objects"
    assert objects[targets[0]]["apiVersion"] == patch["apiVersion"], entry
    objects[targets[0]] = _merge(objects[targets[0]], patch)


def _merge(base: Any, patch: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for name, value in patch.items():
            if value is None:
                out.pop(name, None)
            else:
                out[name] = _merge(out[name], value, name) if name in out else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in _MERGED_BY_NAME:
        out_list = list(base)
        for item in patch:
            names = [existing["name"] for existing in out_list]
            if item["name"] in names:
                i = names.index(item["name"])
                out_list[i] = _merge(out_list[i], item)
            else:
                out_list.append(item)
        return out_list
    return patch


def _set_image(objects: list[Obj], image: Obj) -> None:
    assert set(image) <= {"name", "newName", "newTag", "digest"}, image
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        for container in _pod_spec(obj)["containers"]:
            name, _, _ = container["image"].partition(":")
            if name.partition("@")[0] != image["name"]:
                continue
            new = image.get("newName", image["name"])
            if "digest" in image:
                new += f"@{image['digest']}"
            elif "newTag" in image:
                new += f":{image['newTag']}"
            container["image"] = new


@functools.cache
def _render(overlay: str) -> tuple[Obj, ...]:
    return tuple(kustomize(K8S / "overlays" / overlay))


def render(overlay: str) -> list[Obj]:
    """The overlay's objects; a copy, free to change."""
    return copy.deepcopy(list(_render(overlay)))


# --------------------------------------------------------------------------
# Reading the rendered objects and the code
# --------------------------------------------------------------------------


def _pod_spec(deployment: Obj) -> Obj:
    spec: Obj = deployment["spec"]["template"]["spec"]
    return spec


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def deployment(objects: list[Obj], component: str) -> Obj:
    return one(objects, "Deployment", COMPONENTS[component])


def containers(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for dep in of_kind(objects, "Deployment"):
        for container in _pod_spec(dep)["containers"]:
            yield dep, container


def the_container(objects: list[Obj], component: str) -> Obj:
    found = _pod_spec(deployment(objects, component))["containers"]
    assert len(found) == 1, f"{component}: {len(found)} containers"
    container: Obj = found[0]
    return container


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_labels(dep: Obj) -> dict[str, str]:
    labels: dict[str, str] = dep["spec"]["template"]["metadata"]["labels"]
    return labels


def container_port(container: Obj, port: int | str) -> int:
    """A probe's or policy's port (a number or a name) as a declared containerPort."""
    for declared in container.get("ports", []):
        if port in (declared["containerPort"], declared.get("name")):
            number: int = declared["containerPort"]
            return number
    raise AssertionError(f"{container['name']}: no container port {port!r}")


def config_map(objects: list[Obj]) -> Obj:
    found = [cm for cm in of_kind(objects, "ConfigMap") if CONFIG_KEY in cm.get("data", {})]
    assert len(found) == 1, f"{len(found)} ConfigMaps hold {CONFIG_KEY}"
    return found[0]


def raw_config(objects: list[Obj]) -> Obj:
    raw: Obj = yaml.safe_load(config_map(objects)["data"][CONFIG_KEY])
    return raw


def config_env_names(node: Any) -> set[str]:
    """The ``os.environ/NAME`` names anywhere in the config."""
    if isinstance(node, dict):
        return set().union(*(config_env_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(config_env_names(v) for v in node))
    if isinstance(node, str) and node.startswith(ENV_PREFIX):
        return {node[len(ENV_PREFIX) :]}
    return set()


def _placeholder(name: str) -> str:
    if "REDIS" in name:
        return "redis://redis:6379/0"
    if "DATABASE" in name or "POSTGRES" in name:
        return "postgresql+asyncpg://interlock:secret@postgres:5432/interlock"
    return f"placeholder-{name.lower()}"


def load_config(objects: list[Obj]) -> GatewayConfig:
    """The ConfigMap's file through the project's own loader, every
    ``os.environ/`` name it uses supplied (and nothing else)."""
    raw = raw_config(objects)
    env = {name: _placeholder(name) for name in config_env_names(raw)}
    try:
        return parse_config(raw, f"ConfigMap {CONFIG_KEY}", env)
    except ConfigError as exc:
        raise AssertionError(f"the project's loader refuses the config: {exc}") from None


@functools.cache
def code_env_names() -> frozenset[str]:
    """The INTERLOCK_* variables the code names (cli/serve.py's INTERLOCK_HOST and
    friends, the store's INTERLOCK_DATA_DIR, ...)."""
    pattern = re.compile(r"""["'](INTERLOCK_[A-Z0-9_]+)["']""")
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        names.update(pattern.findall(path.read_text(encoding="utf-8")))
    return frozenset(names)


@functools.cache
def exported_gauges() -> frozenset[str]:
    text = (SRC / "telemetry" / "metrics.py").read_text(encoding="utf-8")
    return frozenset(re.findall(r"""Gauge\(\s*["']([a-zA-Z_:][a-zA-Z0-9_:]*)["']""", text))


def in_flight_gauge() -> str:
    names = [name for name in exported_gauges() if "in_flight" in name]
    assert len(names) == 1, f"the in-flight gauge in telemetry/metrics.py: {names}"
    return names[0]


_UNITS = {"": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2.0**10, "Mi": 2.0**20}
_UNITS |= {"Gi": 2.0**30, "Ti": 2.0**40}


def quantity(value: int | float | str) -> float:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)", str(value))
    assert match and match[2] in _UNITS, f"not a quantity: {value!r}"
    return float(match[1]) * _UNITS[match[2]]


def parse_cli(container: Obj) -> Any:
    """The container's arguments through ``interlock``'s own parser, with the
    container's literal env (the parser's defaults read it) and nothing else."""
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    assert container.get("command") == ["interlock"], f"{container['name']}: command"
    name, *args = container.get("args", []) or [""]
    group = interlock_command()
    with mock.patch.dict(os.environ, env, clear=True):
        sub = group.get_command(group.make_context("interlock", [name]), name)
        assert sub is not None, f"{container['name']}: no `interlock {name}` command"
        try:  # the envvar defaults are read while parsing, under the patched env
            params = sub.make_context(name, list(args)).params
        except Exception as exc:  # a usage error
            raise AssertionError(
                f"{container['name']}: `interlock` rejects its args: {exc}"
            ) from None
    return SimpleNamespace(command=name, **params)


# --------------------------------------------------------------------------
# The checks: each raises AssertionError
# --------------------------------------------------------------------------


def check_schemas(objects: list[Obj]) -> None:
    kinds = {obj["kind"] for obj in objects}
    assert kinds <= CORE_KINDS | MONITOR_KINDS, f"unexpected kinds: {kinds - CORE_KINDS}"
    assert CORE_KINDS <= kinds, f"missing kinds: {CORE_KINDS - kinds}"
    for obj in objects:
        if obj["kind"] in MONITOR_KINDS:
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.path)
                raise AssertionError(
                    f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version}): "
                    f"{where}: {exc.message}"
                ) from None


def check_monitors(objects: list[Obj]) -> None:
    service = one(objects, "Service", COMPONENTS["gateway"])
    monitor = one(objects, "ServiceMonitor", COMPONENTS["gateway"])
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert "namespaceSelector" not in spec, "the monitors watch their own namespace"
    assert monitor["metadata"].get("namespace") == service["metadata"].get("namespace")
    assert selects(spec["selector"]["matchLabels"], service["metadata"]["labels"]), (
        "the ServiceMonitor does not select the gateway's Service"
    )
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    assert spec["endpoints"], "ServiceMonitor: no endpoints"
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] in service_ports, f"ServiceMonitor port {endpoint['port']!r}"
        assert endpoint["path"] == "/metrics" and "GET" in exact_routes["/metrics"]

    worker = deployment(objects, "worker")
    pod_monitor = one(objects, "PodMonitor", COMPONENTS["worker"])
    assert pod_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = pod_monitor["spec"]
    assert "namespaceSelector" not in spec
    assert pod_monitor["metadata"].get("namespace") == worker["metadata"].get("namespace")
    assert selects(spec["selector"]["matchLabels"], pod_labels(worker)), (
        "the PodMonitor does not select the worker pods"
    )
    worker_ports = {p.get("name") for p in the_container(objects, "worker")["ports"]}
    assert spec["podMetricsEndpoints"], "PodMonitor: no endpoints"
    for endpoint in spec["podMetricsEndpoints"]:
        assert endpoint["port"] in worker_ports, f"PodMonitor port {endpoint['port']!r}"
        assert endpoint["path"] == "/metrics"


def service_target_port(objects: list[Obj]) -> int:
    """The gateway container port that the Service sends traffic to."""
    service = one(objects, "Service", COMPONENTS["gateway"])
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http" and port["port"] == 8080, port
    return container_port(the_container(objects, "gateway"), port["targetPort"])


def check_probes(objects: list[Obj]) -> None:
    for dep, container in containers(objects):
        for kind in PROBES:
            probe = container.get(kind)
            assert probe, f"{dep['metadata']['name']}: no {kind}"
            get = probe["httpGet"]
            assert "GET" in exact_routes.get(get["path"], {}), f"{kind}: no route {get['path']}"
            container_port(container, get["port"])
    gateway = the_container(objects, "gateway")
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert gateway["startupProbe"]["httpGet"]["path"] == "/health/live"
    # Readiness is the probe that turns 503 while draining.
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    target = service_target_port(objects)
    for kind in PROBES:
        port = container_port(gateway, gateway[kind]["httpGet"]["port"])
        assert port == target, f"gateway {kind} on {port}, the Service targets {target}"
    worker = the_container(objects, "worker")
    metrics_port = parse_cli(worker).metrics_port
    for kind in PROBES:
        get = worker[kind]["httpGet"]
        assert get["path"] == "/metrics", f"worker {kind}: only /metrics is served"
        port = container_port(worker, get["port"])
        assert port == metrics_port, f"worker {kind} on {port}, metrics on {metrics_port}"


def check_commands(objects: list[Obj]) -> None:
    gateway = parse_cli(the_container(objects, "gateway"))
    assert gateway.command == "serve"
    assert gateway.config == CONFIG_PATH
    assert gateway.host == "0.0.0.0", "the gateway must listen on the pod's address"
    assert gateway.port == service_target_port(objects)
    worker = parse_cli(the_container(objects, "worker"))
    assert worker.command == "worker"
    assert worker.config == CONFIG_PATH
    assert worker.metrics_host == "0.0.0.0"
    assert worker.metrics_port == container_port(the_container(objects, "worker"), "metrics")
    for args in (gateway, worker):
        assert isinstance(logging.getLevelName(args.log_level.upper()), int), args.log_level


def check_env(objects: list[Obj]) -> None:
    needed = config_env_names(raw_config(objects))
    allowed = code_env_names() | needed
    for dep, container in containers(objects):
        where = dep["metadata"]["name"]
        assert "envFrom" not in container, f"{where}: name every variable (no envFrom)"
        env = container.get("env", [])
        names = [e["name"] for e in env]
        assert len(names) == len(set(names)), f"{where}: duplicate env"
        for e in env:
            assert e["name"] in allowed, f"{where}: neither the code nor the config reads {e}"
            if "valueFrom" in e:
                ref = e["valueFrom"].get("secretKeyRef")
                assert ref and ref["name"] == SECRET, f"{where}: {e['name']} not from {SECRET}"
            if e["name"] in needed:
                assert "valueFrom" in e, f"{where}: {e['name']} is a secret: use secretKeyRef"
        missing = needed - set(names)
        assert not missing, f"{where}: the config needs {sorted(missing)}"


def check_config(objects: list[Obj]) -> None:
    config = load_config(objects)
    # Replicas share state: Redis for limits and the queue, PostgreSQL for records.
    assert config.state.backend == "redis"
    assert config.store.url is not None and config.store.url.startswith("postgresql")
    # The worker Deployment does the batch work.
    assert config.batch.enabled and config.batch.worker.in_process is False
    name = config_map(objects)["metadata"]["name"]
    for dep, container in containers(objects):
        mounts = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/interlock"]
        assert len(mounts) == 1 and mounts[0].get("readOnly") is True, dep["metadata"]["name"]
        volumes = {v["name"]: v for v in _pod_spec(dep)["volumes"]}
        source = volumes[mounts[0]["name"]].get("configMap", {})
        assert source.get("name") == name, f"{dep['metadata']['name']}: not the ConfigMap"
        items = {item["key"]: item["path"] for item in source.get("items", [])}
        assert items.get(CONFIG_KEY, CONFIG_KEY) == Path(CONFIG_PATH).name


def check_writable_dirs(objects: list[Obj]) -> None:
    for dep, container in containers(objects):
        volumes = {v["name"]: v for v in _pod_spec(dep)["volumes"]}
        empty_dirs = {
            m["mountPath"]
            for m in container["volumeMounts"]
            if "emptyDir" in volumes[m["name"]] and not m.get("readOnly")
        }
        env = {e["name"]: e.get("value") for e in container["env"]}
        data_dir = env.get("INTERLOCK_DATA_DIR")
        for path in ("/tmp", data_dir):
            assert path in empty_dirs, f"{dep['metadata']['name']}: {path} is not writable"


def check_grace(objects: list[Obj]) -> None:
    config = load_config(objects)
    gateway = _pod_spec(deployment(objects, "gateway"))
    sleep = the_container(objects, "gateway")["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < sleep <= 15, "a short preStop sleep, for the endpoints to update"
    grace = gateway["terminationGracePeriodSeconds"]
    assert grace > sleep + config.server.drain_timeout_s, (
        f"gateway: {grace} s grace < {sleep} s preStop + {config.server.drain_timeout_s} s drain"
    )
    worker = _pod_spec(deployment(objects, "worker"))
    assert worker["terminationGracePeriodSeconds"] > config.batch.worker.drain_s


def check_hpa(objects: list[Obj]) -> None:
    config = load_config(objects)
    (hpa,) = of_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    target = spec["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", COMPONENTS["gateway"])
    assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
    by_type = {m["type"]: m for m in spec["metrics"]}
    assert set(by_type) == {"Resource", "Pods"}, by_type
    cpu = by_type["Resource"]["resource"]
    assert cpu["name"] == "cpu" and cpu["target"]["type"] == "Utilization"
    pods = by_type["Pods"]["pods"]
    name = pods["metric"]["name"]
    assert name in exported_gauges(), f"the gateway exports no gauge {name!r}"
    assert name == in_flight_gauge()
    assert pods["target"]["type"] == "AverageValue"
    # Scale out before load shedding starts.
    assert quantity(pods["target"]["averageValue"]) < config.limits.max_in_flight
    assert "replicas" not in deployment(objects, "gateway")["spec"], "the HPA owns replicas"


def check_security(objects: list[Obj]) -> None:
    for dep in of_kind(objects, "Deployment"):
        where = dep["metadata"]["name"]
        pod = _pod_spec(dep)
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] == context["runAsGroup"] == context["fsGroup"] == 10001
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["automountServiceAccountToken"] is False, where
        # Service links would set INTERLOCK_GATEWAY_PORT=tcp://... and the like.
        assert pod["enableServiceLinks"] is False, where
        assert (
            pod["serviceAccountName"]
            == one(objects, "ServiceAccount", "interlock")["metadata"]["name"]
        )
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert "privileged" not in sc and sc.get("runAsUser", 10001) == 10001, where


def check_resources(objects: list[Obj]) -> None:
    for dep, container in containers(objects):
        resources = container.get("resources", {})
        for name in ("cpu", "memory"):
            assert name in resources.get("requests", {}), f"{dep['metadata']['name']}: requests"
            assert name in resources.get("limits", {}), f"{dep['metadata']['name']}: limits"
            request = quantity(resources["requests"][name])
            limit = quantity(resources["limits"][name])
            assert 0 < request <= limit, f"{dep['metadata']['name']}: {name} {resources}"


def check_labels(objects: list[Obj]) -> None:
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "interlock", obj["metadata"]
        assert labels.get("app.kubernetes.io/part-of") == "interlock", obj["metadata"]
    deployments = {c: deployment(objects, c) for c in COMPONENTS}
    for component, dep in deployments.items():
        assert dep["metadata"]["labels"]["app.kubernetes.io/component"] == component
        labels = pod_labels(dep)
        assert labels["app.kubernetes.io/component"] == component
        assert labels["app.kubernetes.io/part-of"] == "interlock"
        assert selects(dep["spec"]["selector"]["matchLabels"], labels)
        for constraint in _pod_spec(dep).get("topologySpreadConstraints", []):
            assert (
                constraint["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
            ), f"{component}: the spread counts other pods"

    def selected(selector: dict[str, str], what: str) -> str:
        """The one component whose pods ``selector`` picks."""
        matched = [c for c, dep in deployments.items() if selects(selector, pod_labels(dep))]
        assert len(matched) == 1, f"{what} selects {matched}"
        return matched[0]

    def component(obj: Obj) -> str:
        value: str = obj["metadata"]["labels"].get("app.kubernetes.io/component", "")
        return value

    for kind, selector in (
        ("Service", lambda o: o["spec"]["selector"]),
        ("PodDisruptionBudget", lambda o: o["spec"]["selector"]["matchLabels"]),
        ("NetworkPolicy", lambda o: o["spec"]["podSelector"]["matchLabels"]),
        ("PodMonitor", lambda o: o["spec"]["selector"]["matchLabels"]),
    ):
        for obj in of_kind(objects, kind):
            what = f"{kind}/{obj['metadata']['name']}"
            assert selected(selector(obj), what) == component(obj), what


def check_network_policy(objects: list[Obj]) -> None:
    policies = of_kind(objects, "NetworkPolicy")
    for component, name in COMPONENTS.items():
        dep = deployment(objects, component)
        container = the_container(objects, component)
        mine = [
            p for p in policies if selects(p["spec"]["podSelector"]["matchLabels"], pod_labels(dep))
        ]
        assert len(mine) == 1, f"{name}: {len(mine)} policies"
        spec = mine[0]["spec"]
        assert set(spec["policyTypes"]) == {"Ingress", "Egress"}, name
        egress = {
            (port["port"], port.get("protocol", "TCP"))
            for rule in spec["egress"]
            for port in rule["ports"]
        }
        for needed in ((53, "UDP"), (53, "TCP"), (6379, "TCP"), (5432, "TCP"), (443, "TCP")):
            assert needed in egress, f"{name}: no egress to {needed}"
        ingress = [
            (rule, container_port(container, port["port"]))
            for rule in spec["ingress"]
            for port in rule["ports"]
        ]
        assert {port for _, port in ingress} == {p["containerPort"] for p in container["ports"]}
        prometheus = [
            rule
            for rule, _ in ingress
            for peer in rule["from"]
            if peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            == "prometheus"
        ]
        assert prometheus, f"{name}: Prometheus cannot scrape it"
    gateway = next(p for p in policies if p["metadata"]["name"] == COMPONENTS["gateway"])
    peers = [peer for rule in gateway["spec"]["ingress"] for peer in rule["from"]]
    assert {"podSelector": {}} in peers, "the gateway: open to its own namespace"


CHECKS: list[Callable[[list[Obj]], None]] = [
    check_schemas,
    check_monitors,
    check_probes,
    check_commands,
    check_env,
    check_config,
    check_writable_dirs,
    check_grace,
    check_hpa,
    check_security,
    check_resources,
    check_labels,
    check_network_policy,
]


# --------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_overlay(overlay: str, check: Callable[[list[Obj]], None]) -> None:
    check(render(overlay))


def test_dev_overlay() -> None:
    objects = render("dev")
    hpa = one(objects, "HorizontalPodAutoscaler", COMPONENTS["gateway"])["spec"]
    assert hpa["minReplicas"] == 1
    assert deployment(objects, "worker")["spec"]["replicas"] == 1
    prod = render("prod")
    for component in COMPONENTS:
        small = the_container(objects, component)["resources"]
        large = the_container(prod, component)["resources"]
        for tier in ("requests", "limits"):
            for name in ("cpu", "memory"):
                assert quantity(small[tier][name]) <= quantity(large[tier][name])


def test_prod_overlay() -> None:
    objects = render("prod")
    hpa = one(objects, "HorizontalPodAutoscaler", COMPONENTS["gateway"])["spec"]
    assert hpa["minReplicas"] >= 3 and hpa["maxReplicas"] >= 20
    assert deployment(objects, "worker")["spec"]["replicas"] >= 2
    pdb = one(objects, "PodDisruptionBudget", COMPONENTS["gateway"])["spec"]
    assert pdb.get("minAvailable", 0) >= 2 or pdb.get("maxUnavailable") == 1, pdb
    spread = _pod_spec(deployment(objects, "gateway")).get("topologySpreadConstraints", [])
    by_node = [c for c in spread if c["topologyKey"] == "kubernetes.io/hostname"]
    assert by_node and by_node[0]["whenUnsatisfiable"] == "DoNotSchedule", spread


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_and_namespace(overlay: str) -> None:
    objects = render(overlay)
    namespaces = {obj["metadata"].get("namespace") for obj in objects}
    assert len(namespaces) == 1 and None not in namespaces, namespaces
    for _, container in containers(objects):
        name, _, tag = container["image"].rpartition(":")
        assert name.endswith("interlock") and tag and tag != "latest", container["image"]
        assert container["imagePullPolicy"] == "IfNotPresent"


def test_overlays_differ() -> None:
    namespaces = {render(o)[0]["metadata"]["namespace"] for o in OVERLAYS}
    assert len(namespaces) == len(OVERLAYS), "dev and prod share a namespace"


def test_readme_names_the_secret_keys() -> None:
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    assert SECRET in readme
    for overlay in OVERLAYS:
        for _, container in containers(render(overlay)):
            for e in container["env"]:
                if "valueFrom" in e:
                    key = e["valueFrom"]["secretKeyRef"]["key"]
                    assert key in readme, f"README.md does not name the Secret's key {key}"
    assert "kubectl apply -k deploy/k8s/overlays/prod" in readme


def test_loader_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("commonLabels: {a: b}\nresources: []\n")
    with pytest.raises(AssertionError, match="commonLabels"):
        kustomize(tmp_path)


# One way to break the manifests per check: the check must notice.


def _gateway(o: list[Obj]) -> Obj:
    return the_container(o, "gateway")


def _worker(o: list[Obj]) -> Obj:
    return the_container(o, "worker")


def _env(container: Obj, name: str) -> Obj:
    found: Obj = next(e for e in container["env"] if e["name"] == name)
    return found


def _make_literal(container: Obj, name: str) -> None:
    entry = _env(container, name)
    entry.pop("valueFrom")
    entry["value"] = "sk-not-a-secret"


def _set_config(o: list[Obj], change: Callable[[Obj], None]) -> None:
    raw = raw_config(o)
    change(raw)
    config_map(o)["data"][CONFIG_KEY] = yaml.safe_dump(raw)


BREAKAGES: list[tuple[str, Callable[[list[Obj]], None], Callable[[list[Obj]], None]]] = [
    (
        "unknown-field",
        check_schemas,
        lambda o: one(o, "Service", COMPONENTS["gateway"])["spec"].update(clusterIp="None"),
    ),
    (
        "bad-port-type",
        check_schemas,
        lambda o: _gateway(o)["ports"][0].update(containerPort="8080"),
    ),
    (
        "monitor-port",
        check_monitors,
        lambda o: one(o, "ServiceMonitor", COMPONENTS["gateway"])["spec"]["endpoints"][0].update(
            port="web"
        ),
    ),
    (
        "pod-monitor-selector",
        check_monitors,
        lambda o: one(o, "PodMonitor", COMPONENTS["worker"])["spec"]["selector"][
            "matchLabels"
        ].update({"app.kubernetes.io/component": "gateway"}),
    ),
    (
        "probe-path",
        check_probes,
        lambda o: _gateway(o)["readinessProbe"]["httpGet"].update(path="/healthz"),
    ),
    (
        "probe-port",
        check_probes,
        lambda o: (
            _gateway(o)["ports"].append({"name": "admin", "containerPort": 8081})
            or _gateway(o)["livenessProbe"]["httpGet"].update(port="admin")
        ),
    ),
    (
        "worker-probe-port",
        check_probes,
        lambda o: _env(_worker(o), "INTERLOCK_METRICS_PORT").update(value="9465"),
    ),
    (
        "config-path",
        check_commands,
        lambda o: _gateway(o).update(args=["serve", "--config", "/etc/interlock/other.yaml"]),
    ),
    ("unknown-flag", check_commands, lambda o: _worker(o)["args"].append("--workers=4")),
    (
        "loopback",
        check_commands,
        lambda o: _env(_gateway(o), "INTERLOCK_HOST").update(value="127.0.0.1"),
    ),
    (
        "made-up-env",
        check_env,
        lambda o: _gateway(o)["env"].append({"name": "INTERLOCK_TURBO", "value": "1"}),
    ),
    (
        "literal-secret",
        check_env,
        lambda o: (
            _env(_worker(o), "INTERLOCK_ADMIN_KEY").update(value="sk-admin", valueFrom=None)
            or _env(_worker(o), "INTERLOCK_ADMIN_KEY").pop("valueFrom")
        ),
    ),
    (
        "other-secret",
        check_env,
        lambda o: _env(_gateway(o), "INTERLOCK_REDIS_URL")["valueFrom"]["secretKeyRef"].update(
            name="redis"
        ),
    ),
    (
        "missing-secret",
        check_env,
        lambda o: _worker(o).update(
            env=[e for e in _worker(o)["env"] if e["name"] != "INTERLOCK_DATABASE_URL"]
        ),
    ),
    (
        "config-invalid",
        check_config,
        lambda o: _set_config(o, lambda raw: raw["server"].update(drain_timeout=30)),
    ),
    (
        "config-in-process",
        check_config,
        lambda o: _set_config(o, lambda raw: raw["batch"]["worker"].update(in_process=True)),
    ),
    (
        "config-writable",
        check_config,
        lambda o: _gateway(o)["volumeMounts"][0].update(readOnly=False),
    ),
    (
        "no-tmp",
        check_writable_dirs,
        lambda o: _worker(o).update(
            volumeMounts=[m for m in _worker(o)["volumeMounts"] if m["mountPath"] != "/tmp"]
        ),
    ),
    (
        "short-grace",
        check_grace,
        lambda o: _pod_spec(deployment(o, "gateway")).update(terminationGracePeriodSeconds=30),
    ),
    (
        "longer-drain",
        check_grace,
        lambda o: _set_config(o, lambda raw: raw["server"].update(drain_timeout_s=60)),
    ),
    (
        "metric-name",
        check_hpa,
        lambda o: of_kind(o, "HorizontalPodAutoscaler")[0]["spec"]["metrics"][1]["pods"][
            "metric"
        ].update(name="interlock_inflight_requests"),
    ),
    (
        "replicas",
        check_hpa,
        lambda o: deployment(o, "gateway")["spec"].update(replicas=3),
    ),
    (
        "writable-root",
        check_security,
        lambda o: _worker(o)["securityContext"].update(readOnlyRootFilesystem=False),
    ),
    (
        "root",
        check_security,
        lambda o: _pod_spec(deployment(o, "gateway"))["securityContext"].update(runAsUser=0),
    ),
    (
        "capabilities",
        check_security,
        lambda o: _gateway(o)["securityContext"].update(capabilities={"drop": ["NET_RAW"]}),
    ),
    ("no-limits", check_resources, lambda o: _worker(o)["resources"].pop("limits")),
    (
        "request-over-limit",
        check_resources,
        lambda o: _gateway(o)["resources"]["requests"].update(memory="2Gi"),
    ),
    (
        "service-selector",
        check_labels,
        lambda o: one(o, "Service", COMPONENTS["gateway"])["spec"]["selector"].update(
            {"app.kubernetes.io/component": "worker"}
        ),
    ),
    (
        "part-of",
        check_labels,
        lambda o: one(o, "ServiceAccount", "interlock")["metadata"]["labels"].pop(
            "app.kubernetes.io/part-of"
        ),
    ),
    (
        "no-postgres-egress",
        check_network_policy,
        lambda o: one(o, "NetworkPolicy", COMPONENTS["worker"])["spec"]["egress"].pop(2),
    ),
    (
        "no-prometheus",
        check_network_policy,
        lambda o: one(o, "NetworkPolicy", COMPONENTS["worker"])["spec"]["ingress"][0][
            "from"
        ].clear(),
    ),
]


def test_every_check_has_a_breakage() -> None:
    assert {check for _, check, _ in BREAKAGES} == set(CHECKS)


@pytest.mark.parametrize(
    ("check", "breakage"),
    [pytest.param(check, breakage, id=name) for name, check, breakage in BREAKAGES],
)
def test_check_can_fail(
    check: Callable[[list[Obj]], None], breakage: Callable[[list[Obj]], None]
) -> None:
    objects = render("prod")
    check(copy.deepcopy(objects))  # passes as rendered ...
    breakage(objects)
    with pytest.raises(AssertionError):  # ... and not once broken
        check(objects)
