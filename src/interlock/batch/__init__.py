"""Batch and async inference: the OpenAI Batches API and async jobs, run by
workers from a durable queue through the same pipeline as online requests."""
