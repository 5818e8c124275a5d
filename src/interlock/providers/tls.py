"""The TLS context of one deployment's https connections."""

from __future__ import annotations

import ssl

from interlock.config import TlsConfig

__all__ = ["client_context"]


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """Certificate checks per ``tls`` (the config has already read its files).
    One per deployment, shared by its pools: loading the system's CA store
    costs about 30 ms, too much per pool, let alone per connection."""
    # With ca_file, its CAs replace the system store (create_default_context
    # loads the defaults only when given no CA file).
    context = ssl.create_default_context(cafile=tls.ca_file)
    if not tls.verify:
        context.check_hostname = False  # before verify_mode, which it would pin
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert is not None:
        # A password, even empty, keeps OpenSSL from prompting on a terminal.
        context.load_cert_chain(tls.client_cert, tls.client_key, password=b"")
    return context
