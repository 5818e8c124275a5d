"""Uploaded files (the OpenAI Files API): what a batch input file must be."""
