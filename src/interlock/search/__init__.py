"""The AI search service: a query's results at once, then a summary citing
them, streamed token by token. A client of the gateway's own pipeline
(admission, guardrails, cache, router, telemetry, ledger), never a bypass.

- ``backends/``: where results come from, behind one interface (``base.py``):
  the embedded local index (SQLite FTS5, BM25), web search APIs, OpenSearch.
"""
