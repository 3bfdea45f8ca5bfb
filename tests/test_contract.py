"""Both services keep their own published contract, on a solved lab 05 stack (local; compose
under ``-m compose``).

* schemathesis (``scalelab.fuzz``) against the user and the order service: every check,
  the coverage, fuzzing and stateful phases, zero failures. One run with a fixed seed (the
  same requests every time), one with a seed drawn for this session and named in the test
  id — ``SCALELAB_FUZZ_SEED=<n>`` draws that one again. The drawn run skips the coverage
  phase, which walks the schema's edges the same way whatever the seed. ``MAX_EXAMPLES``
  sizes the runs: the four take about 80 s on an idle 2-core machine (each prints its
  count and time with ``-s``), about twice that when the cores are busy.
* what the fuzzer cannot see: the document itself (every error an ``ErrorOut``, exact
  bounds), strict bodies (no bool/float/str → int), OPTIONS and 405 with ``Allow``.
"""

import json
import os
import secrets
import uuid

import httpx
import pytest

from scalelab import db, fuzz
from scalelab.labs import lab05

from conftest import completed_stack

MAX_EXAMPLES = 10
SEEDED_USERS = 200
FIXED_SEED = 20
DRAWN_SEED = int(os.environ.get("SCALELAB_FUZZ_SEED") or secrets.randbelow(2**31))
SEEDS = [pytest.param(FIXED_SEED, fuzz.PHASES, id=f"fixed-seed-{FIXED_SEED}"),
         pytest.param(DRAWN_SEED, ("fuzzing", "stateful"), id=f"drawn-seed-{DRAWN_SEED}")]
BIGINT_MAX = 2**63 - 1


@pytest.fixture(scope="module", params=["local", pytest.param("compose", marks=pytest.mark.compose)])
def lab5(request, tmp_path_factory):
    stack = completed_stack(tmp_path_factory.mktemp(f"contract-{request.param}"), 5, request.param)
    # Users with the small ids a fuzzer draws first: generated orders and accounts then name
    # a user that exists often enough to be accepted (201/202), so the bodies of successful
    # answers are checked too, and the stateful phase finds its links (POST → GET by id).
    db.fetchval(stack.database_url(), "INSERT INTO users (email, name) SELECT 'buyer-' || g || '@example.com', "
                "'Buyer ' || g FROM generate_series(1, $1) AS g", SEEDED_USERS)
    yield stack
    stack.down(purge=True)


@pytest.fixture(scope="module")
def bearer(lab5) -> dict[str, str]:
    """A token for one user: PATCH and DELETE /users/{id} need one (lab 02 on)."""
    email, password = f"fuzz-{uuid.uuid4().hex[:8]}@example.com", "fuzzing-password"
    users = lab5.url("users")
    assert httpx.post(f"{users}/users", json={"email": email, "name": "Fuzz", "password": password}).status_code == 201
    token = httpx.post(f"{users}/auth/token", json={"email": email, "password": password}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def document(lab5, service: str) -> dict:
    return httpx.get(f"{lab5.url(service)}/openapi.json", timeout=10).json()


@pytest.mark.parametrize("seed, phases", SEEDS)
@pytest.mark.parametrize("service", ["users", "orders"])
def test_schemathesis_finds_no_failure_with_every_check(lab5, bearer, service, seed, phases):
    run = fuzz.run(lab5.url(service), seed=seed, phases=phases, max_examples=MAX_EXAMPLES,
                   headers=bearer if service == "users" else None)
    print(f"{service}: {run.summary()}")
    assert run.passed, f"{service}: {run.summary()}\n{run.failures.to_string()}\n{run.details()}"
    assert {name: run.phases[name] for name in phases} == dict.fromkeys(phases, "success"), run.phases
    assert run.generated >= 50, f"too few requests to mean anything: {run.summary()}"


# -- the document ---------------------------------------------------------------------------
@pytest.mark.parametrize("service", ["users", "orders"])
def test_every_error_answer_is_declared_as_the_one_envelope(lab5, service):
    doc = document(lab5, service)
    assert doc["openapi"] == "3.0.3"
    assert "HTTPValidationError" not in json.dumps(doc)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            errors = {status: answer for status, answer in operation["responses"].items() if int(status) >= 400}
            assert "500" in errors, (method, path)
            if operation.get("parameters") or "requestBody" in operation:
                assert "422" in errors, (method, path)
            for status, answer in errors.items():
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, status)
            if "requestBody" in operation:
                assert {"400", "408", "413", "415", "422"} <= set(errors), (method, path)


def test_bounds_the_code_enforces_are_published_exactly(lab5):
    users, orders = document(lab5, "users"), document(lab5, "orders")
    owner = users["components"]["schemas"]["AccountCreate"]["properties"]["owner_id"]
    buyer = orders["components"]["schemas"]["OrderCreate"]["properties"]["user_id"]
    user_id = next(p for p in users["paths"]["/users/{user_id}"]["get"]["parameters"] if p["name"] == "user_id")
    for schema in (owner, buyer, user_id["schema"]):
        assert schema["maximum"] == BIGINT_MAX and type(schema["maximum"]) is int, schema
    limit = users["paths"]["/users/{user_id}"]["patch"]["responses"]["413"]["description"]
    assert "65536 bytes" in limit


def test_patch_and_delete_declare_the_bearer_scheme_they_enforce(lab5):
    doc = document(lab5, "users")
    for method in ("patch", "delete"):
        operation = doc["paths"]["/users/{user_id}"][method]
        assert operation["security"] == [{"bearer": []}] and {"401", "403"} <= set(operation["responses"])
    assert "security" not in doc["paths"]["/users/{user_id}"]["get"]


# -- strict input: what the schema calls an integer, and nothing else ------------------------
def orders_count(lab5) -> int:
    return db.fetchval(lab5.database_url(), "SELECT count(*) FROM orders")


@pytest.mark.parametrize("change", [
    {"user_id": True}, {"user_id": "1"}, {"user_id": 1.0}, {"fail_first": False}, {"fail_first": 0.0},
    {"items": [{"sku": "pen", "quantity": 2.0, "price_cents": 100}]},
    {"items": [{"sku": "pen", "quantity": "2", "price_cents": 100}]},
    {"user_id": BIGINT_MAX + 1},
], ids=["bool-id", "str-id", "float-id", "bool-flag", "float-flag", "float-quantity", "str-quantity", "id-over-bigint"])
def test_an_order_with_a_coerced_integer_is_422_and_stores_nothing(lab5, change):
    user = lab05.new_user(lab5, "Strict Buyer")
    before = orders_count(lab5)
    r = httpx.post(f"{lab5.url('orders')}/orders", json={"user_id": user, "items": lab05.ITEMS, **change}, timeout=10)
    assert r.status_code == 422 and r.json()["error"] == "validation_error", r.text
    assert orders_count(lab5) == before


@pytest.mark.parametrize("body", [{"owner_id": 1.0, "balance": 10}, {"owner_id": 1, "balance": True},
                                  {"owner_id": "1", "balance": 10}, {"owner_id": BIGINT_MAX + 1, "balance": 10}],
                         ids=["float-owner", "bool-balance", "str-owner", "owner-over-bigint"])
def test_an_account_with_a_coerced_integer_is_422(lab5, body):
    r = httpx.post(f"{lab5.url('users')}/accounts", json=body, timeout=10)
    assert r.status_code == 422 and r.json()["error"] == "validation_error", r.text


def test_a_whole_integer_is_accepted_where_the_schema_says_integer(lab5):
    user = lab05.new_user(lab5, "Plain Buyer")
    r = httpx.post(f"{lab5.url('orders')}/orders", json={"user_id": user, "items": lab05.ITEMS, "fail_first": 0},
                   timeout=10)
    assert r.status_code == 202, r.text


# -- methods: OPTIONS and 405 name every method of the path ----------------------------------
@pytest.mark.parametrize("service, path, methods", [
    ("users", "/users", "GET, OPTIONS, POST"),
    ("users", "/users/1", "DELETE, GET, OPTIONS, PATCH"),
    ("orders", "/orders", "OPTIONS, POST"),
    ("orders", "/orders/1", "GET, OPTIONS"),
])
def test_options_and_a_wrong_method_name_every_method_of_the_path(lab5, service, path, methods):
    url = f"{lab5.url(service)}{path}"
    options = httpx.options(url, timeout=10)
    assert options.status_code == 204 and options.headers["allow"] == methods and not options.content
    wrong = httpx.put(url, json={}, timeout=10)
    assert wrong.status_code == 405 and wrong.headers["allow"] == methods
    assert wrong.json()["error"] == "method_not_allowed"
