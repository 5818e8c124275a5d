from __future__ import annotations

import base64
import json

import pytest

from interlock.guardrails.secrets import SecretDetector


def _jwt(header: dict[str, str]) -> str:
    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part(header)}.{part({'sub': '1234567890', 'name': 'Ann'})}.c2lnbmF0dXJlX2J5dGVz"


JWT = _jwt({"alg": "HS256", "typ": "JWT"})
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA75hb0xQ\nq0X1b2c3d4e5f6==\n"
    "-----END RSA PRIVATE KEY-----"
)
SECRETS = {
    "openai": "sk-proj-Ab3dEfGh1jKlMn0pQrStUvWx9z8y7x6w5v4u3t2s1r0q",
    "openai_legacy": "sk-Zx81Kd93Lw02Mq74Nb65Vc56Xa47Ys38Tf29Ug10Hi",
    "anthropic": "sk-ant-api03-Qw3rTy7uI9oP1aS2dF4gH6jK8lZ0xC",
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "github_token": "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "github_pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
    "slack": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
    "google": "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "stripe": "sk_live_51H8x2kLmNoPqRsTuVwXyZ0123",
    "jwt": JWT,
    "private_key": PEM,
}


@pytest.mark.parametrize(("label", "secret"), SECRETS.items())
def test_secret_found_with_label(label: str, secret: str) -> None:
    text = f"config: {secret}\nnext line"
    spans = SecretDetector().find(text)
    assert [(text[s.start : s.end], s.label) for s in spans][:1] == [
        (secret, label.replace("_legacy", ""))
    ]


def test_aws_secret_span_is_the_value_only() -> None:
    text = 'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"'
    [span] = SecretDetector().find(text)
    assert text[span.start : span.end] == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert span.label == "aws_secret_access_key"


def test_unterminated_pem_runs_to_the_end() -> None:
    text = "key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg"
    [span] = SecretDetector().find(text)
    assert (span.start, span.end) == (5, len(text))


@pytest.mark.parametrize(
    "text",
    [
        "use sk-learn for that",
        "sk-this-is-not-a-real-key-at-all-really",  # no digit or capital: prose
        "AKIA1234",  # too short
        "AKIAIOSFODNN7EXAMPLEX",  # too long
        "ghp_short",
        "eyJhbGciOi.eyJzdWIi.sig",  # header is not valid JSON
        _jwt({"typ": "JWT"}).replace(".", " . "),
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+g\n-----END CERTIFICATE-----",
    ],
)
def test_secret_look_alikes_ignored(text: str) -> None:
    assert SecretDetector().find(text) == []


def test_jwt_header_without_alg_ignored() -> None:
    assert SecretDetector().find(_jwt({"typ": "JWT", "kid": "k1"})) == []
