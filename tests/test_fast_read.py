"""GET /users/{id} has a pure-ASGI fast path (shop.api.routes.users.FastRead, for make bench).
It must answer exactly as the FastAPI route does: a leading zero (``/users/01``) is not a
plain id, so it falls through to the route, and both answers are compared here."""

import httpx

HEADERS = ("content-type", "content-length", "x-instance", "x-db-node")


def same_answer(fast: httpx.Response, routed: httpx.Response) -> None:
    assert fast.status_code == routed.status_code, (fast.text, routed.text)
    assert fast.content == routed.content
    for name in HEADERS:
        assert fast.headers.get(name) == routed.headers.get(name), name
    assert fast.headers["x-request-id"] and routed.headers["x-request-id"]


def test_fast_path_answers_a_user_as_the_route_does(api, new_email):
    user = api.post("/users", json={"email": new_email(), "name": "Ada Lovelace"}).json()
    same_answer(api.get(f"/users/{user['id']}"), api.get(f"/users/0{user['id']}"))


def test_fast_path_404_is_the_routes_json_404(api):
    fast, routed = api.get("/users/987654321"), api.get("/users/0987654321")
    assert fast.status_code == 404 and fast.json()["error"] == "not_found"
    same_answer(fast, routed)


def test_fast_path_is_counted_under_the_route_template(api, new_email):
    user = api.post("/users", json={"email": new_email(), "name": "Metric"}).json()
    api.get(f"/users/{user['id']}")
    metrics = api.get("/metrics").text
    assert 'route="/users/{user_id}"' in metrics
    assert f'route="/users/{user["id"]}"' not in metrics


def test_cache_hit_on_the_fast_path_matches_the_database_answer(lab3, new_email):
    with httpx.Client(base_url=lab3.url("users"), timeout=10) as api:
        user = api.post("/users", json={"email": new_email(), "name": "Cached"}).json()
        first, second = api.get(f"/users/{user['id']}"), api.get(f"/users/{user['id']}")
        assert first.json() == second.json() == user
        assert second.headers.get("x-db-node") is None   # from Redis: no database node answered
        assert first.content == second.content           # the cached copy serialises the same bytes
