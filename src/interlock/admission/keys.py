"""Bearer authentication: an API key or a JWT -> principal, without a database hit.

Keys come from the config file (development, CI) and from the durable key
store (created through the admin API or ``interlock keys``). Both live in
one in-memory map from SHA-256 digest to ``Principal``, so a lookup is a
hash and a dict access; a background refresher polls the store for keys
changed since its last look (``refresh_s``, 0.5 s by default), so a
revocation reaches every instance within a second.

A bearer value that is no API key goes to ``jwt_auth`` when JWT auth is
configured and the value looks like a JWT; API keys are looked up first, so
their cost per request is what it was without JWTs.

401: no key or an unknown key. 403: a revoked or expired key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

from interlock.admission.jwt_auth import JwtAuthenticator, UnknownSigningKey, looks_like_jwt
from interlock.admission.principal import Principal
from interlock.config import KeyConfig, KeyLimits, TierConfig
from interlock.errors import AuthenticationFailed, PermissionDenied
from interlock.guardrails.facade import key_override_text
from interlock.store.keys import KeyRecord, KeyStore

__all__ = ["KeyRing", "Principal"]

log = logging.getLogger("interlock.keys")

# Clocks of instances and database commit times differ; re-read a little
# behind the last poll so no change falls between two polls.
_POLL_OVERLAP = timedelta(seconds=5)


def _effective_limits(own: KeyLimits, tier: TierConfig | None) -> KeyLimits:
    base = tier.limits if tier is not None else KeyLimits()
    return KeyLimits(
        rpm=own.rpm or base.rpm,
        tpm=own.tpm or base.tpm,
        tokens_per_day=own.tokens_per_day or base.tokens_per_day,
        max_concurrent=own.max_concurrent or base.max_concurrent,
    )


class KeyRing:
    def __init__(
        self,
        keys: Iterable[KeyConfig],
        tiers: Mapping[str, TierConfig] | None = None,
        store: KeyStore | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        jwt: JwtAuthenticator | None = None,
    ):
        self._tiers = dict(tiers or {})
        self._jwt = jwt
        self._store = store
        self._clock = clock
        self._by_digest: dict[bytes, Principal] = {}
        for key in keys:
            digest = hashlib.sha256(key.key.reveal().encode()).digest()
            self._by_digest[digest] = self._from_config(key)
        self._config_digests = frozenset(self._by_digest)
        self._polled_at: datetime | None = None

    def authenticate(self, authorization: str | None) -> Principal:
        """Resolve an ``Authorization`` header value, or raise 401/403."""
        if not authorization:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
                code="missing_api_key",
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer YOUR_KEY'."
            )
        digest = hashlib.sha256(token.encode()).digest()
        principal = self._by_digest.get(digest)
        if principal is None:
            if self._jwt is not None and looks_like_jwt(token):
                return self._jwt.verify(token, digest)
            raise AuthenticationFailed("Incorrect API key provided.")
        if principal.revoked:
            raise PermissionDenied("This API key has been revoked.", code="key_revoked")
        if principal.expires_at is not None and principal.expires_at <= self._clock():
            raise PermissionDenied("This API key has expired.", code="key_expired")
        return principal

    def principal_named(self, name: str) -> Principal:
        """The key called ``name`` as it stands now, for work a key submitted
        earlier and a worker runs later (batches): raises 403 once it is
        revoked or expired, 401 if it is gone. JWT callers have no stored key."""
        found = [p for p in self._by_digest.values() if p.name == name]
        if not found:
            raise AuthenticationFailed(f"The API key `{name}` no longer exists.")
        # Rotation keeps the name: any live key of that name will do.
        live = [p for p in found if not p.revoked]
        if not live:
            raise PermissionDenied("This API key has been revoked.", code="key_revoked")
        now = self._clock()
        current = [p for p in live if p.expires_at is None or p.expires_at > now]
        if not current:
            raise PermissionDenied("This API key has expired.", code="key_expired")
        return current[0]

    async def authenticate_or_refresh(self, authorization: str | None) -> Principal:
        """``authenticate``; a JWT signed by a key not in the key set yet makes
        one fetch of the set (rate limited: ``JwksCache``) and one more try."""
        try:
            return self.authenticate(authorization)
        except UnknownSigningKey:
            jwks = self._jwt.jwks if self._jwt is not None else None
            if jwks is None or not await jwks.refresh_for_unknown_kid():
                raise
        return self.authenticate(authorization)

    # -- the durable store -------------------------------------------------

    def use_store(self, store: KeyStore) -> None:
        """Attach the key store once it is open (in the app's lifespan)."""
        self._store = store

    async def refresh(self) -> int:
        """Load keys changed since the last poll (all of them the first time)."""
        if self._store is None:
            return 0
        now = self._clock()
        if self._polled_at is None:
            records = await self._store.list(include_revoked=True)
        else:
            records = await self._store.changed_since(self._polled_at - _POLL_OVERLAP)
        self._polled_at = now
        for record in records:
            digest = bytes.fromhex(record.key_hash)
            if digest not in self._config_digests:  # the config file wins
                self._by_digest[digest] = self._from_record(record)
        return len(records)

    async def run_refresher(self, interval_s: float) -> None:
        """Poll forever; a failed poll is logged and retried next interval.
        The JWT key set, if any, is refreshed beside it on its own interval
        (a slow JWKS URL never delays a revocation)."""
        jwks = self._jwt.jwks if self._jwt is not None else None
        jwks_task = asyncio.create_task(jwks.run_refresher()) if jwks is not None else None
        try:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    await self.refresh()
                except Exception as exc:  # the store may be briefly unreachable
                    log.warning("key refresh failed", extra={"error": str(exc)})
        finally:
            if jwks_task is not None:
                jwks_task.cancel()
                await asyncio.wait([jwks_task])

    # -- building principals -------------------------------------------------

    def _tier(self, name: str) -> TierConfig | None:
        return self._tiers.get(name)

    def _from_config(self, key: KeyConfig) -> Principal:
        tier = self._tier(key.tier)
        return Principal(
            name=key.name,
            permissions=frozenset(key.permissions),
            tier=key.tier,
            limits=_effective_limits(key.limits, tier),
            allowed_models=frozenset(key.allowed_models) if key.allowed_models else None,
            budget_usd_day=key.budget_usd_day,
            budget_usd_month=key.budget_usd_month,
            priority=tier.priority if tier else 0,
            guardrails=key_override_text(key.guardrails),
        )

    def limits_of(self, record: KeyRecord) -> KeyLimits:
        """A stored key's limits as admission applies them: its own, and its
        tier's where it sets none."""
        stored = record.limits
        own = KeyLimits(
            rpm=stored.rpm,
            tpm=stored.tpm,
            tokens_per_day=stored.tokens_per_day,
            max_concurrent=stored.max_concurrent,
        )
        return _effective_limits(own, self._tier(record.tier))

    def _from_record(self, record: KeyRecord) -> Principal:
        tier = self._tier(record.tier)
        return Principal(
            name=record.name,
            permissions=record.permissions,
            key_id=record.id,
            tier=record.tier,
            limits=self.limits_of(record),
            allowed_models=frozenset(record.allowed_models) if record.allowed_models else None,
            budget_usd_day=record.budget_usd_day,
            budget_usd_month=record.budget_usd_month,
            priority=tier.priority if tier else 0,
            expires_at=record.expires_at,
            revoked=record.revoked_at is not None,
            guardrails=key_override_text(record.guardrails),
        )
