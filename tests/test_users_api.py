"""The user service against a real Postgres: CRUD, validation, bad input, errors as JSON."""

import json

import pytest

from scalelab import db


def assert_json_error(response, status, code=None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}
    if code:
        assert body["error"] == code


def test_health_and_ready_answer_with_the_instance_name(api):
    health, ready = api.get("/health"), api.get("/ready")
    assert health.status_code == ready.status_code == 200
    assert health.headers["x-instance"] == ready.headers["x-instance"] == "users-1"


def test_every_response_carries_x_instance_even_errors(api):
    assert api.get("/users/abc").headers["x-instance"] == "users-1"
    assert api.get("/nope").headers["x-instance"] == "users-1"


def test_create_then_read_returns_the_same_user(api, new_email):
    created = api.post("/users", json={"email": new_email(), "name": "Grace Hopper"})
    assert created.status_code == 201
    user = created.json()
    assert set(user) == {"id", "email", "name", "created_at"}
    assert api.get(f"/users/{user['id']}").json() == user


def test_duplicate_email_is_409_case_insensitively(api, new_email):
    email = new_email()
    assert api.post("/users", json={"email": email, "name": "A"}).status_code == 201
    assert_json_error(api.post("/users", json={"email": email.upper(), "name": "B"}), 409, "conflict")


def test_missing_user_is_404_json(api):
    assert_json_error(api.get("/users/987654321"), 404, "not_found")


@pytest.mark.parametrize("path", ["/users/abc", "/users/0", "/users/-1", "/users/1.5",
                                  "/users/99999999999999999999", "/users/1;DROP TABLE users"])
def test_bad_ids_are_422_json(api, path):
    assert_json_error(api.get(path), 422, "validation_error")


@pytest.mark.parametrize("body", [
    {"email": "x@example.com", "name": 42},
    {"email": "not-an-email", "name": "X"},
    {"email": "x@example.com", "name": ""},
    {"email": "x@example.com", "name": "x" * 101},
    {"email": "x@example.com"},
    {"email": "x@example.com", "name": "X", "is_admin": True},
    {"email": "x@example.com", "name": "nul\x00byte"},
    ["not", "an", "object"],
])
def test_invalid_user_bodies_are_422_json(api, body):
    assert_json_error(api.post("/users", json=body), 422, "validation_error")


@pytest.mark.parametrize("raw", [b'{"email": ', b"not json at all", b""])
def test_malformed_json_is_422_json(api, raw):
    response = api.post("/users", content=raw, headers={"content-type": "application/json"})
    assert_json_error(response, 422, "validation_error")


def test_body_that_is_not_utf8_is_400_json(api):
    response = api.post("/users", content=b"\xff\xfe\x00", headers={"content-type": "application/json"})
    assert_json_error(response, 400, "bad_request")


def test_ten_megabyte_body_is_413_json_and_nothing_is_stored(api, stack):
    before = db.fetchval(stack.database_url(), "SELECT count(*) FROM users")
    body = json.dumps({"email": "big@example.com", "name": "x" * 10_000_000}).encode()
    response = api.post("/users", content=body, headers={"content-type": "application/json"})
    assert_json_error(response, 413, "payload_too_large")
    assert db.fetchval(stack.database_url(), "SELECT count(*) FROM users") == before


def test_chunked_body_over_the_limit_is_413(api):
    def chunks():
        for _ in range(200):
            yield b"x" * 1024
    response = api.post("/users", content=chunks(), headers={"content-type": "application/json"})
    assert_json_error(response, 413, "payload_too_large")


def test_sql_looking_strings_are_stored_verbatim(api, stack, new_email):
    name = "Robert'); DROP TABLE users;--"
    created = api.post("/users", json={"email": new_email(), "name": name})
    assert created.status_code == 201
    assert api.get(f"/users/{created.json()['id']}").json()["name"] == name
    assert db.fetchval(stack.database_url(), "SELECT to_regclass('users') IS NOT NULL")


def test_list_is_paged_and_bounded(api, new_email):
    for _ in range(3):
        api.post("/users", json={"email": new_email(), "name": "Pager"})
    page = api.get("/users", params={"limit": 2, "offset": 1}).json()
    assert page["limit"] == 2 and page["offset"] == 1 and len(page["items"]) == 2
    ids = [u["id"] for u in page["items"]]
    assert ids == sorted(ids)
    assert_json_error(api.get("/users", params={"limit": 101}), 422, "validation_error")
    assert_json_error(api.get("/users", params={"limit": 0}), 422, "validation_error")
    assert_json_error(api.get("/users", params={"offset": -1}), 422, "validation_error")
    assert_json_error(api.get("/users", params={"limit": "ten"}), 422, "validation_error")


def test_wrong_method_and_unknown_path_are_json(api):
    assert_json_error(api.put("/users"), 405, "method_not_allowed")
    assert_json_error(api.get("/no/such/path"), 404, "not_found")


def test_pool_size_comes_from_the_pool_exercise(api):
    pool = api.get("/stats").json()["pool"]
    assert pool["source"] == "workspace: pool_size()"
    assert 1 <= pool["min_size"] <= pool["max_size"]


def test_migrations_are_recorded_once(stack):
    names = [r["name"] for r in db.fetch(stack.database_url(), "SELECT name FROM schema_migrations")]
    assert names == sorted(set(names)) and "001_users.sql" in names


def test_patch_changes_only_the_fields_sent(api, new_email):
    user = api.post("/users", json={"email": new_email(), "name": "Before"}).json()
    patched = api.patch(f"/users/{user['id']}", json={"name": "After"})
    assert patched.status_code == 200
    assert patched.json() == {**user, "name": "After"}
    assert api.get(f"/users/{user['id']}").json()["name"] == "After"


def test_patch_to_a_taken_email_is_409_and_changes_nothing(api, new_email):
    first = api.post("/users", json={"email": new_email(), "name": "First"}).json()
    second = api.post("/users", json={"email": new_email(), "name": "Second"}).json()
    assert_json_error(api.patch(f"/users/{second['id']}", json={"email": first["email"]}), 409, "conflict")
    assert api.get(f"/users/{second['id']}").json() == second


def test_patch_and_delete_of_a_missing_user_are_404(api):
    assert_json_error(api.patch("/users/987654321", json={"name": "X"}), 404, "not_found")
    assert_json_error(api.delete("/users/987654321"), 404, "not_found")


def test_delete_removes_the_user(api, new_email):
    user = api.post("/users", json={"email": new_email(), "name": "Gone"}).json()
    assert api.delete(f"/users/{user['id']}").status_code == 204
    assert_json_error(api.get(f"/users/{user['id']}"), 404, "not_found")
