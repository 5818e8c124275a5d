"""JWT bearer authentication beside API keys: which issuers, audience and
algorithms are accepted, where the signing keys come from (a JWKS file or
https URL) and how a token's claims name the principal."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, field_validator, model_validator

from interlock.config.base import Secret, _Strict
from interlock.config.upstream import TlsConfig

__all__ = ["JwksConfig", "JwtAlgorithm", "JwtClaimsConfig", "JwtConfig"]

# `none` is not here and never will be. HS256 is checked against the
# configured secret only, never against a key from the JWKS.
JwtAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "HS256"]

_DEFAULT_ALGORITHMS: tuple[JwtAlgorithm, ...] = ("RS256", "ES256")
# Below this HMAC's strength is the secret's, not SHA-256's (RFC 7518 3.2).
_MIN_HS256_SECRET_BYTES = 32
# A JWKS file is read whole; more than this is not a key set.
_MAX_JWKS_FILE_BYTES = 1024 * 1024


class JwksConfig(_Strict):
    """Where the issuers' public keys are: exactly one of ``file`` and ``url``."""

    # A local JWKS file (JSON with a `keys` list), checked when the config is loaded.
    file: str | None = None
    # An https:// URL serving the key set; first fetched when the gateway starts.
    url: str | None = None
    # Seconds between re-reads of the key set (a file too: rotation by replacing it).
    refresh_s: float = Field(default=300.0, gt=0, le=86_400)
    # A token whose `kid` is unknown re-reads the key set, at most once per this many
    # seconds, so a flood of made-up key ids cannot hammer the URL.
    min_refetch_s: float = Field(default=30.0, ge=0, le=3_600)
    # Seconds one fetch of the URL may take in all; a failed fetch keeps the last good keys.
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Largest key set read from the file or URL, in bytes; a larger one fails that read
    # (the last good keys are kept).
    max_bytes: int = Field(default=256 * 1024, ge=1024, le=_MAX_JWKS_FILE_BYTES)
    # Certificate checks for the URL, e.g. an identity provider behind a private CA.
    tls: TlsConfig = Field(default_factory=TlsConfig)

    @field_validator("url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        # Plain http would let anyone on the path hand us signing keys.
        if value is not None and not value.startswith("https://"):
            raise ValueError("the JWKS url must be https://")
        return value

    @field_validator("file")
    @classmethod
    def _a_key_set(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                with open(value, "rb") as f:
                    raw = f.read(_MAX_JWKS_FILE_BYTES + 1)
            except OSError as exc:
                raise ValueError(f"cannot read {value}: {exc.strerror}") from None
            try:
                keys = json.loads(raw).get("keys")
            except (ValueError, AttributeError):
                keys = None
            if not isinstance(keys, list):
                raise ValueError(f"{value}: not a JWKS (a JSON object with a `keys` list)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> JwksConfig:
        if (self.file is None) == (self.url is None):
            raise ValueError("give exactly one of `file` and `url`")
        return self


class JwtClaimsConfig(_Strict):
    """Which claims name the principal, its tier and its models."""

    # The claim naming the principal (a string, at most 256 characters) after
    # name_prefix; a token without a usable one gets 401 invalid_token.
    name: str = Field(default="sub", min_length=1)
    # None: every token gets `default_tier`.
    tier: str | None = None
    # A list of model names; None, or a token without the claim: every model.
    models: str | None = None


class JwtConfig(_Strict):
    # Accepted `iss` values; a token from any other issuer is refused.
    issuers: list[str] = Field(min_length=1)
    # The `aud` a token must carry (one of its values, when a list).
    audience: str = Field(min_length=1)
    # The `alg` values accepted (others: 401); HS256 needs hs256_secret, the others jwks.
    algorithms: list[JwtAlgorithm] = Field(default_factory=lambda: list(_DEFAULT_ALGORITHMS))
    # Where RS/PS/ES tokens' public keys come from (a JWKS file or https URL); None: HS256 only.
    jwks: JwksConfig | None = None
    # The HS256 shared secret; give it as os.environ/NAME.
    hs256_secret: Secret | None = None
    # Clock skew allowed on exp, nbf and iat.
    leeway_s: float = Field(default=30.0, ge=0, le=300)
    # Which claims name a token's principal, its tier and its models.
    claims: JwtClaimsConfig = Field(default_factory=JwtClaimsConfig)
    # The tier (a name in `tiers`) of a token that names none in claims.tier.
    default_tier: str = "standard"
    # The tiers a token may name; None: any configured tier.
    allowed_tiers: list[str] | None = None
    # Principal names are this plus the name claim, so a token's subject can
    # never share limits, budgets or ledger rows with an API key's name.
    name_prefix: str = "jwt:"
    # Verified tokens remembered (by SHA-256) until they expire.
    cache_size: int = Field(default=10_000, ge=0, le=1_000_000)

    @field_validator("hs256_secret", mode="before")
    @classmethod
    def _wrap_secret(cls, value: object) -> object:
        return Secret(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _keys_for_each_algorithm(self) -> JwtConfig:
        if len(set(self.algorithms)) != len(self.algorithms) or not self.algorithms:
            raise ValueError("algorithms: list each algorithm once, at least one")
        hs256 = "HS256" in self.algorithms
        if hs256 and self.hs256_secret is None:
            raise ValueError("HS256 needs hs256_secret (os.environ/NAME)")
        if not hs256 and self.hs256_secret is not None:
            raise ValueError("hs256_secret is set but HS256 is not in algorithms")
        secret = self.hs256_secret
        if secret is not None and len(secret.reveal().encode()) < _MIN_HS256_SECRET_BYTES:
            raise ValueError(f"hs256_secret: at least {_MIN_HS256_SECRET_BYTES} bytes")
        if any(alg != "HS256" for alg in self.algorithms) and self.jwks is None:
            raise ValueError("RS/PS/ES algorithms need `jwks` (a file or an https url)")
        return self
