"""How a deployment's connections are made: TLS settings and HTTP proxies."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from pydantic import field_validator, model_validator

from interlock.config.base import _Strict

__all__ = ["ProxyURL", "TlsConfig"]


class TlsConfig(_Strict):
    """Certificate checks for an https upstream, e.g. one behind a private CA."""

    # false: no certificate or host name check at all. Unsafe: anyone on the
    # path can read and change the traffic. Logged as a warning at start.
    verify: bool = True
    # A PEM bundle of CA certificates trusted instead of the system's store.
    ca_file: str | None = None
    # A client certificate for servers that require one (mutual TLS): a PEM file
    # with the certificate chain, and its key too unless client_key is set.
    client_cert: str | None = None
    # The client certificate's private key (PEM, unencrypted), when not in client_cert's file.
    client_key: str | None = None

    @field_validator("ca_file", "client_cert", "client_key")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                with open(value, "rb"):
                    pass
            except OSError as exc:
                raise ValueError(f"cannot read {value}: {exc.strerror}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TlsConfig:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert (the certificate it belongs to)")
        if self.ca_file is not None and not self.verify:
            raise ValueError("ca_file has no effect with verify: false; remove one of them")
        _load_pem_files(self)
        return self


def _load_pem_files(tls: TlsConfig) -> None:
    """Read the PEM files into a throwaway context, so a bad file fails at
    config load (and in ``interlock check-config``), naming the file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.ca_file)
        except ssl.SSLError as exc:
            raise ValueError(f"ca_file {tls.ca_file}: no PEM certificate in it ({exc})") from None
    if tls.client_cert is not None:
        try:
            # A password, even empty, stops OpenSSL prompting on the terminal
            # for an encrypted key; such a key fails here instead.
            context.load_cert_chain(tls.client_cert, tls.client_key, password=b"")
        except ssl.SSLError as exc:
            raise ValueError(
                f"client_cert {tls.client_cert} / client_key {tls.client_key or '(same file)'}: "
                f"not a PEM certificate with its unencrypted key ({exc})"
            ) from None


@dataclass(frozen=True, slots=True)
class ProxyURL:
    """An HTTP proxy and the credentials it wants. Shows as ``http://host:port``:
    the credentials never appear in ``str``, ``repr`` or error messages."""

    host: str
    port: int
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> ProxyURL:
        """``[http://][user:password@]host[:port]``: no scheme means http://
        and no port means 80, as curl and requests read proxy variables.
        Errors never quote ``url``: it may hold a password."""
        url = url.strip()
        if not url:
            raise ValueError("the proxy URL is empty")
        parts = urlsplit(url if "://" in url else f"http://{url}")
        scheme = parts.scheme.lower()
        if scheme == "https":
            raise ValueError(
                "https:// proxies (TLS to the proxy itself) are not supported; "
                "an http:// proxy still carries https upstreams end to end encrypted"
            )
        if scheme != "http":
            raise ValueError(f"only http:// proxies are supported, not {scheme}://")
        if not parts.hostname:
            raise ValueError("the proxy URL has no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("a proxy URL is scheme, host and port only (no path)")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError("the proxy URL's port is not a number from 1 to 65535")
        return cls(
            parts.hostname,
            port or 80,
            unquote(parts.username or ""),
            unquote(parts.password or ""),
        )
