"""Maps a public model name to the deployment that serves this call.

For now the strategy is round-robin over a model's deployments; strategies,
circuit breakers, retries and failover land here (and only here) later.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence

from interlock.errors import ModelNotFound
from interlock.providers.base import Provider

__all__ = ["ModelRoute", "Router"]


class ModelRoute:
    """The deployments behind one public model name."""

    def __init__(self, name: str, providers: Sequence[Provider], created: int):
        if not providers:
            raise ValueError(f"model {name!r} has no deployments")
        self.name = name
        self.providers = tuple(providers)
        self.created = created
        self._turn: Iterator[Provider] = itertools.cycle(self.providers)

    @property
    def owned_by(self) -> str:
        owners = {p.owned_by for p in self.providers}
        return owners.pop() if len(owners) == 1 else "interlock"

    def pick(self) -> Provider:
        return next(self._turn)


class Router:
    def __init__(self, routes: Mapping[str, ModelRoute]):
        self._routes = dict(routes)

    def route(self, model: str) -> ModelRoute:
        route = self._routes.get(model)
        if route is None:
            raise ModelNotFound(model)
        return route

    def pick(self, model: str) -> Provider:
        return self.route(model).pick()

    @property
    def routes(self) -> Sequence[ModelRoute]:
        return tuple(self._routes.values())
