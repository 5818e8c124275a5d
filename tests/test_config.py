from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from interlock.cli import main
from interlock.config import ConfigError, Secret, bundled_config_path, load_config, parse_config

VALID = """
models:
  - name: chat-small
    deployments:
      - id: sim-1
        provider: simulator
        params: {ttft_ms: 20, tokens_per_s: 400}
      - id: local-vllm
        provider: openai
        model: Qwen/Qwen2.5-0.5B-Instruct
        base_url: http://127.0.0.1:8000/v1
        api_key: os.environ/VLLM_API_KEY
keys:
  - name: dev
    key: os.environ/INTERLOCK_DEV_KEY
"""
ENV = {"VLLM_API_KEY": "vk", "INTERLOCK_DEV_KEY": "dk"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    return path


def test_issue_example_config_loads(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, VALID), env=ENV)
    vllm = config.models[0].deployments[1]
    assert vllm.api_key == Secret("vk")
    assert vllm.base_url == "http://127.0.0.1:8000/v1"
    assert config.keys[0].key.reveal() == "dk"
    assert config.server.max_request_body_bytes > 0


def test_secrets_are_masked_in_repr(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, VALID), env=ENV)
    assert "vk" not in repr(config) and "dk" not in repr(config)


def test_missing_environment_variable_names_file_and_path(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"INTERLOCK_DEV_KEY": "dk"})
    message = str(info.value)
    assert str(path) in message
    assert "models[0].deployments[1].api_key" in message
    assert "VLLM_API_KEY" in message


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        ({"provider": "nope"}, "models[0].deployments[0].provider"),
        ({"provider": "openai"}, "needs `model`"),
        ({"provider": "openai", "model": "m"}, "needs `base_url`"),
        ({"base_url": "ftp://x"}, "base_url must start with http"),
        ({"surprise": 1}, "models[0].deployments[0].surprise"),
    ],
)
def test_invalid_deployment_errors_name_the_path(
    mutation: dict[str, object], expected: str
) -> None:
    deployment = {"id": "d", "provider": "simulator", **mutation}
    raw = {
        "models": [{"name": "m", "deployments": [deployment]}],
        "keys": [{"name": "k", "key": "x"}],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "f.yaml", env={})
    assert "f.yaml" in str(info.value) and expected in str(info.value)


def test_duplicate_names_are_rejected() -> None:
    deployment = {"id": "d", "provider": "simulator"}
    raw = {
        "models": [{"name": "m", "deployments": [deployment]}, {"name": "m", "deployments": []}],
        "keys": [{"name": "k", "key": "x"}],
    }
    with pytest.raises(ConfigError):
        parse_config(raw, env={})


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(_write(tmp_path, "models: [unclosed"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path, "- a list"))


def test_bundled_default_is_valid() -> None:
    config = load_config(
        bundled_config_path(), env={"INTERLOCK_DEV_KEY": "k", "INTERLOCK_ADMIN_KEY": "a"}
    )
    assert all(d.provider == "simulator" for m in config.models for d in m.deployments)


def test_check_config_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config", str(_write(tmp_path, VALID))]) == 0
    assert "OK (1 models, 2 deployments)" in capsys.readouterr().out
    monkeypatch.delenv("VLLM_API_KEY")
    assert main(["check-config", str(_write(tmp_path, VALID))]) == 1
    assert "VLLM_API_KEY is not set" in capsys.readouterr().err


@pytest.fixture
def logging_kept() -> Iterator[None]:
    """``serve`` points the root logger at this test's stderr, which is closed
    after the test: every later test's log lines would hit a closed stream
    ("--- Logging error ---"). Its logging set-up is undone afterwards."""
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
    kept = [(logger, logger.handlers[:], logger.level, logger.propagate, logger.disabled)
            for logger in map(logging.getLogger, names)]  # fmt: skip
    yield
    for logger, handlers, level, propagate, disabled in kept:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate, logger.disabled = propagate, disabled


@pytest.mark.usefixtures("logging_kept")
def test_serve_reports_a_setting_found_only_at_build_as_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unusable proxy variable is found when the adapters are built, after
    the file loaded: still one line on stderr and exit 1, no traceback."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.invalid:1080")
    assert main(["serve", "--config", str(_write(tmp_path, VALID)), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "HTTPS_PROXY" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ({"trip_after": 0}, "state.health.trip_after"),
        ({"probe_after_s": 10, "probe_max_s": 5}, "must not exceed"),
        ({"probes": 1}, "state.health.probes"),
    ],
)
def test_state_health_settings_are_checked(health: dict[str, object], expected: str) -> None:
    raw = {
        "models": [{"name": "m", "deployments": [{"id": "d", "provider": "simulator"}]}],
        "keys": [{"name": "k", "key": "x"}],
        "state": {"backend": "redis", "url": "redis://127.0.0.1:6379/0", "health": health},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={})
    assert expected in str(info.value)
    raw["state"] = {"backend": "redis", "url": "redis://127.0.0.1:6379/0"}
    assert parse_config(raw, env={}).state.health.trip_after == 3


@pytest.mark.parametrize(
    ("deployment", "native"),
    [
        ({"provider": "openai", "base_url": "https://api.openai.com/v1"}, True),
        # vLLM, Ollama and the like share the provider and have no custom tools.
        ({"provider": "openai", "base_url": "http://127.0.0.1:8000/v1"}, False),
        ({"provider": "azure", "base_url": "https://r.openai.azure.com"}, False),
        (
            {
                "provider": "azure",
                "base_url": "https://r.openai.azure.com",
                "custom_tools": "native",
            },
            True,
        ),
        (
            {
                "provider": "openai",
                "base_url": "https://api.openai.com/v1",
                "custom_tools": "function",
            },
            False,
        ),
        ({"provider": "anthropic"}, False),
    ],
)
def test_custom_tools_are_native_only_where_the_upstream_takes_them(
    deployment: dict[str, object], native: bool
) -> None:
    raw = {
        "models": [{"name": "m", "deployments": [{"id": "d", "model": "x", **deployment}]}],
        "keys": [{"name": "k", "key": "sk-test-custom-tools"}],
    }
    [model] = parse_config(raw, env={}).models
    assert model.deployments[0].native_custom_tools is native
