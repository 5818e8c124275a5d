"""Deployments: health, in-flight, latency, error rate, breaker state and
its recent history, price and its source; chaos scenarios started and
stopped here, each after a confirmation page."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from interlock.api.admin import set_chaos
from interlock.config import ChaosConfig, ChaosRule
from interlock.config.chaos import SCENARIOS
from interlock.console.context import ConsoleRequest, redirect
from interlock.errors import InvalidRequest

__all__ = ["chaos", "page"]


async def page(context: ConsoleRequest) -> Response:
    services = context.services
    pipeline = services.pipeline
    groups = {d: group.name for group in pipeline.model_groups for d in group.deployments}
    rows = []
    for snapshot in services.telemetry.health.deployments():
        deployment = snapshot["deployment"]
        price = pipeline.price(deployment)
        rows.append(
            {
                **snapshot,
                "model": groups.get(deployment, "—"),
                "price": price.card() if price is not None else {"source": "unknown"},
            }
        )
    config = services.chaos.config
    return context.page(
        "deployments.html",
        "Deployments",
        deployments=rows,
        chaos_enabled=config.enabled,
        chaos_rules=[rule.model_dump() for rule in config.rules] if config.enabled else [],
        scenarios=_scenario_list(),
    )


async def chaos(context: ConsoleRequest) -> Response:
    """Start a scenario on a deployment, or stop chaos; ``confirm=yes`` applies,
    anything else answers the confirmation page."""
    form = context.form
    action = form.get("action")
    services = context.services
    current = services.chaos.config
    if action == "start":
        scenario, deployment = form.get("scenario", ""), form.get("deployment", "")
        if scenario not in SCENARIOS:
            raise InvalidRequest(f"Unknown chaos scenario `{scenario}`.")
        known = {d for group in services.pipeline.model_groups for d in group.deployments}
        if deployment not in known:
            raise InvalidRequest(f"Unknown deployment `{deployment}`.")
        rule = ChaosRule.model_validate({"deployment": deployment, **SCENARIOS[scenario]})
        kept = [r for r in current.rules if r.deployment != deployment] if current.enabled else []
        change = ChaosConfig(enabled=True, rules=[*kept, rule])
        question = (
            f"Start the “{scenario}” scenario on {deployment}? Real requests routed "
            f"to it will fail or slow down on purpose ({_describe(SCENARIOS[scenario])}) "
            "until you stop it."
        )
        notice = "chaos_on"
    elif action == "stop":
        change = ChaosConfig(enabled=False, rules=[])
        question = "Stop every chaos scenario? Nothing will be injected any more."
        notice = "chaos_off"
    else:
        raise InvalidRequest("Choose start or stop.")
    if form.get("confirm") != "yes":
        fields = {k: v for k, v in form.items() if k in {"action", "scenario", "deployment"}}
        return context.page(
            "confirm.html",
            "Confirm",
            question=question,
            fields=fields,
            action_url="/console/chaos",
            back="/console/deployments",
            button="Stop chaos" if action == "stop" else "Start the scenario",
        )
    await set_chaos(services, change, context.actor)
    return redirect("/console/deployments", notice=notice)


def _describe(rule: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in rule.items())


def _scenario_list() -> list[dict[str, str]]:
    return [{"name": name, "effect": _describe(rule)} for name, rule in SCENARIOS.items()]
