"""JWT bearer authentication: a signed token -> principal, beside API keys.

``KeyRing`` sends a bearer value here when it is no API key, JWT auth is
configured and the value looks like a JWT (``eyJ...`` in three dot-separated
parts). A token is accepted when all of this holds:

- its header's ``alg`` is one of the configured algorithms (``none`` never
  is); RS/PS/ES tokens name a ``kid`` of the JWKS whose key type fits the
  algorithm (an RSA key for RS/PS, an EC key on the right curve for ES, and
  the JWK's own ``alg`` when it names one), and HS256 tokens are checked
  against the configured secret alone. So a public key can never be used as
  an HMAC secret (alg confusion), the header never picks the key type, and
  keys a token offers itself (``jwk``, ``jku``, ``x5u``) are ignored;
- the signature verifies (PyJWT);
- ``iss`` is an accepted issuer, ``aud`` holds the audience, ``exp`` is
  present and not past, ``nbf`` and ``iat`` (if present) not in the future,
  each within ``leeway_s`` and by the injected clock;
- the claims name a principal (``claims.name``), and a known tier
  (``claims.tier``, else ``default_tier``; an unknown one is 403).

A verified token is remembered by its SHA-256 until it expires (a bounded
LRU, dropped whenever the key set changes), so a client reusing one token
pays a dict lookup per request, not a signature check.

401 ``invalid_token`` (``token_expired`` for an expired one) with a message
saying what was wrong, never echoing the token; 403 ``unknown_tier``.
``UnknownSigningKey`` (a 401) tells ``KeyRing`` to fetch the key set once
and try again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from jwt import exceptions as jwt_errors

from interlock.admission.jwks import JwksCache, VerifyKey, jwks_source
from interlock.admission.principal import Principal
from interlock.config import JwtConfig, TierConfig
from interlock.errors import AuthenticationFailed, PermissionDenied

__all__ = ["JwtAuthenticator", "UnknownSigningKey", "looks_like_jwt"]

# The key type (and EC curve) each asymmetric algorithm must be verified with.
_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
}
_MAX_NAME_CHARS = 256


def looks_like_jwt(token: str) -> bool:
    """The cheap test: a JSON header (``{"`` is ``eyJ``) and three parts."""
    return token.startswith("eyJ") and token.count(".") == 2


class UnknownSigningKey(AuthenticationFailed):
    """The token's ``kid`` is not in the key set (yet)."""


def _invalid(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"Invalid token: {reason}.", code="invalid_token")


class JwtAuthenticator:
    """Verifies tokens against one ``JwtConfig``; pure apart from ``jwks``'s fetches."""

    def __init__(
        self,
        config: JwtConfig,
        tiers: Mapping[str, TierConfig],
        jwks: JwksCache | None,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.jwks = jwks
        self._config = config
        self._tiers = dict(tiers)
        self._allowed_tiers = frozenset(config.allowed_tiers or tiers)
        self._algorithms = frozenset(config.algorithms)
        secret = config.hs256_secret
        self._hs256_key = secret.reveal().encode() if secret is not None else None
        self._issuers = frozenset(config.issuers)
        self._leeway = config.leeway_s
        self._clock = clock
        self._decoder = jwt.PyJWT(
            {
                # Times are checked here, by the injected clock.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "require": ["exp", "iss", "aud"],
                "enforce_minimum_key_length": True,
            }
        )
        # digest -> (principal, the time its token stops being valid)
        self._verified: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._verified_version = jwks.version if jwks is not None else 0

    @classmethod
    def from_config(cls, config: JwtConfig, tiers: Mapping[str, TierConfig]) -> JwtAuthenticator:
        jwks = None
        if config.jwks is not None:
            settings = config.jwks
            jwks = JwksCache(
                jwks_source(settings),
                refresh_s=settings.refresh_s,
                min_refetch_s=settings.min_refetch_s,
            )
        return cls(config, tiers, jwks)

    @property
    def cached_tokens(self) -> int:
        """How many verified tokens are remembered."""
        return len(self._verified)

    def verify(self, token: str, digest: bytes) -> Principal:
        """The token's principal, or 401/403. ``digest`` is the token's SHA-256."""
        now = self._clock()
        cached = self._recall(digest, now)
        if cached is not None:
            return cached
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.PyJWTError:
            raise _invalid("not a well-formed JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            accepted = ", ".join(sorted(self._algorithms))
            raise _invalid(f"its algorithm is not accepted (accepted: {accepted})")
        key = self._key_for(alg, header)
        claims = self._decode(token, key, alg)
        expires = self._check_times(claims, now)
        principal = self._principal(claims)
        self._remember(digest, principal, expires)
        return principal

    # -- the key ----------------------------------------------------------------

    def _key_for(self, alg: str, header: Mapping[str, Any]) -> Any:
        if alg == "HS256":
            return self._hs256_key
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid("no `kid` in its header")
        key = self.jwks.get(kid) if self.jwks is not None else None
        if key is None:
            raise UnknownSigningKey(
                "Invalid token: its signing key (`kid`) is not known.", code="invalid_token"
            )
        if not _fits(key, alg):
            raise _invalid("its algorithm does not match its signing key")
        return key.key

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = self._decoder.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._config.audience,
                issuer=self._issuers,
            )
        except jwt_errors.InvalidSignatureError:
            raise _invalid("the signature does not verify") from None
        except jwt_errors.InvalidAudienceError:
            raise _invalid("wrong audience") from None
        except jwt_errors.InvalidIssuerError:
            raise _invalid("its issuer is not accepted") from None
        except jwt_errors.InvalidSubjectError:
            raise _invalid("`sub` is not a string") from None
        except jwt_errors.MissingRequiredClaimError as exc:
            raise _invalid(f"no `{exc.claim}` claim") from None
        except jwt_errors.InvalidKeyError:
            raise _invalid("its signing key is too weak") from None
        except jwt_errors.PyJWTError:
            raise _invalid("not a well-formed JWT") from None
        return claims

    # -- the claims -------------------------------------------------------------

    def _check_times(self, claims: Mapping[str, Any], now: float) -> float:
        """The time the token stops being valid (``exp`` plus leeway)."""
        leeway = self._leeway
        exp = _number(claims, "exp")
        if exp is None:
            raise _invalid("no `exp` claim")
        if exp + leeway <= now:
            raise AuthenticationFailed("The token has expired.", code="token_expired")
        for claim in ("nbf", "iat"):
            at = _number(claims, claim)
            if at is not None and at > now + leeway:
                raise _invalid(f"not valid yet (`{claim}` is in the future)")
        return exp + leeway

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        names = self._config.claims
        name = claims.get(names.name)
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME_CHARS:
            raise _invalid(f"no usable `{names.name}` claim")
        tier_name = self._config.default_tier
        if names.tier is not None and names.tier in claims:
            tier_name = claims[names.tier]
            if not isinstance(tier_name, str) or tier_name not in self._allowed_tiers:
                raise PermissionDenied(
                    "This token names a tier that is not known here.", code="unknown_tier"
                )
        models = claims.get(names.models) if names.models is not None else None
        if models is not None and (
            not isinstance(models, list) or not all(isinstance(m, str) for m in models)
        ):
            raise _invalid(f"`{names.models}` is not a list of model names")
        tier = self._tiers[tier_name]
        return Principal(
            name=self._config.name_prefix + name,
            tier=tier_name,
            limits=tier.limits,
            allowed_models=frozenset(models) if models is not None else None,
            priority=tier.priority,
        )

    # -- verified tokens --------------------------------------------------------

    def _recall(self, digest: bytes, now: float) -> Principal | None:
        if self.jwks is not None and self.jwks.version != self._verified_version:
            # Keys changed (one may have been withdrawn): verify everything again.
            self._verified.clear()
            self._verified_version = self.jwks.version
        entry = self._verified.get(digest)
        if entry is None:
            return None
        principal, until = entry
        if until <= now:
            del self._verified[digest]
            return None
        self._verified.move_to_end(digest)
        return principal

    def _remember(self, digest: bytes, principal: Principal, until: float) -> None:
        size = self._config.cache_size
        if size == 0:
            return
        self._verified[digest] = (principal, until)
        if len(self._verified) > size:
            self._verified.popitem(last=False)


def _fits(key: VerifyKey, alg: str) -> bool:
    if key.alg is not None and key.alg != alg:
        return False
    kty, crv = _KEY_TYPES[alg]
    return key.kty == kty and (crv is None or key.crv == crv)


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"`{name}` is not a number")
    return float(value)
