"""The Grafana dashboard and Prometheus rules in ``deploy/`` stay in step with
the metrics the gateway exports, and the alerts fire when they should.

promtool comes from ``make tools``; without it the promtool tests skip, except
on CI (``CI=true``) where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from interlock.batch.metrics import BatchMetrics
from interlock.cache import CacheStats
from interlock.telemetry.cache_metrics import CacheCollector
from interlock.telemetry.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "interlock-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"

# Series that Prometheus makes itself, not the gateway.
PROMETHEUS_SERIES = frozenset({"up"})
# Words that look like identifiers but are PromQL syntax. Functions and
# aggregations are recognised by the "(" that follows them.
PROMQL_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "atan2",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
    }
)
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
# Grafana's variables, replaced so promtool can parse the dashboard's queries.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$model": ".*",
    "$deployment": ".*",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*\w+\s*\)\s*$", re.DOTALL)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (or Grafana ``label_values`` query)."""
    label_values = _LABEL_VALUES.match(expr)
    if label_values:
        expr = label_values.group(1) or ""
    expr = _STRING.sub(" ", expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges and subqueries
    expr = _GROUPING.sub(" ", expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables
    return {
        name for name, call in _IDENTIFIER.findall(expr) if not call and name not in PROMQL_KEYWORDS
    }


def full_metrics() -> Metrics:
    """The gateway's metrics with every optional collector a config can add."""
    metrics = Metrics()
    idle_cache = SimpleNamespace(
        stats=CacheStats(), gauges=lambda: {"l1_bytes": 0, "l1_entries": 0}
    )
    metrics.registry.register(CacheCollector(idle_cache))
    BatchMetrics(metrics.registry)
    return metrics


def exported_names(metrics: Metrics) -> dict[str, set[str]]:
    """Family name -> the sample names it can expose.

    Built from families, not samples: prometheus-client only writes labelled
    samples once a label combination has been used.
    """
    return {
        family.name: {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
        for family in metrics.registry.collect()
    }


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))  # collapsed rows


def dashboard_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Where -> PromQL, for every panel target and templating query."""
    queries = {}
    for panel in dashboard_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            queries[f"panel {panel['title']!r} target {target['refId']}"] = target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries[f"variable {variable['name']}"] = (
                query["query"] if isinstance(query, dict) else query
            )
    return queries


def rule_queries(rules: dict[str, Any]) -> dict[str, str]:
    return {
        f"rule {rule.get('alert') or rule['record']}": rule["expr"]
        for group in rules["groups"]
        for rule in group["rules"]
    }


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool not found; `make tools` installs it (Debian package prometheus)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{reason}; on CI the deploy assets must be checked")
        pytest.skip(reason)
    return path


def run_promtool(promtool: str, *args: str | Path) -> None:
    done = subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert done.returncode == 0, f"promtool {args[0]} {args[1]}:\n{done.stdout}{done.stderr}"


# -- the PromQL name extraction itself -----------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'histogram_quantile(0.99, sum by (le, model) (rate(a_bucket{route=~"/v1/.+", '
            'model=~"$model"}[$__rate_interval])))',
            {"a_bucket"},
        ),
        (
            "sum(rate(a_total[5m] offset 1h)) / sum without (key) (b_total) > bool 0.5",
            {"a_total", "b_total"},
        ),
        ("a:x:rate1h > on () group_left () b:threshold", {"a:x:rate1h", "b:threshold"}),
        ("sum(a) by (job) / ignoring (stage) group_left c == 2 or vector(0)", {"a", "c"}),
        ("count(max by (d) (g{d=~\"$deployment\"}) == 2) and up{job='x'} == 0", {"g", "up"}),
        ("label_values(a_total, model)", {"a_total"}),
        ("label_values(model)", set()),
        ("1 - 14.4 * 1e3", set()),
    ],
)
def test_metric_names_are_found_in_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# -- dashboard and rules use only what the gateway exports, and all of it ------


def test_every_metric_the_assets_use_is_exported(
    dashboard: dict[str, Any], rules: dict[str, Any]
) -> None:
    exported = set().union(*exported_names(full_metrics()).values())
    recorded = {
        rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule
    }
    queries = {**dashboard_queries(dashboard), **rule_queries(rules)}
    unknown = {
        where: sorted(metric_names(expr) - exported - recorded - PROMETHEUS_SERIES)
        for where, expr in queries.items()
    }
    assert {where: names for where, names in unknown.items() if names} == {}


def test_every_exported_metric_is_on_the_dashboard_or_in_an_alert(
    dashboard: dict[str, Any], rules: dict[str, Any]
) -> None:
    queries = {**dashboard_queries(dashboard), **rule_queries(rules)}
    used = set().union(*(metric_names(expr) for expr in queries.values()))
    families = exported_names(full_metrics())
    assert any(name.startswith("gen_ai_") for name in families)
    unused = sorted(
        family
        for family, names in families.items()
        if family.startswith(("interlock_", "gen_ai_")) and not names & used
    )
    assert unused == []


# -- dashboard shape -------------------------------------------------------------


def test_dashboard_uses_the_templated_prometheus_datasource(dashboard: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert {"model", "deployment"} <= variables.keys()
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels = [panel for panel in dashboard_panels(dashboard["panels"]) if panel["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"] == datasource, panel["title"]
        assert all(target["datasource"] == datasource for target in panel["targets"])


def test_dashboard_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    assert dashboard["schemaVersion"] >= 39


# -- rules shape ---------------------------------------------------------------


def test_every_alert_has_severity_summary_description_and_runbook(rules: dict[str, Any]) -> None:
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    assert alerts
    for alert in alerts:
        assert alert["labels"]["severity"] in ("critical", "warning"), alert["alert"]
        assert {"summary", "description", "runbook"} <= alert["annotations"].keys(), alert["alert"]


# -- promtool --------------------------------------------------------------------


def test_promtool_accepts_the_rules(promtool: str) -> None:
    run_promtool(promtool, "check", "rules", RULES)


def test_alerts_fire_on_failing_series_and_not_on_healthy_ones(promtool: str) -> None:
    run_promtool(promtool, "test", "rules", RULES_TEST)


def test_promtool_parses_every_dashboard_query(
    promtool: str, dashboard: dict[str, Any], tmp_path: Path
) -> None:
    records = []
    for where, expr in dashboard_queries(dashboard).items():
        if _LABEL_VALUES.match(expr):
            continue
        for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
            expr = expr.replace(variable, value)
        records.append(
            {"record": "dashboard:" + re.sub(r"\W+", "_", where).strip("_"), "expr": expr}
        )
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    run_promtool(promtool, "check", "rules", rules_file)
