"""JSON Web Key Sets: the public keys JWTs are checked against, from a file or
an https URL, cached in memory and refreshed.

- **At an interval** (``refresh_s``): ``run_refresher``, from the gateway's
  start (a URL's first fetch happens then, not at config load).
- **On a token whose ``kid`` is unknown**: ``refresh_for_unknown_kid``, at
  most once per ``min_refetch_s`` counted from the last fetch of any kind, so
  a flood of tokens with made-up key ids costs at most one fetch per
  interval. Callers arriving while a fetch is in flight share it.
- **A failed fetch** (timeout, error status, over ``max_bytes``, not a key
  set) keeps the last good keys and is logged; the next try is the next
  interval or unknown ``kid`` allowed by the rate limit.

Only keys that can verify a signature are kept: RSA and EC public keys with a
``kid``, ``use`` absent or ``sig``. Symmetric (``oct``) keys are skipped: HS256
is checked against the configured secret alone, never against a key a URL
handed us.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from interlock.config import JwksConfig
from interlock.providers.h1 import ConnectionPool, H1Error, encode_head, header_block, split_url
from interlock.providers.tls import client_context

__all__ = ["JwksCache", "JwksError", "VerifyKey", "jwks_source", "parse_jwks"]

log = logging.getLogger("interlock.jwt")


class JwksError(Exception):
    """The key set could not be read: the message says why, for the log."""


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """One public key of the set, ready to verify signatures."""

    kid: str
    kty: str  # "RSA" or "EC"
    crv: str | None  # an EC key's curve: "P-256", "P-384"
    alg: str | None  # the algorithm the JWK names itself, if any
    key: RSAPublicKey | EllipticCurvePublicKey


def parse_jwks(data: bytes) -> dict[str, VerifyKey]:
    """The usable keys of a JWKS document by ``kid``; ``JwksError`` if it is
    not a key set at all. Keys that cannot verify are left out, not fatal."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise JwksError(f"not JSON: {exc}") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksError("not a JWKS: no `keys` list")
    keys: dict[str, VerifyKey] = {}
    for entry in entries:
        key = _verify_key(entry)
        if key is not None:
            keys[key.kid] = key
    return keys


def _verify_key(entry: object) -> VerifyKey | None:
    if not isinstance(entry, dict):
        return None
    kid, kty, alg = entry.get("kid"), entry.get("kty"), entry.get("alg")
    if not isinstance(kid, str) or not kid or entry.get("use", "sig") != "sig":
        return None
    if alg is not None and not isinstance(alg, str):
        return None
    try:
        if kty == "RSA":
            rsa = RSAAlgorithm.from_jwk(entry)
            public = rsa.public_key() if not isinstance(rsa, RSAPublicKey) else rsa
            return VerifyKey(kid, "RSA", None, alg, public)
        if kty == "EC":
            ec = ECAlgorithm.from_jwk(entry)
            public_ec = ec if isinstance(ec, EllipticCurvePublicKey) else ec.public_key()
            return VerifyKey(kid, "EC", str(entry.get("crv")), alg, public_ec)
    except (InvalidKeyError, ValueError, TypeError, KeyError):
        return None
    return None  # oct (HS256 comes from the config only), OKP and others


class JwksSource(Protocol):
    """Where the key set's bytes come from."""

    where: str  # for log lines

    async def load(self) -> bytes: ...


class JwksFile:
    def __init__(self, path: str, max_bytes: int):
        self.where = path
        self._path = path
        self._max_bytes = max_bytes

    async def load(self) -> bytes:
        # Off the loop: a file on a network mount can be slow.
        return await asyncio.to_thread(self._read)

    def _read(self) -> bytes:
        try:
            with open(self._path, "rb") as f:
                data = f.read(self._max_bytes + 1)
        except OSError as exc:
            raise JwksError(f"cannot read: {exc.strerror}") from None
        if len(data) > self._max_bytes:
            raise JwksError(f"over {self._max_bytes} bytes")
        return data


class JwksUrl:
    """One GET per fetch, on a connection of its own, under ``timeout_s`` in all."""

    def __init__(self, url: str, timeout_s: float, max_bytes: int, ssl_context: ssl.SSLContext):
        self.where = url
        self._origin, target = split_url(url)
        block = header_block(
            {
                "host": self._origin.host_header,
                "accept": "application/json",
                "user-agent": "interlock",
            }
        )
        self._head = encode_head("GET", target, block, None)
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._ssl = ssl_context

    async def load(self) -> bytes:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._get()
        except TimeoutError:
            raise JwksError(f"no answer within {self._timeout_s:g} s") from None
        except (H1Error, OSError, ValueError) as exc:  # ValueError: a bad content-length
            raise JwksError(str(exc)) from None

    async def _get(self) -> bytes:
        limit = self._max_bytes
        pool = ConnectionPool(self._origin, 1, self._timeout_s, ssl_context=self._ssl)
        try:
            response = await pool.request(self._head, None, self._timeout_s, self._timeout_s)
            try:
                if response.status != 200:
                    raise JwksError(f"HTTP {response.status}")
                if int(response.headers.get("content-length") or 0) > limit:
                    raise JwksError(f"over {limit} bytes")
                body = bytearray()
                while chunk := await response.readany():
                    body += chunk
                    if len(body) > limit:
                        raise JwksError(f"over {limit} bytes")
                return bytes(body)
            finally:
                response.close()  # a no-op once the body is complete
        finally:
            await pool.aclose()


def jwks_source(config: JwksConfig) -> JwksSource:
    if config.file is not None:
        return JwksFile(config.file, config.max_bytes)
    assert config.url is not None  # the config checked that one of them is set
    return JwksUrl(config.url, config.timeout_s, config.max_bytes, client_context(config.tls))


class JwksCache:
    """The current keys by ``kid``, and when to fetch them again.

    ``version`` goes up whenever the set of keys changes, so holders of
    anything verified with the old set (the token cache) know to drop it."""

    def __init__(
        self,
        source: JwksSource,
        *,
        refresh_s: float,
        min_refetch_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._source = source
        self._refresh_s = refresh_s
        self._min_refetch_s = min_refetch_s
        self._clock = clock
        self._keys: Mapping[str, VerifyKey] = {}
        self._fetched_at: float | None = None  # the last try, whatever came of it
        self._in_flight: asyncio.Future[bool] | None = None
        self.version = 0

    def get(self, kid: str) -> VerifyKey | None:
        return self._keys.get(kid)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    async def refresh(self) -> bool:
        """Fetch now (or join the fetch in flight); True if it succeeded."""
        if self._in_flight is not None:
            return await asyncio.shield(self._in_flight)
        future = self._in_flight = asyncio.get_running_loop().create_future()
        self._fetched_at = self._clock()
        try:
            ok = await self._fetch()
        except BaseException:
            future.set_result(False)  # a cancelled fetch: the joiners see a failure
            raise
        finally:
            self._in_flight = None
        future.set_result(ok)
        return ok

    async def refresh_for_unknown_kid(self) -> bool:
        """Fetch for a token whose ``kid`` is unknown, if the last fetch is at
        least ``min_refetch_s`` old (or join one in flight). True if keys
        were fetched; the caller looks its ``kid`` up again."""
        if self._in_flight is None:
            last = self._fetched_at
            if last is not None and self._clock() - last < self._min_refetch_s:
                return False
        return await self.refresh()

    async def run_refresher(self) -> None:
        """Fetch at once, then every ``refresh_s``; failures are logged by ``refresh``."""
        while True:
            try:
                await self.refresh()
            except Exception:  # our own bug: logged, and the keys so far kept
                log.exception("JWKS refresh failed", extra={"jwks": self._source.where})
            await asyncio.sleep(self._refresh_s)

    async def _fetch(self) -> bool:
        try:
            keys = parse_jwks(await self._source.load())
        except JwksError as exc:
            log.warning(
                "JWKS refresh failed; keeping the last good keys",
                extra={"jwks": self._source.where, "error": str(exc), "keys": len(self._keys)},
            )
            return False
        if keys.keys() != self._keys.keys() or any(keys[kid] != self._keys[kid] for kid in keys):
            self._keys = keys
            self.version += 1
            log.info("JWKS loaded", extra={"jwks": self._source.where, "keys": len(keys)})
        return True
