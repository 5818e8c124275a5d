"""A deployment's `tls`, `proxy` and `trust_env` settings, validated at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from interlock.config import ConfigError, ProxyURL, TlsConfig, load_config, parse_config

EXAMPLE = """
models:
  - name: internal
    deployments:
      - id: vllm-internal
        provider: openai
        model: meta-llama/Llama-3.1-8B-Instruct
        base_url: https://vllm.internal:8443/v1
        tls:
          ca_file: {dir}/ca.pem
          client_cert: {dir}/gateway.pem
          client_key: {dir}/gateway.key
        proxy: os.environ/CORP_PROXY
      - id: vllm-direct
        provider: openai
        model: meta-llama/Llama-3.1-8B-Instruct
        base_url: http://10.0.0.7:8000/v1
        trust_env: false
keys:
  - name: dev
    key: os.environ/DEV_KEY
"""


@pytest.fixture
def pem_dir(tmp_path: Path) -> Path:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaf = ca.issue_cert("gateway.internal")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "gateway.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "gateway.key"))
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    encrypted = serialization.BestAvailableEncryption(b"passphrase")
    pkcs8 = serialization.PrivateFormat.PKCS8
    (tmp_path / "encrypted.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, pkcs8, encrypted)
    )
    return tmp_path


def config_with(tls: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    deployment: dict[str, Any] = {
        "id": "d",
        "provider": "openai",
        "model": "m",
        "base_url": "https://x/v1",
    }
    if tls is not None:
        deployment["tls"] = tls
    return {
        "models": [{"name": "m", "deployments": [{**deployment, **settings}]}],
        "keys": [{"name": "k", "key": "sk-test"}],
    }


def test_the_readme_example_loads(pem_dir: Path) -> None:
    path = pem_dir / "gw.yaml"
    path.write_text(EXAMPLE.format(dir=pem_dir))
    env = {"CORP_PROXY": "http://gw:s3cret@proxy.corp:3128", "DEV_KEY": "dk"}
    config = load_config(path, env=env)
    internal, direct = config.models[0].deployments
    assert internal.tls == TlsConfig(
        ca_file=f"{pem_dir}/ca.pem",
        client_cert=f"{pem_dir}/gateway.pem",
        client_key=f"{pem_dir}/gateway.key",
    )
    assert internal.proxy == ProxyURL("proxy.corp", 3128, "gw", "s3cret")
    assert internal.trust_env and not direct.trust_env and direct.proxy is None
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("tls", "where", "problem"),
    [
        ({"ca_file": "{dir}/missing.pem"}, "tls.ca_file", "cannot read {dir}/missing.pem"),
        ({"ca_file": "{dir}"}, "tls.ca_file", "Is a directory"),
        ({"ca_file": "{dir}/gateway.key"}, "tls", "ca_file {dir}/gateway.key: no PEM certificate"),
        ({"client_key": "{dir}/gateway.key"}, "tls", "client_key needs client_cert"),
        (
            {"client_cert": "{dir}/gateway.pem"},  # the key is in neither file
            "tls",
            "client_cert {dir}/gateway.pem / client_key (same file): not a PEM certificate",
        ),
        (
            {"client_cert": "{dir}/gateway.pem", "client_key": "{dir}/encrypted.key"},
            "tls",
            "not a PEM certificate with its unencrypted key",  # and no passphrase prompt
        ),
        ({"verify": False, "ca_file": "{dir}/ca.pem"}, "tls", "ca_file has no effect"),
    ],
)
def test_tls_errors_name_the_path_and_the_file(
    pem_dir: Path, tls: dict[str, Any], where: str, problem: str
) -> None:
    tls = {k: v.format(dir=pem_dir) if isinstance(v, str) else v for k, v in tls.items()}
    with pytest.raises(ConfigError) as info:
        parse_config(config_with(tls), "gw.yaml")
    message = str(info.value)
    assert f"gw.yaml: models[0].deployments[0].{where}: " in message
    assert problem.format(dir=pem_dir) in message


@pytest.mark.parametrize(
    ("proxy", "problem"),
    [
        ("socks5://gw:s3cret@proxy:1080", "only http:// proxies are supported"),
        ("http://gw:s3cret@proxy:3128/some/path", "no path"),
        ("", "empty"),
        (3128, "proxy must be a URL"),
    ],
)
def test_proxy_errors_name_the_path_not_the_password(proxy: object, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config_with(proxy=proxy), "gw.yaml")
    message = str(info.value)
    assert "gw.yaml: models[0].deployments[0].proxy: " in message and problem in message
    assert "s3cret" not in message
