"""MkDocs hooks (``hooks:`` in mkdocs.yml): the generated reference pages
(``config_reference.py``, ``api_reference.py``, and ``openapi.json``), and
the repository's files the documentation links to outside ``docs/``
(``outside_links.py``). MkDocs puts this directory on ``sys.path`` while it
loads a hook, so the siblings import by name."""

from __future__ import annotations

import json

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from api_reference import OPENAPI_FILE, api_page, openapi_document
from config_reference import config_sections, configuration_page
from outside_links import mirror, rewrite_links

__all__ = [
    "api_page",
    "config_sections",
    "configuration_page",
    "on_files",
    "on_page_markdown",
    "openapi_document",
    "rewrite_links",
]

CONFIG_PAGE = "reference/configuration.md"
API_PAGE = "reference/api.md"
CLI_PAGE = "cli.md"  # written apart; this stands in while it is missing
CLI_PLACEHOLDER = """# CLI

The CLI reference is generated from `interlock --help` (and each
subcommand's `--help`); run `interlock --help` for it.
"""


def on_files(files: Files, config: MkDocsConfig) -> Files:
    document = openapi_document()
    files.append(File.generated(config, CONFIG_PAGE, content=configuration_page()))
    files.append(File.generated(config, API_PAGE, content=api_page(document)))
    content = json.dumps(document, indent=2, sort_keys=False) + "\n"
    files.append(File.generated(config, OPENAPI_FILE, content=content))
    if files.get_file_from_path(CLI_PAGE) is None:
        files.append(File.generated(config, CLI_PAGE, content=CLI_PLACEHOLDER))
    mirror(files, config)
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    return rewrite_links(markdown, page.file.src_uri)
