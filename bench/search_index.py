"""The local search index at scale: build rate and query latency.

Generates synthetic documents (deterministic: a fixed seed) whose words are
drawn from the bundled corpus's vocabulary with Zipf weights (the word of
rank r has weight 1/r, as in natural text), builds an index of them with
``IndexWriter`` (the code ``interlock search index`` runs), then times
``LocalSearchBackend.search`` (its async API: thread pool, FTS5 BM25,
snippets) on queries of 2-5 content words, one at a time, then 8 at once.
The issue's target: query p95 <= 20 ms on 100,000 documents.

Run: ``python bench/search_index.py [--docs 100000] [--queries 1000]``;
writes ``bench/results/search_index.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import random
import re
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from interlock.search.backends.local import LocalSearchBackend
from interlock.search.index import IndexWriter, bundled_corpus, ensure_index
from interlock.search.query import RANK_BUDGET, STOPWORDS
from interlock.search.sources import Document

OUT = Path(__file__).parent / "results" / "search_index.md"
SEED = 14
CONCURRENCY = 8


@dataclass(frozen=True)
class Vocabulary:
    words: list[str]
    cum_weights: list[float]
    content: list[str]  # the same, without stopwords: what queries are made of
    content_cum: list[float]


def vocabulary() -> Vocabulary:
    counts = Counter(
        word.casefold()
        for doc in bundled_corpus()
        for word in re.findall(r"[^\W\d_]+", f"{doc.title} {doc.body}")
    )
    words = [w for w, _ in counts.most_common()]
    content = [w for w in words if w not in STOPWORDS and len(w) > 2]
    return Vocabulary(words, _zipf(len(words)), content, _zipf(len(content)))


def _zipf(n: int) -> list[float]:
    return list(itertools.accumulate(1.0 / rank for rank in range(1, n + 1)))


def documents(vocab: Vocabulary, count: int) -> Iterator[Document]:
    rng = random.Random(SEED)
    for i in range(count):
        title = rng.choices(vocab.content, cum_weights=vocab.content_cum, k=rng.randint(2, 6))
        body = rng.choices(vocab.words, cum_weights=vocab.cum_weights, k=rng.randint(80, 200))
        yield Document(
            title=" ".join(title).capitalize(),
            url=f"https://interlock.invalid/synthetic/{i}",
            body=" ".join(body).capitalize() + ".",
        )


def queries(vocab: Vocabulary, count: int) -> list[str]:
    rng = random.Random(SEED + 1)
    return [
        " ".join(rng.choices(vocab.content, cum_weights=vocab.content_cum, k=rng.randint(2, 5)))
        for _ in range(count)
    ]


def build(path: Path, vocab: Vocabulary, count: int) -> tuple[float, float]:
    """Seconds to insert ``count`` documents, and to optimise the index after."""
    started = time.perf_counter()
    with IndexWriter(path) as writer:
        writer.add_all(documents(vocab, count))
        inserted = time.perf_counter()
        writer.optimize()
    return inserted - started, time.perf_counter() - inserted


async def latencies(backend: LocalSearchBackend, qs: list[str], concurrency: int) -> list[float]:
    """Milliseconds per search, ``concurrency`` searches in flight at a time."""
    results: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(query: str) -> None:
        async with gate:
            started = time.perf_counter()
            await backend.search(query, 10, safe_search=False)
            results.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(one(q) for q in qs))
    return results


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": max(values)}


async def measure(path: Path, qs: list[str]) -> dict[str, dict[str, float]]:
    runs: dict[str, dict[str, float]] = {}
    # Before: every term OR'ed and ranked (no budget); after: the default budget.
    for label, budget in (("no rank budget", 10**12), (f"rank budget {RANK_BUDGET:,}", None)):
        backend = LocalSearchBackend(
            path, threads=CONCURRENCY, rank_budget=budget if budget else RANK_BUDGET
        )
        try:
            await latencies(backend, qs[:100], 1)  # warm: page cache, connections, counts
            runs[f"{label}, one at a time"] = percentiles(await latencies(backend, qs, 1))
            started = time.perf_counter()
            parallel = await latencies(backend, qs, CONCURRENCY)
            qps = len(qs) / (time.perf_counter() - started)
            runs[f"{label}, {CONCURRENCY} at once"] = {**percentiles(parallel), "qps": qps}
        finally:
            await backend.close()
    return runs


def first_start() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ensure_index(Path(tmp) / "search-index.sqlite3")
        return time.perf_counter() - started


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    import sqlite3

    return (
        f"{cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; {platform.system()} {platform.release()}"
    )


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True)
        return out.stdout.decode().strip() or "unknown"
    except OSError:
        return "unknown"


def report(args: argparse.Namespace) -> str:
    vocab = vocabulary()
    qs = queries(vocab, args.queries)
    first = min(first_start() for _ in range(3))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.sqlite3"
        insert_s, optimize_s = build(path, vocab, args.docs)
        size_mb = path.stat().st_size / 1e6
        runs = asyncio.run(measure(path, qs))
    lines = [
        "# Local search index: build rate and query latency",
        "",
        f"`python bench/search_index.py --docs {args.docs} --queries {args.queries}` "
        f"({datetime.now(UTC):%Y-%m-%d}, commit {_commit()})",
        "",
        f"Machine: {_machine()}.",
        "",
        f"Documents: {args.docs:,} synthetic, 80-200 words (titles 2-6), drawn with "
        f"Zipf weights from the bundled corpus's {len(vocab.words):,}-word vocabulary; "
        f"index file {size_mb:,.0f} MB. Queries: {len(qs):,} of 2-5 content words "
        "(Zipf-weighted, stopwords excluded), 10 results each with snippets, through "
        "`LocalSearchBackend.search` (async API, thread pool).",
        "",
        "## Build",
        "",
        "| phase | seconds | docs/s |",
        "|---|---:|---:|",
        f"| insert ({args.docs:,} docs, 1,000 a transaction) | {insert_s:.1f} "
        f"| {args.docs / insert_s:,.0f} |",
        f"| optimize (merge FTS5 segments) | {optimize_s:.1f} | |",
        f"| total | {insert_s + optimize_s:.1f} | {args.docs / (insert_s + optimize_s):,.0f} |",
        "",
        f"First start (bundled corpus, 314 articles, into a new file): {first * 1000:.0f} ms "
        "(best of 3).",
        "",
        "## Query latency (ms)",
        "",
        "| run | p50 | p95 | p99 | max | queries/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, cuts in runs.items():
        qps = f"{cuts['qps']:,.0f}" if "qps" in cuts else ""
        lines.append(
            f"| {name} | {cuts['p50']:.2f} | {cuts['p95']:.2f} | {cuts['p99']:.2f} "
            f"| {cuts['max']:.2f} | {qps} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    text = report(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
