"""The model registry: every version with its status and traffic share;
promote a version, set a canary's share, or roll a model back, each after
a confirmation page. The registry writes its own audit entries, naming the
console user."""

from __future__ import annotations

from starlette.responses import Response

from interlock.console.context import ConsoleRequest, redirect
from interlock.errors import InvalidRequest

__all__ = ["change", "page"]


async def page(context: ConsoleRequest) -> Response:
    service = context.services.registry.service
    versions = [v.to_json() for v in await service.versions()] if service is not None else []
    audit = await service.audit(None, 20) if service is not None else []
    return context.page(
        "models.html",
        "Model registry",
        enabled=service is not None,
        versions=versions,
        audit=audit,
    )


async def change(context: ConsoleRequest) -> Response:
    registry = context.services.registry.get()
    form = context.form
    action, name, version = form.get("action"), form.get("name", ""), form.get("version", "")
    if action == "promote":
        question = f"Promote {name} version {version}? It takes all of {name}'s traffic."
        button, notice = "Promote", "promoted"
    elif action == "rollback":
        question = f"Roll {name} back to its previous live version?"
        button, notice = "Roll back", "rolled_back"
    elif action == "canary":
        share = _share(form.get("share", ""))
        question = f"Send {share:.0%} of {name}'s traffic to version {version}?"
        button, notice = "Set the canary", "canary"
    else:
        raise InvalidRequest("Choose promote, canary or rollback.")
    if form.get("confirm") != "yes":
        fields = {k: v for k, v in form.items() if k in {"action", "name", "version", "share"}}
        return context.page(
            "confirm.html",
            "Confirm",
            question=question,
            fields=fields,
            action_url="/console/models",
            back="/console/models",
            button=button,
        )
    actor = context.actor
    if action == "promote":
        await registry.promote(name, version, actor)
    elif action == "rollback":
        await registry.rollback(name, actor, "from the console")
    else:
        await registry.set_canary(name, version, _share(form.get("share", "")), False, actor)
    return redirect("/console/models", notice=notice)


def _share(raw: str) -> float:
    try:
        share = float(raw) / 100
    except ValueError:
        raise InvalidRequest("The canary share is a percentage, e.g. 10.") from None
    if not 0 < share < 1:
        raise InvalidRequest("The canary share is more than 0 % and less than 100 %.")
    return share
