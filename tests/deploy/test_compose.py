"""deploy/compose/ is a valid Compose stack whose parts point at each other:
the files it mounts exist, nginx balances exactly the gateways, Prometheus
scrapes every Interlock process, traces reach the collector, and the config
the gateways load parses with the gateway's own loader.

Offline and static: there is no Docker daemon here, and a wrong port or a
missing mount would otherwise only show up as an empty Grafana panel later.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from jsonschema import Draft202012Validator
from sqlalchemy.engine import make_url

from interlock.api.table import exact_routes
from interlock.config import ENV_PREFIX, load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
GATEWAYS = ("gateway-1", "gateway-2")
INTERLOCK = (*GATEWAYS, "worker")
STACK = {
    *INTERLOCK,
    *("nginx", "redis", "postgres", "prometheus", "grafana", "otel-collector", "jaeger"),
}
CONFIG_PATH = "/etc/interlock/interlock.yaml"
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
# ${NAME}, ${NAME:?message}, ${NAME:-default} ...
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?+])([^}]*))?\}")
LOOPBACK_URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/[\w/.-]*)")
Service = dict[str, Any]


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@cache
def _compose() -> dict[str, Any]:
    return _yaml(COMPOSE_DIR / "docker-compose.yml")


def _service(name: str) -> Service:
    return _compose()["services"][name]


def _mounts(service: Service) -> dict[str, str]:
    """Container path -> source, for the short ``source:target[:mode]`` syntax
    and the long one."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source", "")
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def _bind_source(service: str, target: str) -> Path:
    """The host file mounted at ``target`` in ``service``."""
    source = _mounts(_service(service)).get(target)
    assert source and source.startswith("."), f"{service}: nothing bind-mounted at {target}"
    return (COMPOSE_DIR / source).resolve()


def _interpolate(value: str) -> str:
    """Compose's ${...} with a stand-in for each variable (URL-safe)."""

    def one(match: re.Match[str]) -> str:
        name, op, default = match.groups()
        return default if op in ("-", ":-") else f"test-{name.lower().replace('_', '-')}-01234"

    return VARIABLE.sub(one, value)


def _environment(service: Service) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _env_references(node: Any) -> list[str]:
    """The NAMEs of every ``os.environ/NAME`` value in parsed YAML."""
    if isinstance(node, dict):
        return [name for value in node.values() for name in _env_references(value)]
    if isinstance(node, list):
        return [name for value in node for name in _env_references(value)]
    if isinstance(node, str) and node.startswith(ENV_PREFIX):
        return [node.removeprefix(ENV_PREFIX)]
    return []


def _depends_on(service: Service) -> dict[str, dict[str, Any]]:
    """Both forms: a list of names, or name -> {condition: ...}."""
    rules = service.get("depends_on") or {}
    return {name: {} for name in rules} if isinstance(rules, list) else rules


def _flag(service: Service, flag: str) -> str | None:
    command = service.get("command", [])
    return command[command.index(flag) + 1] if flag in command else None


def _gateway_port(name: str) -> str:
    """--port, else INTERLOCK_PORT from compose, else the image's default."""
    service = _service(name)
    image_default = DockerfileParser(path=str(ROOT / "deploy" / "Dockerfile")).envs
    return (
        _flag(service, "--port")
        or _environment(service).get("INTERLOCK_PORT")
        or image_default.get("INTERLOCK_PORT", "8080")
    )


def _metrics_port(name: str) -> str:
    return _flag(_service(name), "--metrics-port") or "9464"


def test_matches_the_compose_specification() -> None:
    """The JSON schema Compose itself validates against, as check-jsonschema
    vendors it (no network)."""
    spec = files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    validator = Draft202012Validator(json.loads(spec.read_text(encoding="utf-8")))
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(_compose())]
    assert not errors, "\n".join(errors)


def test_services_are_the_stack() -> None:
    """Exactly these: a service added or dropped must update these tests too."""
    assert set(_compose()["services"]) == STACK


def test_referenced_files_exist() -> None:
    """Bind mounts, build contexts, Dockerfiles and env_files, relative to
    deploy/compose/; named volumes are declared."""
    declared = set(_compose().get("volumes") or {})
    for name, service in _compose()["services"].items():
        for source in _mounts(service).values():
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
        if "build" in service:
            context = COMPOSE_DIR / service["build"]["context"]
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
        for env_file in service.get("env_file", []):
            assert (COMPOSE_DIR / env_file).is_file(), f"{name}: {env_file} does not exist"
    for section in ("configs", "secrets"):
        for name, item in (_compose().get(section) or {}).items():
            if "file" in item:
                assert (COMPOSE_DIR / item["file"]).is_file(), f"{section}.{name}"


def test_interlock_services_share_image_and_config() -> None:
    """Both gateways and the worker run the image built from deploy/Dockerfile,
    with the same config, read-only, on a read-only root with a writable
    /tmp and data volume."""
    reference = _service("gateway-1")
    assert (COMPOSE_DIR / reference["build"]["context"]).resolve() == ROOT
    assert reference["build"]["dockerfile"] == "deploy/Dockerfile"
    config = _bind_source("gateway-1", CONFIG_PATH)
    for name in INTERLOCK:
        service = _service(name)
        assert (service["image"], service["build"]) == (reference["image"], reference["build"])
        assert _bind_source(name, CONFIG_PATH) == config, name
        assert any(v.endswith(f":{CONFIG_PATH}:ro") for v in service["volumes"]), name
        assert _flag(service, "--config") == CONFIG_PATH, name
        assert service["read_only"] is True and "/tmp" in service["tmpfs"], name
        assert not _mounts(service)["/var/lib/interlock"].startswith("."), name
    assert [_service(n)["command"][0] for n in INTERLOCK] == ["serve", "serve", "worker"]


def test_secrets_come_from_the_environment() -> None:
    """A variable named like a secret, or a URL's password, is a required
    ${VAR:?...} reference: never a literal in the file."""
    for name, service in _compose()["services"].items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), f"{name}: {key} is literal"
            password = re.search(r"://[^:/@]+:([^@]+)@", value)
            if password:
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", password[1]), f"{name}: {key}"


def test_config_parses_with_the_services_environment() -> None:
    """The mounted interlock.yaml loads with Interlock's own loader, given just
    what compose puts in each container's environment; the stores it names
    are services of this stack."""
    path = _bind_source("gateway-1", CONFIG_PATH)
    names = set(_env_references(_yaml(path)))
    for service in INTERLOCK:
        env = {k: _interpolate(v) for k, v in _environment(_service(service)).items()}
        assert names <= set(env), f"{service} lacks {names - set(env)}"
        config = load_config(path, env)
    assert config.state.backend == "redis" and config.store.url is not None
    store = make_url(config.store.url)
    assert store.drivername == "postgresql+asyncpg" and store.host in STACK, store
    assert urlsplit(config.state.url or "").hostname in STACK, config.state.url
    assert config.batch.worker.in_process is False, "the worker service runs the batches"


def test_traces_reach_jaeger_through_the_collector() -> None:
    """The config's OTLP/HTTP endpoint is the collector's receiver, and the
    collector exports the traces to a service of this stack (Jaeger)."""
    tracing = _yaml(_bind_source("gateway-1", CONFIG_PATH))["telemetry"]["tracing"]
    endpoint = urlsplit(tracing["otlp_endpoint"])
    assert tracing["enabled"] is True and endpoint.hostname == "otel-collector"
    collector = _yaml(_bind_source("otel-collector", "/etc/otelcol/config.yaml"))
    receiver = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert receiver.rsplit(":", 1)[1] == str(endpoint.port), (receiver, endpoint)
    exporters = collector["service"]["pipelines"]["traces"]["exporters"]
    hosts = {urlsplit("//" + collector["exporters"][e]["endpoint"]).hostname for e in exporters}
    assert hosts == {"jaeger"}


def test_healthchecks_probe_real_endpoints() -> None:
    """Gateways probe a gateway route on their port; the worker (no HTTP API)
    its metrics port; and every service_healthy dependency has a check."""
    for name in GATEWAYS:
        (port, path) = LOOPBACK_URL.findall(" ".join(_service(name)["healthcheck"]["test"]))[0]
        assert port == _gateway_port(name) and "GET" in exact_routes.get(path, {}), name
    (port, path) = LOOPBACK_URL.findall(" ".join(_service("worker")["healthcheck"]["test"]))[0]
    assert (port, path) == (_metrics_port("worker"), "/metrics")
    for name, service in _compose()["services"].items():
        for dependency, rule in _depends_on(service).items():
            if rule.get("condition") == "service_healthy":
                assert "healthcheck" in _service(dependency), f"{name} -> {dependency}"


def _nginx() -> str:
    text = _bind_source("nginx", "/etc/nginx/nginx.conf").read_text(encoding="utf-8")
    return re.sub(r"#[^\n]*", "", text)


def test_nginx_balances_exactly_the_gateways() -> None:
    """The upstream nginx proxies to names each gateway at its port, keeps
    HTTP/1.1 connections alive, does not buffer SSE, and never resends a
    POST whose body went out (no ``non_idempotent``)."""
    conf = _nginx()
    (upstream,) = set(re.findall(r"proxy_pass\s+http://([\w-]+)\s*;", conf))
    block = re.search(rf"upstream\s+{upstream}\s*\{{([^}}]*)\}}", conf)
    assert block, f"no upstream {upstream}"
    servers = re.findall(r"^\s*server\s+([\w.-]+:\d+)", block[1], re.MULTILINE)
    assert sorted(servers) == sorted(f"{g}:{_gateway_port(g)}" for g in GATEWAYS)
    assert re.search(r"\bkeepalive\s+\d+;", block[1])
    for directive in ("proxy_http_version 1.1;", 'proxy_set_header Connection "";'):
        assert directive in conf, directive
    assert re.search(r"proxy_buffering\s+off;", conf)
    assert all(int(t) >= 300 for t in re.findall(r"proxy_read_timeout\s+(\d+)s;", conf))
    (retry,) = re.findall(r"proxy_next_upstream\s+([^;]*);", conf)
    assert set(retry.split()) == {"error", "timeout", "http_502", "http_503"}
    (listen,) = re.findall(r"listen\s+(\d+);", conf)
    assert any(p.endswith(f":{listen}") for p in _service("nginx")["ports"])


def test_prometheus_scrapes_every_interlock_process() -> None:
    """Each gateway at its port and the worker at its --metrics-port, on
    /metrics, in the job alerts.yml expects; the mounted rules are the
    project's deploy/prometheus/alerts.yml."""
    prometheus = _yaml(_bind_source("prometheus", "/etc/prometheus/prometheus.yml"))
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "interlock"]
    assert job.get("metrics_path", "/metrics") == "/metrics" and "GET" in exact_routes["/metrics"]
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    expected = {f"{g}:{_gateway_port(g)}" for g in GATEWAYS} | {f"worker:{_metrics_port('worker')}"}
    assert targets == expected
    rules = {_bind_source("prometheus", path) for path in prometheus["rule_files"]}
    assert rules == {ROOT / "deploy" / "prometheus" / "alerts.yml"}


def test_grafana_provisions_prometheus_and_the_dashboard() -> None:
    """The default data source (the dashboard's DS_PROMETHEUS picks it) is
    this Prometheus, and the provider's folder holds the project's dashboard."""
    provisioning = _bind_source("grafana", "/etc/grafana/provisioning")
    (source,) = _yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert urlsplit(source["url"]).hostname == "prometheus"
    (provider,) = _yaml(provisioning / "dashboards" / "interlock.yaml")["providers"]
    folder = provider["options"]["path"].rstrip("/")
    dashboards = {
        _bind_source("grafana", t)
        for t in _mounts(_service("grafana"))
        if t.startswith(f"{folder}/")
    }
    assert dashboards == {ROOT / "deploy" / "grafana" / "interlock-dashboard.json"}


@pytest.mark.parametrize("name", sorted(STACK - set(INTERLOCK)))
def test_third_party_images_are_pinned(name: str) -> None:
    """A floating tag changes under a stack that worked yesterday."""
    image = _service(name)["image"]
    tag = image.rsplit(":", 1)[1] if ":" in image else ""
    assert re.search(r"\d", tag) and tag != "latest", f"{name}: {image} is not pinned"
