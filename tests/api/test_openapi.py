"""``/openapi.json`` and ``/docs``: the document covers every route of the
table, is valid OpenAPI 3.1, and its request schemas are the validating
models' own; the page and its assets are served by the gateway itself, with
no key and nothing from elsewhere, and Swagger UI renders the document in a
real browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel, create_model

from interlock.api.docs_page import DOCS_FILES
from interlock.api.openapi import build_document, table_routes
from interlock.api.openapi_routes import ROUTES, RouteDoc, lazy_model
from interlock.dialects.completions import CompletionRequest
from interlock.pipeline.schemas import ChatCompletionRequest, EmbeddingRequest, InferRequest
from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import GatewayProcess

REF = "#/components/schemas/{model}"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(table_routes())


def test_every_route_in_the_table_is_documented() -> None:
    missing = [route for route in table_routes() if route not in ROUTES]
    assert missing == [], "add these routes to api/openapi_routes.py"


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"
    operations = {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert operations == set(table_routes())


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/v1/chat/completions", ChatCompletionRequest),
        ("/v1/completions", CompletionRequest),
        ("/v1/embeddings", EmbeddingRequest),
        ("/v1/infer", InferRequest),
    ],
)
def test_request_schemas_are_the_validating_models_own(
    document: dict[str, Any], path: str, model: type[BaseModel]
) -> None:
    body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    name = body["schema"]["$ref"].rsplit("/", 1)[1]
    expected = model.model_json_schema(ref_template=REF)
    defs = expected.pop("$defs", {})
    components = document["components"]["schemas"]
    assert components[name] == expected
    for def_name, schema in defs.items():
        assert components[def_name] == schema


def test_admin_routes_are_tagged_admin_and_need_the_admin_key(document: dict[str, Any]) -> None:
    admin = [
        operation
        for path, item in document["paths"].items()
        if path.startswith("/admin/")
        for method, operation in item.items()
        if method != "parameters"
    ]
    assert len(admin) >= 10
    for operation in admin:
        assert operation["tags"] == ["admin"]
        assert operation["security"] == [{"adminKey": []}]
    scheme = document["components"]["securitySchemes"]["adminKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_model_requests_need_a_key_and_probes_do_not(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert paths["/v1/chat/completions"]["post"]["security"] == [{"apiKey": []}]
    assert paths["/v1/completions"]["post"]["security"] == [{"apiKey": []}]
    for path in ("/health/live", "/openapi.json", "/docs"):
        assert paths[path]["get"]["security"] == []


def test_path_parameters_are_declared(document: dict[str, Any]) -> None:
    item = document["paths"]["/admin/keys/{id}"]
    assert [p["name"] for p in item["parameters"]] == ["id"]
    assert set(item) == {"parameters", "get", "post", "patch"}
    two = build_document([("/things/{kind}/{name}", "GET")], registry={})
    validate(two)
    assert [p["name"] for p in two["paths"]["/things/{kind}/{name}"]["parameters"]] == [
        "kind",
        "name",
    ]


def test_a_dialect_not_importable_is_documented_without_a_request_schema() -> None:
    assert lazy_model("interlock.dialects.no_such_dialect.schemas", "Request")() is None
    assert lazy_model("interlock.pipeline.schemas", "NoSuchModel")() is None
    registry = {
        ("/v1/other", "POST"): RouteDoc(
            "Another dialect",
            "inference",
            request=lazy_model("interlock.dialects.no_such_dialect.schemas", "Request"),
        )
    }
    document = build_document([("/v1/other", "POST")], registry=registry)
    validate(document)
    assert "requestBody" not in document["paths"]["/v1/other"]["post"]


def test_same_named_models_of_two_dialects_get_a_component_each() -> None:
    first = create_model("Request", __module__="dialect_one", text=(str, ...))
    second = create_model("Request", __module__="dialect_two", count=(int, ...))
    registry = {
        ("/one", "POST"): RouteDoc("One", "inference", request=lambda: first),
        ("/two", "POST"): RouteDoc("Two", "inference", request=lambda: second),
    }
    document = build_document([("/one", "POST"), ("/two", "POST")], registry=registry)
    validate(document)
    refs = [
        document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        for path in ("/one", "/two")
    ]
    assert refs[0] != refs[1]
    components = document["components"]["schemas"]
    properties = [components[ref["$ref"].rsplit("/", 1)[1]]["properties"] for ref in refs]
    assert [list(p) for p in properties] == [["text"], ["count"]]


def test_an_undocumented_route_still_appears() -> None:
    document = build_document([("/v1/new", "GET")], registry={})
    validate(document)
    assert document["paths"]["/v1/new"]["get"]["tags"] == ["undocumented"]


# -- served by a live gateway ------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        simulator_config(), tmp_path_factory.mktemp("gw"), env={"TEST_KEY": TEST_KEY}
    )
    yield gateway
    gateway.close()


@pytest.fixture(scope="module")
def http(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        yield client


def test_the_document_is_served_without_a_key(http: httpx.Client) -> None:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    served = orjson.loads(response.content)
    validate(served)
    expected = build_document(table_routes(), served["info"]["version"])
    assert served == orjson.loads(orjson.dumps(expected))
    assert http.get("/openapi.json").content == response.content  # built once


def test_the_docs_page_and_its_assets_are_served_by_the_gateway(http: httpx.Client) -> None:
    page = http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "connect-src 'self';" in policy
    references = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert references, "the page loads its script and stylesheet"
    for url in references:
        assert url.startswith("docs/") or url == "data:,", url
    for path, (_, content_type) in DOCS_FILES.items():
        response = http.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == content_type, path
    assert len(http.get("/docs/swagger-ui-bundle.js").content) > 100_000  # the real Swagger UI
    init = http.get("/docs/init.js").text
    assert "openapi.json" in init and "validatorUrl: null" in init
    assert "http" not in init.replace("new URL", "")


def test_a_docs_path_that_is_not_a_file_is_a_404(http: httpx.Client) -> None:
    assert http.get("/docs/swagger-ui.js.map").status_code == 404
