from __future__ import annotations

import random

import pytest

from interlock.guardrails.pseudonyms import PseudonymVault
from interlock.guardrails.scanner import PiiScanner
from interlock.guardrails.spans import Span
from interlock.guardrails.stream import ChainedFilter, StreamRedactor, StreamRestorer, TextFilter

from .test_secrets import JWT, PEM, SECRETS

SCANNER = PiiScanner.for_types()
VALUES = [
    "john.doe@example.com",
    "(415) 555-2671",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "123-45-6789",
    "192.168.1.10",
    "2001:db8::8a2e:370:7334",
    "DE89 3704 0044 0532 0130 00",
    SECRETS["openai"],
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    JWT,
    PEM,
]


def _stream(filter_: TextFilter, chunks: list[str]) -> str:
    return "".join(filter_.feed(chunk) for chunk in chunks) + filter_.flush()


@pytest.mark.parametrize("value", VALUES)
def test_value_split_at_every_point_is_redacted_like_one_shot(value: str) -> None:
    text = f"Reach me: {value}. Thanks!"
    expected = SCANNER.redact(text)
    assert value not in expected
    for cut in range(1, len(text)):
        assert _stream(StreamRedactor(SCANNER), [text[:cut], text[cut:]]) == expected, cut
    assert _stream(StreamRedactor(SCANNER), list(text)) == expected


def test_random_chunkings_match_one_shot_redaction() -> None:
    rng = random.Random(7)
    separators = [" ", ". ", ", ", "\n", " and ", "; call "]
    for _ in range(300):
        parts = [rng.choice(VALUES) + rng.choice(separators) for _ in range(rng.randint(1, 4))]
        text = "Note: " + "".join(parts)
        chunks, i = [], 0
        while i < len(text):
            size = rng.randint(1, 9)
            chunks.append(text[i : i + size])
            i += size
        assert _stream(StreamRedactor(SCANNER), chunks) == SCANNER.redact(text)


def test_plain_text_is_not_held_past_a_boundary() -> None:
    redactor = StreamRedactor(SCANNER)
    assert redactor.feed("Hello there, ") == "Hello there, "
    assert redactor.feed("world") == ""  # a word could still become an e-mail
    assert redactor.feed("! ") == "world! "
    assert redactor.held == 0


def test_look_alikes_flush_once_settled() -> None:
    redactor = StreamRedactor(SCANNER)
    out = redactor.feed("Build 2024-01-05 v1.2.3 ok. ")
    assert out == "Build 2024-01-05 v1.2.3 ok. "


def test_hold_is_bounded_for_long_runs() -> None:
    redactor = StreamRedactor(SCANNER, max_hold=64)
    sent = []
    for _ in range(100):
        sent.append(redactor.feed("1 2 3 4 5 "))
        assert redactor.held <= 64
    assert "".join(sent) + redactor.flush() == "1 2 3 4 5 " * 100


def test_long_key_is_replaced_early_and_never_leaks() -> None:
    key = "sk-proj-" + "Ab3dEfGh1jKlMn0pQrStUvWx" * 7  # 176 characters: longer than any hold
    redactor = StreamRedactor(SCANNER, max_hold=32)
    sent = ""
    for char in f"key {key} end":
        sent += redactor.feed(char)
        assert redactor.held <= 32
        assert "Ab3dEf" not in sent
    sent += redactor.flush()
    assert sent == "key [SECRET] end"


def test_pem_block_across_chunks() -> None:
    text = f"here:\n{PEM}\nbye"
    for size in (1, 3, 7, 20):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert _stream(StreamRedactor(SCANNER), chunks) == "here:\n[SECRET]\nbye"


def test_unfinished_value_is_flushed_redacted_at_the_end() -> None:
    redactor = StreamRedactor(SCANNER)
    assert redactor.feed("mail ann@example.co") == "mail "
    assert redactor.flush() == "[EMAIL]"
    assert redactor.redacted == {"EMAIL": 1}


def test_custom_label() -> None:
    redactor = StreamRedactor(SCANNER, label=lambda span: "***")
    assert _stream(redactor, ["ssn 123-45-", "6789 ok"]) == "ssn *** ok"


def test_max_hold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StreamRedactor(SCANNER, max_hold=0)


def _vault(*values: tuple[str, str]) -> PseudonymVault:
    vault = PseudonymVault()
    for kind, value in values:
        vault.placeholder(Span(0, 0, kind), value)
    return vault


def test_restorer_handles_placeholders_split_at_every_point() -> None:
    vault = _vault(("EMAIL", "ann@example.com"), ("US_SSN", "123-45-6789"))
    text = "Dear [EMAIL_1], your SSN [US_SSN_1] is on file; [EMAIL_9] and [NOTE] stay."
    expected = "Dear ann@example.com, your SSN 123-45-6789 is on file; [EMAIL_9] and [NOTE] stay."
    for cut in range(1, len(text)):
        assert _stream(StreamRestorer(vault), [text[:cut], text[cut:]]) == expected, cut
    assert _stream(StreamRestorer(vault), list(text)) == expected


def test_restorer_does_not_hold_ordinary_brackets() -> None:
    restorer = StreamRestorer(_vault(("EMAIL", "a@b.co")))
    assert restorer.feed("list [1, 2] and ") == "list [1, 2] and "
    assert restorer.feed("[EMA") == ""
    assert restorer.feed("IL_1].") == "a@b.co."


def test_chained_redacts_new_values_and_restores_pseudonyms() -> None:
    vault = _vault(("EMAIL", "ann@example.com"))
    chained = ChainedFilter(StreamRedactor(SCANNER), StreamRestorer(vault))
    text = "Forwarding [EMAIL_1] to bob@example.org now."
    chunks = [text[i : i + 4] for i in range(0, len(text), 4)]
    assert _stream(chained, chunks) == "Forwarding ann@example.com to [EMAIL] now."
