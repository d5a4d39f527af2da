"""Bad input, endpoint by endpoint: never a 500, always JSON ``{"code", "detail"}``, never a row written.

Each test runs against a small world (two providers' worth of nodes and offers, a developer's job
and artifact) and compares every row of every table before and after the refused request.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketplace.models import Account, Artifact, Job, JobEvent, Node, NodeGpu, Offer
from tests.conftest import PASSWORD, make_node, make_offer, submit_job, upload

TABLES = (User, Account, Token, Node, NodeGpu, Offer, Job, JobEvent, Artifact)
CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
HUGE = 2**256
RTX = "NVIDIA RTX 4090"


@dataclass(frozen=True)
class Endpoint:
    """One JSON endpoint: how to call it as the right person, and a body it accepts."""

    name: str
    method: str
    path: str  # may hold {node}, {offer}, {job}
    who: str  # anon | provider | developer | node
    body: dict[str, Any]

    def __str__(self) -> str:
        return self.name


NODE_BODY = {"name": "rig-9", "region": "eu-west", "cpu_cores": 8, "ram_gb": 64,
             "gpus": [{"model": "NVIDIA L4", "count": 1}]}
ENDPOINTS = [
    Endpoint("register", "post", "/api/v1/auth/register", "anon",
             {"username": "zoe", "password": PASSWORD, "role": "developer"}),
    Endpoint("token", "post", "/api/v1/auth/token", "anon", {"username": "dave", "password": PASSWORD}),
    Endpoint("me", "patch", "/api/v1/me", "provider", {"payout_address": CHECKSUMMED}),
    Endpoint("node-create", "post", "/api/v1/nodes/", "provider", NODE_BODY),
    Endpoint("node-patch", "patch", "/api/v1/nodes/{node}/", "provider", {"name": "renamed"}),
    Endpoint("heartbeat", "post", "/api/v1/nodes/heartbeat/", "node", {"draining": False}),
    Endpoint("offer-create", "post", "/api/v1/offers/", "provider",
             {"node": "{node}", "gpu_model": RTX, "gpu_count": 1, "price_per_gpu_hour_wei": 10**15}),
    Endpoint("offer-patch", "patch", "/api/v1/offers/{offer}/", "provider", {"price_per_gpu_hour_wei": 5}),
    Endpoint("job-create", "post", "/api/v1/jobs/", "developer", {"kind": "benchmark"}),
]
BY_NAME = {endpoint.name: endpoint for endpoint in ENDPOINTS}


@dataclass
class World:
    clients: dict[str, APIClient]
    ids: dict[str, int]

    def path(self, endpoint: Endpoint) -> str:
        return endpoint.path.format(**self.ids)

    def body(self, endpoint: Endpoint, **changes: Any) -> dict[str, Any]:
        body = {key: self.ids["node"] if value == "{node}" else value for key, value in endpoint.body.items()}
        return {**body, **changes}

    def send(self, endpoint: Endpoint, body: Any) -> Any:
        client = self.clients[endpoint.who]
        return getattr(client, endpoint.method)(self.path(endpoint), body, format="json")

    def send_raw(self, endpoint: Endpoint, raw: bytes, content_type: str = "application/json",
                 **extra: Any) -> Any:
        client = self.clients[endpoint.who]
        return client.generic(endpoint.method.upper(), self.path(endpoint), raw, content_type=content_type, **extra)


def snapshot() -> list[list[dict[str, Any]]]:
    return [list(table.objects.order_by("pk").values()) for table in TABLES]


@pytest.fixture
def world(provider, other_provider, developer) -> World:
    node = make_node(provider, gpus=[{"model": RTX, "count": 4}])
    make_node(other_provider, "theirs")
    offer = make_offer(provider, node["id"])
    job = submit_job(developer)
    artifact = upload(developer, b"artifact").json()
    node_client = APIClient()
    node_client.credentials(HTTP_AUTHORIZATION=f"Node {node['join_token']}")
    return World(clients={"anon": APIClient(), "provider": provider.client, "developer": developer.client,
                          "node": node_client},
                 ids={"node": node["id"], "offer": offer["id"], "job": job["id"], "artifact": artifact["id"]})


@pytest.fixture
def before(world: World) -> list[list[dict[str, Any]]]:
    return snapshot()


def assert_refused(response: Any, before: list[Any], status: int = 400, code: str | None = None) -> None:
    """A clean refusal: the status, a JSON body with code and detail, and not a row changed."""
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = json.loads(response.content)
    assert response.status_code == status, body
    assert isinstance(body, dict) and {"code", "detail"} <= set(body), body
    assert isinstance(body["code"], str) and body["code"] and isinstance(body["detail"], str) and body["detail"]
    if code is not None:
        assert body["code"] == code, body
    assert snapshot() == before


# --- sanity: every endpoint here does accept its good body -------------------------------------

@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_each_endpoint_accepts_its_good_body(world, endpoint):
    assert world.send(endpoint, world.body(endpoint)).status_code in {200, 201}


# --- shape of the body -------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_an_unknown_field_is_refused_by_name(world, before, endpoint):
    response = world.send(endpoint, world.body(endpoint, surprise=1))

    assert_refused(response, before, code="unknown_field")
    assert "surprise" in response.json()["detail"]


@pytest.mark.parametrize("raw", [
    b'{"kind": ', b"{'kind': 'benchmark'}", b'{"kind": "benchmark",}', b'{"a": NaN}', b'{"a": Infinity}',
    b'{"a": 1} trailing', b"\xff\xfe\x00{", b"not json at all", b'{"a": "\\ud800"',
], ids=repr)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_malformed_json_is_a_parse_error(world, before, endpoint, raw):
    assert_refused(world.send_raw(endpoint, raw), before, code="parse_error")


@pytest.mark.parametrize("raw", [b"[]", b"[1, 2]", b'"text"', b"42", b"null", b"true"], ids=repr)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_body_that_is_not_an_object_is_refused(world, before, endpoint, raw):
    assert_refused(world.send_raw(endpoint, raw), before)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_body_nested_too_deeply_to_parse_is_refused(world, before, endpoint):
    depth = 100_000
    assert_refused(world.send_raw(endpoint, b"[" * depth + b"]" * depth), before, code="parse_error")


def test_deep_nesting_is_refused_before_parsing_even_under_a_raised_recursion_limit(world, before):
    """Importing py-evm (the EVM workload) raises the recursion limit to 100,000 for the whole process;
    the decoder would then recurse deep enough to overflow the C stack and kill the process."""
    import sys

    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # what py_ecc sets on import
    try:
        depth = 100_000
        raw = b'{"a": "[[[[", "b": ' + b"[" * depth + b"]" * depth + b"}"
        assert_refused(world.send_raw(BY_NAME["job-create"], raw), before, code="parse_error")
    finally:
        sys.setrecursionlimit(previous)


@pytest.mark.parametrize("endpoint", [BY_NAME["job-create"]], ids=str)
def test_a_deeply_nested_spec_is_refused(world, before, endpoint):
    for depth in (500, 990, 5000):
        raw = b'{"kind": "benchmark", "spec": {"measurements": ' + b"[" * depth + b"]" * depth + b"}}"
        assert_refused(world.send_raw(endpoint, raw), before)


def test_a_spec_nested_a_few_levels_reaches_the_schema_check_and_a_deep_one_does_not(world, before):
    def body(depth: int) -> bytes:
        return b'{"kind": "benchmark", "spec": {"measurements": ' + b"[" * depth + b"]" * depth + b"}}"

    assert_refused(world.send_raw(BY_NAME["job-create"], body(20)), before, code="invalid_spec")
    assert_refused(world.send_raw(BY_NAME["job-create"], body(40)), before, code="parse_error")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_form_encoded_body_is_an_unsupported_media_type(world, before, endpoint):
    response = world.send_raw(endpoint, b"kind=benchmark", content_type="application/x-www-form-urlencoded")
    assert_refused(response, before, status=415, code="unsupported_media_type")


# --- size and length ---------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_body_over_the_api_limit_is_refused_with_413(world, before, endpoint, settings):
    settings.API_MAX_BODY_BYTES = 4096
    raw = json.dumps({**world.body(endpoint), "padding": "x" * 5000}).encode()

    assert_refused(world.send_raw(endpoint, raw), before, status=413, code="payload_too_large")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_body_just_under_the_api_limit_gets_past_the_size_check(world, endpoint, settings):
    settings.API_MAX_BODY_BYTES = 4096
    raw = json.dumps({**world.body(endpoint), "padding": ""}).encode()
    raw = raw.replace(b'"padding": ""', b'"padding": "' + b"x" * (4096 - len(raw)) + b'"')
    assert len(raw) == 4096

    response = world.send_raw(endpoint, raw)

    assert response.status_code == 400 and response.json()["code"] == "unknown_field"  # checked, not cut off


def test_a_body_over_the_default_limit_is_refused(world, before):
    raw = json.dumps({"kind": "benchmark", "spec": {"p": "x" * (1024 * 1024)}}).encode()
    assert_refused(world.send_raw(BY_NAME["job-create"], raw), before, status=413, code="payload_too_large")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_declared_length_over_the_limit_is_refused_before_reading(world, before, endpoint):
    raw = json.dumps(world.body(endpoint)).encode()
    response = world.send_raw(endpoint, raw, CONTENT_LENGTH=str(10**12))
    assert_refused(response, before, status=413, code="payload_too_large")


@pytest.mark.parametrize("length", ["abc", "-1", "1.5", "0x10", "1e3", "١٢"])
@pytest.mark.parametrize("endpoint", [BY_NAME["job-create"], BY_NAME["register"], BY_NAME["heartbeat"]], ids=str)
def test_a_content_length_that_is_not_a_number_is_refused(world, before, endpoint, length):
    raw = json.dumps(world.body(endpoint)).encode()
    response = world.send_raw(endpoint, raw, CONTENT_LENGTH=length)
    assert_refused(response, before, code="invalid_content_length")


# --- wrong types, negative and huge numbers, unknown GPU models --------------------------------

BAD_VALUES: list[tuple[str, dict[str, Any]]] = [
    # wrong types
    ("register", {"username": ["zoe"]}), ("register", {"username": True}), ("register", {"role": 1}),
    ("register", {"password": None}), ("register", {"username": {"first": "zoe"}}),
    ("token", {"username": None}), ("token", {"password": []}),
    ("me", {"payout_address": ["0x"]}), ("me", {"payout_address": True}), ("me", {"payout_address": 1234}),
    ("node-create", {"cpu_cores": "many"}), ("node-create", {"cpu_cores": 1.5}), ("node-create", {"cpu_cores": True}),
    ("node-create", {"ram_gb": None}), ("node-create", {"ram_gb": {}}), ("node-create", {"name": []}),
    ("node-create", {"gpus": {}}), ("node-create", {"gpus": "NVIDIA L4"}), ("node-create", {"gpus": [1]}),
    ("node-create", {"gpus": [{"model": 1, "count": 1}]}), ("node-create", {"gpus": [{"model": "NVIDIA L4"}]}),
    ("node-create", {"gpus": [{"model": "NVIDIA L4", "count": "x"}]}), ("node-create", {"gpus": None}),
    ("node-create", {"gpus": [{"model": "NVIDIA L4", "count": 1}] * 17}),
    ("node-patch", {"name": []}), ("node-patch", {"region": True}), ("node-patch", {"name": None}),
    ("node-patch", {"name": ""}),
    ("heartbeat", {"draining": "perhaps"}), ("heartbeat", {"draining": []}), ("heartbeat", {"draining": 2}),
    ("heartbeat", {"draining": None}),
    ("offer-create", {"node": "abc"}), ("offer-create", {"node": 1.5}), ("offer-create", {"node": True}),
    ("offer-create", {"node": None}), ("offer-create", {"gpu_count": "x"}), ("offer-create", {"gpu_count": 2.5}),
    ("offer-create", {"price_per_gpu_hour_wei": 1.5}), ("offer-create", {"price_per_gpu_hour_wei": "1.5"}),
    ("offer-create", {"price_per_gpu_hour_wei": "0x10"}), ("offer-create", {"price_per_gpu_hour_wei": " 5"}),
    ("offer-create", {"price_per_gpu_hour_wei": True}), ("offer-create", {"price_per_gpu_hour_wei": []}),
    ("offer-create", {"price_per_gpu_hour_wei": "1e18"}), ("offer-create", {"price_per_gpu_hour_wei": None}),
    ("offer-create", {"price_per_gpu_hour_wei": "١٢٣"}), ("offer-create", {"min_duration_s": "soon"}),
    ("offer-patch", {"price_per_gpu_hour_wei": True}), ("offer-patch", {"gpu_count": []}),
    ("offer-patch", {"max_duration_s": "long"}),
    ("job-create", {"kind": {}}), ("job-create", {"requirements": []}), ("job-create", {"requirements": None}),
    ("job-create", {"max_price_wei": True}), ("job-create", {"budget_wei": {}}),
    ("job-create", {"requirements": {"gpus": 1.5}}), ("job-create", {"spec": "measure everything"}),
    # negative amounts and counts
    ("offer-create", {"price_per_gpu_hour_wei": -1}), ("offer-create", {"price_per_gpu_hour_wei": "-1"}),
    ("offer-create", {"price_per_gpu_hour_wei": -(10**30)}), ("offer-create", {"price_per_gpu_hour_wei": 0}),
    ("offer-create", {"gpu_count": -1}), ("offer-create", {"node": -1}), ("offer-create", {"min_duration_s": -60}),
    ("offer-patch", {"price_per_gpu_hour_wei": -1}), ("offer-patch", {"gpu_count": -2}),
    ("node-create", {"cpu_cores": -8}), ("node-create", {"gpus": [{"model": "NVIDIA L4", "count": -1}]}),
    ("job-create", {"max_price_wei": -1}), ("job-create", {"budget_wei": "-5"}),
    ("job-create", {"requirements": {"gpus": -1}}), ("job-create", {"requirements": {"min_vram_gb": -8}}),
    # huge numbers
    ("offer-create", {"price_per_gpu_hour_wei": HUGE}), ("offer-create", {"price_per_gpu_hour_wei": str(HUGE)}),
    ("offer-create", {"price_per_gpu_hour_wei": 10**100}), ("offer-create", {"price_per_gpu_hour_wei": "9" * 79}),
    ("offer-create", {"node": HUGE}), ("offer-create", {"node": 2**63}), ("offer-create", {"gpu_count": HUGE}),
    ("offer-create", {"max_duration_s": HUGE}),
    ("offer-patch", {"price_per_gpu_hour_wei": HUGE}), ("offer-patch", {"gpu_count": 10**100}),
    ("node-create", {"cpu_cores": HUGE}), ("node-create", {"ram_gb": 2**64}),
    ("node-create", {"gpus": [{"model": "NVIDIA L4", "count": HUGE}]}),
    ("node-create", {"gpus": [{"model": "NVIDIA L4", "count": 1, "vram_gb": HUGE}]}),
    ("heartbeat", {"draining": HUGE}),
    ("job-create", {"budget_wei": HUGE}), ("job-create", {"max_price_wei": str(HUGE)}),
    ("job-create", {"requirements": {"gpus": HUGE}}),
    ("register", {"role": HUGE}), ("register", {"password": "x" * 129}), ("register", {"username": "z" * 10_000}),
    # unknown GPU models
    ("node-create", {"gpus": [{"model": "NVIDIA RTX 9090", "count": 1}]}),
    ("node-create", {"gpus": [{"model": "nvidia rtx 4090", "count": 1}]}),
    ("node-create", {"gpus": [{"model": "", "count": 1}]}),
    ("offer-create", {"gpu_model": "NVIDIA RTX 9090"}), ("offer-create", {"gpu_model": "NVIDIA L4"}),
    ("job-create", {"requirements": {"gpu_model": "Voodoo 2"}}),
    # NUL and lone surrogates (PostgreSQL text cannot hold NUL)
    ("register", {"username": "zo\x00e"}), ("token", {"username": "da\x00ve"}),
    ("me", {"payout_address": CHECKSUMMED[:-1] + "\x00"}), ("node-create", {"name": "rig\x00"}),
    ("node-patch", {"region": "eu\x00"}), ("job-create", {"kind": "bench\x00mark"}),
    ("job-create", {"spec": {"measurements": ["gpu\x00"]}}),
]


@pytest.mark.parametrize(("name", "changes"), BAD_VALUES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD_VALUES)])
def test_a_bad_value_is_refused_with_400(world, before, name, changes):
    endpoint = BY_NAME[name]
    assert_refused(world.send(endpoint, world.body(endpoint, **changes)), before)


RAW_VALUES = [
    ("job-create", b'{"kind": "benchmark", "budget_wei": ' + b"9" * 5000 + b"}"),  # past int()'s digit limit
    ("job-create", b'{"kind": "benchmark", "requirements": {"min_vram_gb": 1e400}}'),  # infinity
    ("offer-create", b'{"node": 1, "gpu_model": "NVIDIA L4", "gpu_count": 1, "price_per_gpu_hour_wei": 1e400}'),
    ("offer-create", b'{"node": 1, "gpu_model": "NVIDIA L4", "gpu_count": 1, "price_per_gpu_hour_wei": -0.0}'),
    # lone UTF-16 surrogates: valid JSON escapes, but no UTF-8 text can hold them
    ("register", b'{"username": "zo\\ud800e", "password": "a long enough passphrase 7", "role": "developer"}'),
    ("register", b'{"username": "zoe", "password": "a long enough passphrase 7", "role": "dev\\udfffeloper"}'),
    ("register", b'{"username": "zoe", "password": "a long enough passphrase 7\\ud800", "role": "developer"}'),
    ("job-create", b'{"kind": "benchmark", "\\ud800": 1}'),
    ("job-create", b'{"kind": "bench\\ud800"}'),
    ("job-create", b'{"kind": "benchmark", "spec": {"\\ud800": 1}}'),
    ("job-create", b'{"kind": "benchmark", "spec": {"measurements": ["\\ud800"]}}'),
    ("job-create", b'{"kind": "benchmark", "requirements": {"gpu_model": "\\ud800"}}'),
    ("node-create", b'{"name": "rig", "region": "eu-west", "cpu_cores": 1, "ram_gb": 1, '
                    b'"gpus": [{"model": "\\ud800", "count": 1}]}'),
    ("me", b'{"payout_address": "0x\\ud800"}'),
]


@pytest.mark.parametrize(("name", "raw"), RAW_VALUES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(RAW_VALUES)])
def test_a_bad_value_only_raw_json_can_carry_is_refused(world, before, name, raw):
    assert_refused(world.send_raw(BY_NAME[name], raw), before)


@pytest.mark.parametrize(("query", "status"), [
    ({"gpu_model": "NVIDIA RTX 9090"}, 400), ({"min_vram_gb": HUGE}, 400), ({"min_vram_gb": "-1"}, 400),
    ({"min_vram_gb": "NaN"}, 400), ({"min_gpus": 10**100}, 400), ({"min_gpus": "Infinity"}, 400),
    ({"max_price_wei": 10**100}, 400), ({"max_price_wei": "-0.5"}, 400), ({"max_price_wei": "1" * 5000}, 400),
    ({"region": "eu\x00"}, 400), ({"ordering": "?"}, 400), ({"mine": "true", "status": "gone"}, 400),
    ({"cursor": "bm9wZQ"}, 404),  # base64 with its padding cut off
])
def test_a_bad_search_is_refused(world, before, query, status):
    assert_refused(world.clients["provider"].get("/api/v1/offers/", query), before, status=status)


@pytest.mark.parametrize("query", [{"state": "gone"}, {"state": "queued\x00"}, {"kind": "k" * 33}])
def test_a_bad_job_filter_is_refused(world, before, query):
    assert_refused(world.clients["developer"].get("/api/v1/jobs/", query), before)


@pytest.mark.parametrize("query", [{"offset": 10**30}, {"offset": "-5"}, {"limit": 10**30}, {"offset": "9" * 5000}])
def test_odd_paging_numbers_never_break_a_list(world, query):
    for who, path in (("developer", "/api/v1/jobs/"), ("developer", "/api/v1/artifacts/"),
                      ("provider", "/api/v1/nodes/"), ("developer", f"/api/v1/jobs/{world.ids['job']}/events/")):
        response = world.clients[who].get(path, query)
        assert response.status_code == 200, (path, response.content[:300])


# --- path ids ----------------------------------------------------------------------------------

ID_PATHS = [  # (who, method, path with {} for the id, which of the world's ids)
    ("provider", "get", "/api/v1/nodes/{}/", "node"), ("provider", "patch", "/api/v1/nodes/{}/", "node"),
    ("provider", "get", "/api/v1/nodes/{}/jobs/", "node"),
    ("anon", "get", "/api/v1/offers/{}/", "offer"), ("provider", "patch", "/api/v1/offers/{}/", "offer"),
    ("provider", "post", "/api/v1/offers/{}/pause/", "offer"),
    ("provider", "post", "/api/v1/offers/{}/resume/", "offer"), ("provider", "delete", "/api/v1/offers/{}/", "offer"),
    ("developer", "get", "/api/v1/jobs/{}/", "job"), ("developer", "post", "/api/v1/jobs/{}/cancel/", "job"),
    ("developer", "get", "/api/v1/jobs/{}/events/", "job"), ("developer", "get", "/api/v1/jobs/{}/result/", "job"),
    ("developer", "get", "/api/v1/artifacts/{}/", "artifact"),
    ("developer", "get", "/api/v1/artifacts/{}/download/", "artifact"),
]
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
# Spellings of an id that int() would accept or that are plainly not an id. The ones built from
# the real id must not reach the object: only a plain decimal number names a row.
BAD_IDS = {
    "word": lambda pk: "abc", "zero": lambda pk: "0", "negative": lambda pk: f"-{pk}",
    "decimal": lambda pk: f"{pk}.0", "exponent": lambda pk: f"{pk}e0", "too-big": lambda pk: "9" * 25,
    "past-bigint": lambda pk: str(2**63), "hex": lambda pk: hex(pk), "null": lambda pk: "null",
    "plus": lambda pk: f"+{pk}", "space": lambda pk: f"%20{pk}", "trailing-space": lambda pk: f"{pk}%20",
    "underscore": lambda pk: f"{str(pk)[0]}_{str(pk)[1:]}" if pk > 9 else f"0_{pk}",
    "arabic-indic": lambda pk: str(pk).translate(ARABIC_INDIC),
    "fullwidth": lambda pk: "".join(chr(0xFF10 + int(d)) for d in str(pk)),
}


@pytest.mark.parametrize("spelling", BAD_IDS)
@pytest.mark.parametrize(("who", "method", "template", "kind"), ID_PATHS)
def test_a_path_id_that_is_not_a_plain_positive_integer_is_not_found(world, before, who, method, template, kind,
                                                                      spelling):
    bad_id = BAD_IDS[spelling](world.ids[kind])
    body = {"name": "x"} if "nodes" in template and method == "patch" else None

    response = getattr(world.clients[who], method)(template.format(bad_id), body, format="json")

    assert_refused(response, before, status=404, code="not_found")


def test_the_plain_id_does_reach_each_object(world):
    for who, method, template, kind in ID_PATHS:
        if method == "get":
            response = world.clients[who].get(template.format(world.ids[kind]))
            assert response.status_code in {200, 409}, template  # 409: the queued job has no result yet


# --- methods -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("who", "method", "path", "status"), [
    ("developer", "put", "/api/v1/jobs/{job}/", 405), ("developer", "delete", "/api/v1/jobs/{job}/", 405),
    ("provider", "delete", "/api/v1/nodes/{node}/", 405), ("provider", "put", "/api/v1/offers/{offer}/", 405),
    ("developer", "get", "/api/v1/jobs/{job}/cancel/", 405), ("anon", "get", "/api/v1/auth/register", 405),
    ("provider", "delete", "/api/v1/offers/", 405),
    ("anon", "delete", "/api/v1/offers/", 401),  # who you are is settled before what you may do
])
def test_a_method_the_endpoint_does_not_have_is_refused(world, before, who, method, path, status):
    response = getattr(world.clients[who], method)(path.format(**world.ids), {}, format="json")
    assert_refused(response, before, status=status, code="method_not_allowed" if status == 405 else None)
