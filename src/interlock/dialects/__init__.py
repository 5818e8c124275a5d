"""Other API dialects, translated to and from OpenAI's Chat Completions shape
(the pipeline's own): Anthropic Messages, OpenAI Responses, legacy
Completions. Pure translation, no I/O: the edges in ``interlock.api`` read
requests and write answers; like them, nothing here imports the router or
the adapters (ADR 0009)."""
