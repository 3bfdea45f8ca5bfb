"""GET /users/{id} has a pure-ASGI fast path (shop.api.routes.users.FastRead, for make bench).
It must answer exactly as the FastAPI route does: a leading zero (``/users/01``) is not a
plain id, so it falls through to the route, and both answers are compared here."""

import httpx
import pytest

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


# -- learner code that returns something that is not a user ---------------------------------
MISSING_COLUMNS = '''
async def fetch_user(conn, user_id: int):
    row = await conn.fetchrow("SELECT id, email FROM users WHERE id = $1", user_id)
    return dict(row) if row is not None else None
'''

UNREADABLE = '''
from collections.abc import Mapping


class Row(Mapping):   # a row that raises when it is read: no handler knows this failure
    def __getitem__(self, key):
        raise RuntimeError("this row cannot be read")

    def __iter__(self):
        raise RuntimeError("this row cannot be read")

    def __len__(self):
        return 4


async def fetch_user(conn, user_id: int):
    return Row()
'''


@pytest.fixture
def broken_fetch_user(stack):
    path = stack.workspace / "user_queries.py"
    yours = path.read_text()

    def install(code: str) -> None:
        path.write_text(code)
        stack.restart("users")

    yield install
    path.write_text(yours)
    stack.restart("users")


@pytest.mark.parametrize("code, error, said", [(MISSING_COLUMNS, "exercise_error", "fetch_user()"),
                                               (UNREADABLE, "internal_error", "RuntimeError")],
                         ids=["missing-columns", "unreadable-row"])
def test_a_broken_fetch_user_is_a_json_500_on_both_paths(stack, broken_fetch_user, new_email, code, error, said):
    with httpx.Client(base_url=stack.url("users"), timeout=10) as api:
        user = api.post("/users", json={"email": new_email(), "name": "Broken"}).json()
        broken_fetch_user(code)
        fast, routed = api.get(f"/users/{user['id']}"), api.get(f"/users/0{user['id']}")
    for answer in (fast, routed):
        assert answer.status_code == 500 and answer.headers["content-type"] == "application/json", answer.text
        assert answer.json()["error"] == error and said in answer.json()["detail"], answer.text
    assert fast.content == routed.content


# -- ... and the lab 01 check says what is wrong with it, in one message -----------------------
BAD_SQL = '''
async def fetch_user(conn, user_id: int):
    row = await conn.fetchrow("SELECT id, email, name, created_at FROM user_accounts WHERE id = $1", user_id)
    return dict(row) if row is not None else None
'''

BLOCKING = '''
import time


async def fetch_user(conn, user_id: int):
    time.sleep(12)   # blocks the service's event loop past the check's 10 s
    row = await conn.fetchrow("SELECT id, email, name, created_at FROM users WHERE id = $1", user_id)
    return dict(row) if row is not None else None
'''


@pytest.mark.parametrize("code, said", [
    (MISSING_COLUMNS, "is not a user: name"),
    (UNREADABLE, "failed on this request (RuntimeError)"),
    (BAD_SQL, "UndefinedTableError"),
    (BLOCKING, "did not answer (ReadTimeout)"),
], ids=["missing-columns", "unreadable-row", "bad-sql", "blocks-the-loop"])
def test_the_lab01_check_of_a_broken_fetch_user_fails_with_one_message(stack, broken_fetch_user, code, said):
    from scalelab.exercise import CheckFailed, NotAttempted
    from scalelab.labs import lab01

    broken_fetch_user(code)
    with pytest.raises(CheckFailed) as failed:
        lab01.fetch_user.check(stack)
    message = str(failed.value)
    assert not isinstance(failed.value, NotAttempted) and message.startswith("Exercise 1 · fetch_user: "), message
    assert said in message and "Traceback" not in message, message
    assert failed.value._render_traceback_() == [f"CheckFailed: {message}"]   # what Jupyter shows: this line alone
