from __future__ import annotations

from interlock.guardrails.pseudonyms import PseudonymVault
from interlock.guardrails.scanner import PiiScanner


def test_same_value_same_placeholder_numbered_per_type() -> None:
    vault = PseudonymVault()
    scanner = PiiScanner.for_types()
    text = "ann@example.com wrote to bob@example.org, cc ann@example.com, call 415-555-2671"
    masked = scanner.redact(text, vault.placeholder)
    assert masked == "[EMAIL_1] wrote to [EMAIL_2], cc [EMAIL_1], call [PHONE_1]"
    assert len(vault) == 3
    assert vault.restore(masked) == text


def test_restore_leaves_unknown_placeholders() -> None:
    vault = PseudonymVault()
    assert vault.restore("[EMAIL_1] and [CARD_2]") == "[EMAIL_1] and [CARD_2]"


def test_repr_never_shows_values() -> None:
    vault = PseudonymVault()
    PiiScanner.for_types().redact("ann@example.com", vault.placeholder)
    assert "ann" not in repr(vault) and "1 values" in repr(vault)
