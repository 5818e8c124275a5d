"""all-MiniLM-L6-v2 exported to ONNX and served by onnxruntime + ``TextEncoder``.

Always run: the refusals, without the model. With the ``injection-model``
extra (and onnx, onnxruntime; skipped without them, on CI too, where the
extra is not installed): one export per module, then the vectors against
sentence-transformers' on sentences short, long (cut at 256 word pieces)
and non-ASCII. Tolerances: per sentence, max absolute difference <= 1e-4
and cosine >= 0.9999 against ``SentenceTransformer.encode(
normalize_embeddings=True)``; a batch against one-by-one runs within 1e-5
(padding must not leak into the mean).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")

from interlock.engines.minilm_onnx import (  # noqa: E402
    CONFIG_FILE,
    INPUT_NAMES,
    MODEL_FILE,
    OUTPUT_NAME,
    TOKENIZER_FILE,
    TextEncoder,
    export_main,
    export_minilm,
)
from interlock.minilm import DIMENSIONS, MAX_TOKENS, MiniLMUnavailable  # noqa: E402

SENTENCES = [
    "Hi",
    "How do I reset my password?",
    "The recipe calls for two cups of flour, an egg and a pinch of salt.",
    "Grüße aus Köln: naïve café, résumé, Straße.",
    "東京は日本の首都です。",
    "Launch at 09:30 🚀 — don't be late! 🙂",
    "def f(x):\n    return x ** 2  # squares\n",
    # Well past 256 word pieces: both sides must cut at the same place.
    "The quick brown fox jumps over the lazy dog near the riverbank. " * 40,
]

Embed = Callable[[Sequence[str]], Any]


def test_export_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    with pytest.raises(MiniLMUnavailable, match=r"pip install 'interlock\[injection-model\]'"):
        export_minilm(tmp_path)
    assert not list(tmp_path.iterdir())


def test_cli_reports_a_missing_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    assert export_main(["--out", str(tmp_path / "out")]) == 1
    assert "injection-model" in capsys.readouterr().err


def test_encoder_refuses_a_folder_without_an_export(tmp_path: Path) -> None:
    with pytest.raises(MiniLMUnavailable, match="no exported model"):
        TextEncoder(tmp_path)


# -- the packaged model --------------------------------------------------------


@pytest.fixture(scope="module")
def encoder(exported: Path) -> TextEncoder:
    pytest.importorskip("tokenizers")
    return TextEncoder(exported)


@pytest.fixture(scope="module")
def embed(exported: Path, encoder: TextEncoder) -> Embed:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(exported / MODEL_FILE), providers=["CPUExecutionProvider"])

    def run(texts: Sequence[str]) -> Any:
        feeds = encoder.tokenize(texts)
        (hidden,) = session.run([OUTPUT_NAME], feeds)
        return encoder.pool(hidden, feeds["attention_mask"])

    return run


def test_export_writes_the_graph_tokenizer_and_settings(exported: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    assert (exported / TOKENIZER_FILE).is_file()
    config = json.loads((exported / CONFIG_FILE).read_text())
    assert config["pooling"] == "mean" and config["normalize"] is True
    assert (config["max_tokens"], config["dimensions"]) == (MAX_TOKENS, DIMENSIONS)
    assert config["model"] == "all-MiniLM-L6-v2"
    session = ort.InferenceSession(str(exported / MODEL_FILE), providers=["CPUExecutionProvider"])
    inputs = {arg.name: (arg.type, arg.shape) for arg in session.get_inputs()}
    assert inputs == {name: ("tensor(int64)", ["batch", "sequence"]) for name in INPUT_NAMES}
    (output,) = session.get_outputs()
    assert (output.name, output.type) == (OUTPUT_NAME, "tensor(float)")
    assert output.shape == ["batch", "sequence", DIMENSIONS]


def test_vectors_match_sentence_transformers(embed: Embed, reference: Any) -> None:
    got = embed(SENTENCES)
    want = np.asarray(reference.embed(SENTENCES), dtype=np.float32)
    assert got.shape == want.shape == (len(SENTENCES), DIMENSIONS)
    assert got.dtype == np.float32
    diff = np.abs(got - want).max(axis=1)
    assert (diff <= 1e-4).all(), diff
    cosine = (got * want).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert (cosine >= 0.9999).all(), cosine
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_token_counts_match_sentence_transformers(encoder: TextEncoder, reference: Any) -> None:
    counts = encoder.token_counts(SENTENCES)
    assert counts == reference.token_counts(SENTENCES)
    assert counts[-1] == MAX_TOKENS - 2  # truncated, [CLS] and [SEP] not counted
    assert encoder.token_counts([""]) == [0]


def test_tokenize_pads_to_the_longest_text(encoder: TextEncoder) -> None:
    feeds = encoder.tokenize(["Hi", "How do I reset my password?"])
    assert set(feeds) == set(INPUT_NAMES)
    counts = encoder.token_counts(["Hi", "How do I reset my password?"])
    for array in feeds.values():
        assert array.dtype == np.int64 and array.shape == (2, max(counts) + 2)
    assert feeds["attention_mask"].sum(axis=1).tolist() == [c + 2 for c in counts]
    assert feeds["input_ids"][0, counts[0] + 2 :].tolist() == [0] * (counts[1] - counts[0])
    assert encoder.tokenize(SENTENCES[-1:])["input_ids"].shape == (1, MAX_TOKENS)


def test_a_batch_gives_the_vectors_of_one_by_one_runs(embed: Embed) -> None:
    batched = embed(SENTENCES)
    alone = np.concatenate([embed([text]) for text in SENTENCES])
    assert np.abs(batched - alone).max() <= 1e-5
