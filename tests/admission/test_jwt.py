"""JWT bearer authentication: tokens signed in the test with keys made in the
test, key sets from a file or from a real https server on loopback, fake
clocks for expiry and for the JWKS refresh's rate limit."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trustme
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.warnings import InsecureKeyLengthWarning

from interlock.admission.jwks import JwksCache, jwks_source
from interlock.admission.jwt_auth import JwtAuthenticator
from interlock.admission.keys import KeyRing
from interlock.app import create_app
from interlock.config import (
    ConfigError,
    JwksConfig,
    JwtConfig,
    KeyConfig,
    KeyLimits,
    Secret,
    TierConfig,
    TlsConfig,
    parse_config,
)
from interlock.errors import AuthenticationFailed, PermissionDenied
from tests.support.clock import FakeClock
from tests.support.loopback import LoopbackServer
from tests.support.servers import InProcessGateway

ISSUER = "https://idp.example.test/"
AUDIENCE = "interlock"
NOW = 1_900_000_000.0
HS_SECRET = "hs256-secret-of-at-least-thirty-two-bytes!"
TIERS = {
    "standard": TierConfig(limits=KeyLimits(rpm=600, max_concurrent=64), priority=1),
    "premium": TierConfig(limits=KeyLimits(rpm=6000), priority=2),
    "unlimited": TierConfig(priority=1),
}


# -- keys, key sets and tokens, all made here ------------------------------------


@dataclass(frozen=True)
class Signers:
    rsa: rsa.RSAPrivateKey
    rsa_next: rsa.RSAPrivateKey  # the key a rotation brings in
    ec: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def signers() -> Signers:
    return Signers(
        rsa.generate_private_key(65537, 2048),
        rsa.generate_private_key(65537, 2048),
        ec.generate_private_key(ec.SECP256R1()),
    )


def jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        public: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        public = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**public, "kid": kid, "use": "sig"}


def jwks(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


def token(key: Any, alg: str, kid: str | None = None, at: float = NOW, **claims: Any) -> str:
    """A token issued at ``at``, valid ten minutes; a claim given as None is left out."""
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": at, "exp": at + 600}
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid} if kid else None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A token PyJWT would refuse to make: alg none, or a PEM key as an HMAC secret."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**extra: Any) -> dict[str, Any]:
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": NOW, "exp": NOW + 600, **extra}


@dataclass
class Setup:
    ring: KeyRing
    authenticator: JwtAuthenticator
    clock: FakeClock  # the wall clock tokens are checked against
    fetch_clock: FakeClock  # the monotonic clock of the JWKS refresh


async def make_ring(
    jwks_config: JwksConfig | None,
    keys: list[KeyConfig] | None = None,
    **settings: Any,
) -> Setup:
    config = JwtConfig(issuers=[ISSUER], audience=AUDIENCE, jwks=jwks_config, **settings)
    clock, fetch_clock = FakeClock(NOW), FakeClock(1000.0)
    cache = None
    if jwks_config is not None:
        cache = JwksCache(
            jwks_source(jwks_config),
            refresh_s=jwks_config.refresh_s,
            min_refetch_s=jwks_config.min_refetch_s,
            clock=fetch_clock,
        )
        await cache.refresh()
    authenticator = JwtAuthenticator(config, TIERS, cache, clock=clock)
    ring = KeyRing(keys or [], TIERS, jwt=authenticator)
    return Setup(ring, authenticator, clock, fetch_clock)


@pytest.fixture
def key_file(tmp_path: Path, signers: Signers) -> JwksConfig:
    path = tmp_path / "jwks.json"
    path.write_bytes(jwks(jwk(signers.rsa, "rsa-1"), jwk(signers.ec, "ec-1")))
    return JwksConfig(file=str(path))


def bearer(value: str) -> str:
    return f"Bearer {value}"


def refused(setup: Setup, value: str) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as info:
        setup.ring.authenticate(bearer(value))
    assert info.value.status_code == 401
    assert value not in info.value.message  # never echoes the token
    return info.value


# -- accepted tokens -------------------------------------------------------------


async def test_rs256_and_es256_tokens_are_accepted(signers: Signers, key_file: JwksConfig) -> None:
    setup = await make_ring(key_file)
    by_rsa = setup.ring.authenticate(bearer(token(signers.rsa, "RS256", "rsa-1")))
    by_ec = setup.ring.authenticate(bearer(token(signers.ec, "ES256", "ec-1", sub="bob")))
    assert (by_rsa.name, by_ec.name) == ("jwt:alice", "jwt:bob")
    # No tier claim configured: the default tier, its limits and priority.
    assert by_rsa.tier == "standard" and by_rsa.limits == TIERS["standard"].limits
    assert by_rsa.priority == 1 and by_rsa.allowed_models is None
    assert by_rsa.key_id is None and not by_rsa.permissions


async def test_hs256_only_with_a_configured_secret(signers: Signers, key_file: JwksConfig) -> None:
    hs_token = token(HS_SECRET, "HS256")
    without = await make_ring(key_file)
    assert "algorithm is not accepted" in refused(without, hs_token).message

    with_secret = await make_ring(
        key_file, algorithms=["RS256", "HS256"], hs256_secret=Secret(HS_SECRET)
    )
    assert with_secret.ring.authenticate(bearer(hs_token)).name == "jwt:alice"
    other_secret = token("another-secret-that-is-also-32-bytes-long", "HS256")
    assert "signature" in refused(with_secret, other_secret).message
    # ES256 is no longer configured there.
    assert "not accepted" in refused(with_secret, token(signers.ec, "ES256", "ec-1")).message


async def test_hs256_alone_needs_no_key_set() -> None:
    setup = await make_ring(None, algorithms=["HS256"], hs256_secret=Secret(HS_SECRET))
    assert setup.ring.authenticate(bearer(token(HS_SECRET, "HS256"))).name == "jwt:alice"


async def test_clock_skew_within_the_leeway_is_tolerated(
    signers: Signers, key_file: JwksConfig
) -> None:
    setup = await make_ring(key_file, leeway_s=30)
    late = token(signers.rsa, "RS256", "rsa-1", at=NOW - 620)  # expired 20 s ago
    early = token(signers.rsa, "RS256", "rsa-1", at=NOW + 20, nbf=NOW + 20)
    assert setup.ring.authenticate(bearer(late)).name == "jwt:alice"
    assert setup.ring.authenticate(bearer(early)).name == "jwt:alice"


# -- refused tokens --------------------------------------------------------------


def _bad_tokens(s: Signers) -> dict[str, tuple[str, str, str]]:
    """name -> (token, code, what the message says)"""
    good = token(s.rsa, "RS256", "rsa-1")
    head, _, signature = good.split(".")
    forged = b64(json.dumps(claims(sub="root")).encode())
    public_pem = s.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "alg none": (
            hand_signed({"alg": "none", "typ": "JWT"}, claims(), None),
            "invalid_token",
            "algorithm is not accepted",
        ),
        "alg confusion": (
            hand_signed({"alg": "HS256", "kid": "rsa-1"}, claims(), public_pem),
            "invalid_token",
            "algorithm is not accepted",
        ),
        "key type mismatch": (
            token(s.ec, "ES256", "rsa-1"),
            "invalid_token",
            "does not match its signing key",
        ),
        "expired": (token(s.rsa, "RS256", "rsa-1", at=NOW - 700), "token_expired", "expired"),
        "not yet valid": (
            token(s.rsa, "RS256", "rsa-1", nbf=NOW + 120),
            "invalid_token",
            "`nbf` is in the future",
        ),
        "issued in the future": (
            token(s.rsa, "RS256", "rsa-1", at=NOW + 120),
            "invalid_token",
            "`iat` is in the future",
        ),
        "wrong issuer": (
            token(s.rsa, "RS256", "rsa-1", iss="https://evil.test/"),
            "invalid_token",
            "issuer is not accepted",
        ),
        "wrong audience": (
            token(s.rsa, "RS256", "rsa-1", aud="someone-else"),
            "invalid_token",
            "wrong audience",
        ),
        "no exp": (token(s.rsa, "RS256", "rsa-1", exp=None), "invalid_token", "no `exp` claim"),
        "no sub": (token(s.rsa, "RS256", "rsa-1", sub=None), "invalid_token", "`sub`"),
        "no kid": (token(s.rsa, "RS256"), "invalid_token", "no `kid`"),
        "unknown kid": (token(s.rsa, "RS256", "rsa-9"), "invalid_token", "not known"),
        "tampered payload": (f"{head}.{forged}.{signature}", "invalid_token", "signature"),
        "garbage": ("eyJhbGciOi.not-json.x", "invalid_token", "not a well-formed JWT"),
        "signed by another key": (
            token(s.rsa_next, "RS256", "rsa-1"),
            "invalid_token",
            "signature",
        ),
    }


BAD = [
    "alg none",
    "alg confusion",
    "key type mismatch",
    "expired",
    "not yet valid",
    "issued in the future",
    "wrong issuer",
    "wrong audience",
    "no exp",
    "no sub",
    "no kid",
    "unknown kid",
    "tampered payload",
    "garbage",
    "signed by another key",
]


@pytest.mark.parametrize("case", BAD)
async def test_bad_tokens_are_401(signers: Signers, key_file: JwksConfig, case: str) -> None:
    setup = await make_ring(key_file)
    value, code, says = _bad_tokens(signers)[case]
    error = refused(setup, value)
    assert error.code == code and says in error.message


async def test_a_public_key_as_hs256_secret_fails_even_with_hs256_on(
    signers: Signers, key_file: JwksConfig
) -> None:
    setup = await make_ring(key_file, algorithms=["RS256", "HS256"], hs256_secret=Secret(HS_SECRET))
    value, _, _ = _bad_tokens(signers)["alg confusion"]
    assert "signature" in refused(setup, value).message


async def test_a_weak_rsa_key_is_refused(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(65537, 1024)
    path = tmp_path / "weak.json"
    path.write_bytes(jwks(jwk(weak, "weak-1")))
    setup = await make_ring(JwksConfig(file=str(path)))
    with pytest.warns(InsecureKeyLengthWarning):  # PyJWT warns when signing, too
        value = token(weak, "RS256", "weak-1")
    assert "too weak" in refused(setup, value).message


async def test_api_keys_are_unchanged_beside_jwts(signers: Signers, key_file: JwksConfig) -> None:
    setup = await make_ring(key_file, keys=[KeyConfig(name="alice", key=Secret("sk-alice"))])
    assert setup.ring.authenticate(bearer("sk-alice")).name == "alice"
    assert refused(setup, "sk-nobody").code == "invalid_api_key"
    # With JWT auth off, a token is just an unknown API key.
    plain = KeyRing([KeyConfig(name="alice", key=Secret("sk-alice"))], TIERS)
    with pytest.raises(AuthenticationFailed) as info:
        plain.authenticate(bearer(token(signers.rsa, "RS256", "rsa-1")))
    assert info.value.code == "invalid_api_key"


# -- claims -> principal ---------------------------------------------------------


async def test_claims_name_the_tier_and_models(signers: Signers, key_file: JwksConfig) -> None:
    setup = await make_ring(
        key_file,
        claims={"name": "email", "tier": "plan", "models": "models"},
        name_prefix="idp/",
    )
    value = token(
        signers.rsa, "RS256", "rsa-1", email="a@example.test", plan="premium", models=["m1"]
    )
    principal = setup.ring.authenticate(bearer(value))
    assert principal.name == "idp/a@example.test" and principal.tier == "premium"
    assert principal.limits == TIERS["premium"].limits and principal.priority == 2
    assert principal.may_use("m1") and not principal.may_use("m2")
    # No tier claim in the token: the default tier.
    default = setup.ring.authenticate(bearer(token(signers.rsa, "RS256", "rsa-1", email="b@x")))
    assert default.tier == "standard" and default.allowed_models is None


async def test_an_unknown_or_disallowed_tier_is_403(signers: Signers, key_file: JwksConfig) -> None:
    setup = await make_ring(
        key_file, claims={"tier": "tier"}, allowed_tiers=["standard", "premium"]
    )
    for tier in ("platinum", "unlimited", 7):
        with pytest.raises(PermissionDenied) as info:
            setup.ring.authenticate(bearer(token(signers.rsa, "RS256", "rsa-1", tier=tier)))
        assert info.value.code == "unknown_tier"


async def test_a_models_claim_must_be_a_list_of_names(
    signers: Signers, key_file: JwksConfig
) -> None:
    setup = await make_ring(key_file, claims={"models": "models"})
    value = token(signers.rsa, "RS256", "rsa-1", models="m1")
    assert "not a list of model names" in refused(setup, value).message


# -- the verified-token cache ----------------------------------------------------


async def test_a_verified_token_is_remembered_until_it_expires(
    signers: Signers, key_file: JwksConfig
) -> None:
    setup = await make_ring(key_file, leeway_s=0, cache_size=2)
    value = token(signers.rsa, "RS256", "rsa-1")
    first = setup.ring.authenticate(bearer(value))
    assert setup.ring.authenticate(bearer(value)) is first  # from the cache
    assert setup.authenticator.cached_tokens == 1
    for sub in ("b", "c"):
        setup.ring.authenticate(bearer(token(signers.rsa, "RS256", "rsa-1", sub=sub)))
    assert setup.authenticator.cached_tokens == 2  # bounded
    setup.clock.now = NOW + 600
    assert refused(setup, value).code == "token_expired"  # the cache honours exp


# -- the key set: file and URL, rotation, failures, the refresh rate limit -------


@dataclass
class Pki:
    ca: trustme.CA
    ca_file: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return Pki(ca, str(tmp_path / "ca.pem"))


class JwksServer:
    """A JWKS endpoint over https on loopback, in the test's own loop."""

    def __init__(self, body: bytes, pki: Pki):
        self.body = body
        self.status = 200
        self.fetches = 0
        self.fetched = asyncio.Event()
        self._pki = pki
        app = web.Application()
        app.router.add_get("/jwks.json", self._serve)
        self._runner = web.AppRunner(app, access_log=None)

    async def _serve(self, request: web.Request) -> web.Response:
        self.fetches += 1
        self.fetched.set()
        return web.Response(body=self.body, status=self.status, content_type="application/json")

    def config(self, **settings: Any) -> JwksConfig:
        port = self._runner.addresses[0][1]
        return JwksConfig(
            url=f"https://127.0.0.1:{port}/jwks.json",
            tls=TlsConfig(ca_file=self._pki.ca_file),
            **settings,
        )

    async def __aenter__(self) -> JwksServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._pki.server_context())
        await site.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


@contextlib.asynccontextmanager
async def served(body: bytes, pki: Pki) -> AsyncIterator[JwksServer]:
    async with JwksServer(body, pki) as server:
        yield server


async def test_keys_from_an_https_url(signers: Signers, pki: Pki) -> None:
    async with served(jwks(jwk(signers.ec, "ec-1")), pki) as server:
        setup = await make_ring(server.config())
        value = token(signers.ec, "ES256", "ec-1")
        assert (await setup.ring.authenticate_or_refresh(bearer(value))).name == "jwt:alice"
        assert server.fetches == 1


async def test_a_rotated_key_is_fetched_on_its_first_token(signers: Signers, pki: Pki) -> None:
    async with served(jwks(jwk(signers.rsa, "rsa-1")), pki) as server:
        setup = await make_ring(server.config(min_refetch_s=30))
        old = token(signers.rsa, "RS256", "rsa-1")
        assert (await setup.ring.authenticate_or_refresh(bearer(old))).name == "jwt:alice"
        # The provider rotates: the new key in, the old one withdrawn.
        server.body = jwks(jwk(signers.rsa_next, "rsa-2"))
        setup.fetch_clock.now += 30
        new = token(signers.rsa_next, "RS256", "rsa-2", sub="bob")
        assert (await setup.ring.authenticate_or_refresh(bearer(new))).name == "jwt:bob"
        assert server.fetches == 2
        # The old token was cached; the key set changed, so it is checked again.
        with pytest.raises(AuthenticationFailed, match="not known"):
            await setup.ring.authenticate_or_refresh(bearer(old))


async def test_unknown_kids_fetch_at_most_once_per_interval(signers: Signers, pki: Pki) -> None:
    async with served(jwks(jwk(signers.rsa, "rsa-1")), pki) as server:
        setup = await make_ring(server.config(min_refetch_s=30))
        assert server.fetches == 1
        setup.fetch_clock.now += 30

        async def attempt(n: int) -> None:
            with pytest.raises(AuthenticationFailed, match="not known"):
                value = token(signers.rsa, "RS256", f"made-up-{n}")
                await setup.ring.authenticate_or_refresh(bearer(value))

        await asyncio.gather(*(attempt(n) for n in range(20)))  # concurrent: one fetch
        for n in range(20, 40):  # one after another, within the interval: none
            await attempt(n)
        assert server.fetches == 2
        setup.fetch_clock.now += 29
        await attempt(40)
        assert server.fetches == 2
        setup.fetch_clock.now += 1
        await attempt(41)
        assert server.fetches == 3
        # A known kid never fetches.
        await setup.ring.authenticate_or_refresh(bearer(token(signers.rsa, "RS256", "rsa-1")))
        assert server.fetches == 3


@pytest.mark.parametrize("failure", ["status", "not a key set", "too large"])
async def test_a_failed_fetch_keeps_the_last_good_keys(
    signers: Signers, pki: Pki, failure: str
) -> None:
    async with served(jwks(jwk(signers.rsa, "rsa-1")), pki) as server:
        setup = await make_ring(server.config(max_bytes=4096))
        cache = setup.authenticator.jwks
        assert cache is not None
        if failure == "status":
            server.status = 503
        elif failure == "not a key set":
            server.body = b"<html>maintenance</html>"
        else:
            server.body = jwks(*[jwk(signers.rsa_next, f"k{n}") for n in range(20)])
        assert await cache.refresh() is False
        assert cache.kids == {"rsa-1"}
        value = token(signers.rsa, "RS256", "rsa-1")
        assert (await setup.ring.authenticate_or_refresh(bearer(value))).name == "jwt:alice"


class Silent(LoopbackServer):
    """Accepts connections and never answers (not even the TLS handshake)."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
        finally:
            writer.close()


async def test_a_hanging_jwks_url_times_out(pki: Pki) -> None:
    async with Silent() as silent:
        hanging = JwksConfig(
            url=f"https://127.0.0.1:{silent.port}/jwks.json",
            tls=TlsConfig(ca_file=pki.ca_file),
            timeout_s=0.2,
        )
        cache = JwksCache(jwks_source(hanging), refresh_s=300, min_refetch_s=30)
        began = time.monotonic()
        assert await cache.refresh() is False
        assert time.monotonic() - began < 2
        assert cache.kids == frozenset()


async def test_the_refresher_fetches_at_once_then_every_interval(
    signers: Signers, pki: Pki
) -> None:
    async with served(jwks(jwk(signers.rsa, "rsa-1")), pki) as server:
        settings = server.config(refresh_s=0.01)
        cache = JwksCache(jwks_source(settings), refresh_s=0.01, min_refetch_s=30)
        task = asyncio.create_task(cache.run_refresher())
        try:
            for _ in range(3):
                server.fetched.clear()
                await asyncio.wait_for(server.fetched.wait(), 5)
        finally:
            task.cancel()
            await asyncio.wait([task])
        assert server.fetches >= 3 and cache.kids == {"rsa-1"}


async def test_a_key_ring_refresher_runs_the_jwks_refresher(
    signers: Signers, key_file: JwksConfig
) -> None:
    config = JwtConfig(issuers=[ISSUER], audience=AUDIENCE, jwks=key_file)
    authenticator = JwtAuthenticator.from_config(config, TIERS)
    ring = KeyRing([], TIERS, jwt=authenticator)
    task = asyncio.create_task(ring.run_refresher(60))
    try:
        value = bearer(token(signers.rsa, "RS256", "rsa-1", at=time.time()))
        principal = await ring.authenticate_or_refresh(value)  # joins or makes the first load
        assert principal.name == "jwt:alice"
    finally:
        task.cancel()
        await asyncio.wait([task])


# -- the config ------------------------------------------------------------------


def raw_config(jwt_section: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "models": [{"name": "sim", "deployments": [{"id": "sim-1", "provider": "simulator"}]}],
        "keys": [{"name": "ops", "key": "sk-ops"}],
        "admission": {"jwt": {"issuers": [ISSUER], "audience": AUDIENCE, **jwt_section}},
        **top,
    }


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({"jwks": {"url": "http://idp.test/jwks"}}, "must be https"),
        ({"jwks": {"file": "a.json", "url": "https://idp.test/jwks"}}, "cannot read"),
        ({"jwks": {}}, "exactly one of"),
        ({}, "need `jwks`"),
        ({"algorithms": ["HS256"]}, "HS256 needs hs256_secret"),
        ({"algorithms": ["none"], "hs256_secret": "x" * 40}, "algorithms"),
        ({"algorithms": ["HS256"], "hs256_secret": "too-short"}, "at least 32 bytes"),
        ({"algorithms": ["HS256"], "hs256_secret": "x" * 40, "default_tier": "gold"}, "gold"),
    ],
)
def test_config_errors(section: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_config(raw_config(section), env={})


def test_the_hs256_secret_comes_from_the_environment_as_a_secret() -> None:
    section = {"algorithms": ["HS256"], "hs256_secret": "os.environ/JWT_SECRET"}
    config = parse_config(raw_config(section), env={"JWT_SECRET": HS_SECRET})
    jwt_config = config.admission.jwt
    # A ``Secret``: masked in repr, and scrubbed by the redactor like every other.
    assert jwt_config is not None and jwt_config.hs256_secret == Secret(HS_SECRET)
    assert HS_SECRET not in repr(config)


# -- end to end through the gateway ------------------------------------------------


@contextlib.contextmanager
def gateway(raw: dict[str, Any]) -> Iterator[httpx.Client]:
    running = InProcessGateway(create_app(parse_config(raw, env={})))
    try:
        with httpx.Client(base_url=running.base_url, timeout=10) as client:
            yield client
    finally:
        running.close()


def test_a_chat_request_with_a_jwt_gets_its_tiers_limits(
    signers: Signers, key_file: JwksConfig, tmp_path: Path
) -> None:
    raw = {
        "models": [
            {
                "name": "sim",
                "deployments": [
                    {"id": "sim-1", "provider": "simulator", "params": {"max_tokens": 8}}
                ],
            }
        ],
        "keys": [{"name": "alice", "key": "sk-alice", "tier": "unlimited"}],
        "server": {"access_log": False},
        # Shared by the module's tests: no batch worker opening pool connections mid-test.
        "batch": {"enabled": False},
        "registry": {"enabled": False},
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
        "tiers": {
            "unlimited": {},
            "standard": {"limits": {"rpm": 2}},
            "premium": {"limits": {"rpm": 100}},
        },
        "admission": {
            "jwt": {
                "issuers": [ISSUER],
                "audience": AUDIENCE,
                "jwks": {"file": key_file.file},
                "claims": {"tier": "tier", "models": "models"},
            }
        },
    }
    chat = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
    path = "/v1/chat/completions"
    now = time.time()
    standard = token(signers.rsa, "RS256", "rsa-1", at=now)
    other_models = token(signers.ec, "ES256", "ec-1", at=now, sub="bob", models=["other"])
    unknown_tier = token(signers.ec, "ES256", "ec-1", at=now, sub="carol", tier="gold")
    with gateway(raw) as client:
        replies = [
            client.post(path, json=chat, headers={"authorization": bearer(standard)})
            for _ in range(3)
        ]
        assert [r.status_code for r in replies] == [200, 200, 429]
        assert replies[0].json()["choices"][0]["message"]["content"]
        assert replies[0].headers["x-ratelimit-limit-requests"] == "2"
        assert replies[2].json()["error"]["code"] == "rate_limit_exceeded"
        # An API key named like the token's subject shares none of its limits.
        by_key = client.post(path, json=chat, headers={"authorization": "Bearer sk-alice"})
        assert by_key.status_code == 200
        models = client.get("/v1/models", headers={"authorization": bearer(standard)})
        assert models.status_code == 200
        denied = client.post(path, json=chat, headers={"authorization": bearer(other_models)})
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "model_not_allowed"
        gold = client.post(path, json=chat, headers={"authorization": bearer(unknown_tier)})
        assert gold.status_code == 403 and gold.json()["error"]["code"] == "unknown_tier"
        expired = token(signers.rsa, "RS256", "rsa-1", at=now - 3600)
        refused = client.post(path, json=chat, headers={"authorization": bearer(expired)})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "token_expired"
        assert expired not in refused.text
