"""One model version as the registry keeps it, and what the admin API takes.

A version is a deployment with a life cycle: ``staging`` (registered, served
only when a request names its version), ``canary`` (a share of the model's
traffic), ``live`` (the rest), ``retired`` (kept, so a rollback can bring it
back; never served). Its deployment facts (provider, endpoint, upstream
model, params, timeouts) are checked as the config file's are, by
``DeploymentConfig``, so a version the registry accepts is one the router
can build.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from interlock.config import DeploymentConfig, TimeoutConfig
from interlock.config.deployments import ProviderName
from interlock.errors import InvalidRequest
from interlock.pipeline.schemas import Datatype

__all__ = [
    "Kind",
    "ModelVersion",
    "Status",
    "TensorSpec",
    "VersionPatch",
    "VersionSpec",
    "deployment_id",
]

Kind = Literal["chat", "embedding", "tensor"]
# A model name is a metrics label and part of URLs: kept plain.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class Status(StrEnum):
    STAGING = "staging"
    CANARY = "canary"
    LIVE = "live"
    RETIRED = "retired"


def deployment_id(name: str, version: str) -> str:
    """The router's id for a registered version (metrics label, breaker key)."""
    return f"{name}@{version}"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TensorSpec(_Body):
    """One tensor of a version's signature; -1 is a dimension of any size."""

    name: str = Field(min_length=1)
    datatype: Datatype
    shape: list[int] = Field(max_length=8)


class VersionPatch(_Body):
    """What ``PATCH /admin/models/{name}/versions/{version}`` may change;
    ``endpoint`` and ``upstream_model`` may be set to null, nothing else."""

    endpoint: str | None = None
    upstream_model: str | None = None
    params: dict[str, Any] | None = None
    timeouts: dict[str, float] | None = None
    inputs: list[TensorSpec] | None = None
    outputs: list[TensorSpec] | None = None
    tags: list[str] | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _not_null(self) -> VersionPatch:
        for name in self.model_fields_set - {"endpoint", "upstream_model"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    @property
    def changes_deployment(self) -> bool:
        """Whether the version's adapter must be rebuilt (and checked)."""
        return bool(self.model_fields_set & {"endpoint", "upstream_model", "params", "timeouts"})


class VersionSpec(_Body):
    """``POST /admin/models``: a new version of a (possibly new) model."""

    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=VERSION_PATTERN)
    kind: Kind
    provider: ProviderName
    # The upstream's base URL (kserve, openai, ...); none for in-process engines.
    endpoint: str | None = None
    # The model's name upstream, or the ONNX file an in-process engine loads.
    upstream_model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    timeouts: dict[str, float] = Field(default_factory=dict)
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list, max_length=64)
    description: str = Field(default="", max_length=2000)
    # A version starts in staging; "live" registers and promotes at once.
    status: Literal["staging", "live"] = "staging"

    def deployment(self) -> DeploymentConfig:
        return build_deployment(self.name, self.version, self.provider, self.model_dump())

    @field_validator("name")
    @classmethod
    def _addressable(cls, name: str) -> str:
        # /admin/models/{name}/versions/{v} and /{name}/rollback must find it.
        if "/versions/" in f"/{name}/" or name.endswith("/rollback"):
            raise ValueError("a model name cannot contain a 'versions' segment or end in /rollback")
        return name


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: str
    kind: str
    provider: str
    endpoint: str | None
    upstream_model: str | None
    params: dict[str, Any]
    timeouts: dict[str, float]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    tags: list[str]
    description: str
    status: Status
    # The canary's share of its model's requests, 0..1; 1.0 for live.
    traffic_share: float
    # Whether a caller stays in the canary cohort (or out of it) request after request.
    sticky: bool
    created_at: float
    updated_at: float
    updated_by: str
    # When it last left live (rollback brings back the latest one); None if never.
    retired_at: float | None = None

    @property
    def deployment_id(self) -> str:
        return deployment_id(self.name, self.version)

    @property
    def routable(self) -> bool:
        return self.status is not Status.RETIRED

    def deployment(self, patch: VersionPatch | None = None) -> DeploymentConfig:
        """The deployment the router builds for this version (with ``patch``
        applied: what it would build after the change)."""
        facts = self.to_json()
        if patch is not None:
            facts.update(patch.model_dump(exclude_unset=True))
        return build_deployment(self.name, self.version, self.provider, facts)

    def fingerprint(self) -> tuple[Any, ...]:
        """What a running deployment is built from: while it is unchanged, a
        reload keeps the deployment (its pool, breaker and health)."""
        return (
            self.provider,
            self.endpoint,
            self.upstream_model,
            repr(sorted(self.params.items())),
            repr(sorted(self.timeouts.items())),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "model.version",
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "provider": self.provider,
            "endpoint": self.endpoint,
            "upstream_model": self.upstream_model,
            "params": self.params,
            "timeouts": self.timeouts,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "tags": self.tags,
            "description": self.description,
            "status": self.status.value,
            "traffic_share": self.traffic_share,
            "sticky": self.sticky,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "retired_at": self.retired_at,
        }


def build_deployment(
    name: str, version: str, provider: str, facts: Mapping[str, Any]
) -> DeploymentConfig:
    """A ``DeploymentConfig`` from a version's facts (``endpoint``,
    ``upstream_model``, ``params``, ``timeouts``, ``tags``), or a 400 saying
    what the config check found."""
    try:
        return DeploymentConfig.model_validate(
            {
                "id": deployment_id(name, version),
                "provider": provider,
                "model": facts.get("upstream_model"),
                "base_url": facts.get("endpoint"),
                "params": facts.get("params") or {},
                "timeouts": TimeoutConfig.model_validate(facts.get("timeouts") or {}),
                "version": version,
                "tags": facts.get("tags") or [],
            }
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "version"
        raise InvalidRequest(
            f"Invalid model version: {where}: {first['msg']}.", param=where
        ) from None
