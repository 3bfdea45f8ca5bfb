"""Lab 02's stateless auth: passwords, tokens any replica accepts, 401/403 as JSON."""

import time
import uuid

import httpx
import jwt
import pytest

from scalelab.labs import lab02
from scalelab.runtimes.local import users as local_users
from shop import auth
from shop.reference.tokens import verify_token


@pytest.fixture
def account(lab2):
    """A user with a password, created through nginx, and a token for it from users-1."""
    email, password = f"a-{uuid.uuid4().hex[:8]}@example.com", f"pw-{uuid.uuid4().hex}"
    created = httpx.post(f"{lab2.url()}/users", json={"email": email, "name": "Auth", "password": password})
    assert created.status_code == 201, created.text
    assert set(created.json()) == {"id", "email", "name", "created_at"}  # never the hash
    issued = httpx.post(f"{lab2.member_url('users-1')}/auth/token", json={"email": email, "password": password})
    assert issued.status_code == 200 and issued.headers["cache-control"] == "no-store", issued.text
    return {"id": created.json()["id"], "email": email, "password": password, "token": issued.json()["access_token"]}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_401(response, code: str):
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == code and set(response.json()) == {"error", "detail"}
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_password_hashes_are_salted_and_verified_in_constant_form():
    first, second = auth.hash_password("correct horse"), auth.hash_password("correct horse")
    assert first != second and first.startswith("scrypt$")
    assert auth.verify_password("correct horse", first)
    assert not auth.verify_password("wrong horse", first)
    assert not auth.verify_password("correct horse", None)  # unknown user: still a full hash, still False


def test_reference_verify_token_accepts_a_good_token_and_refuses_every_bad_one():
    secret = "s" * 40
    now = int(time.time())
    good = jwt.encode({"sub": "7", "iat": now, "exp": now + 60}, secret, algorithm="HS256")
    assert verify_token(good, secret)["sub"] == "7"
    for what, token in lab02.bad_tokens(secret).items():
        with pytest.raises(jwt.InvalidTokenError):
            verify_token(token, secret)


def test_a_token_from_one_replica_is_accepted_by_every_replica(lab2, account):
    for member in lab2.members("users"):
        answer = httpx.patch(f"{lab2.member_url(member)}/users/{account['id']}", json={"name": f"By {member}"},
                             headers=bearer(account["token"]))
        assert answer.status_code == 200 and answer.json()["name"] == f"By {member}", answer.text
        assert answer.headers["x-instance"] == member


def test_missing_and_malformed_tokens_are_401_json(lab2, account):
    url = f"{lab2.url()}/users/{account['id']}"
    missing = httpx.patch(url, json={"name": "X"})
    assert_401(missing, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_401(httpx.patch(url, json={"name": "X"}, headers={"Authorization": "Basic abc"}), "invalid_token")
    assert_401(httpx.delete(url, headers=bearer("not.a.token")), "invalid_token")


@pytest.mark.parametrize("kind", list(lab02.bad_tokens("x" * 40)))
def test_bad_tokens_are_refused_with_401_through_nginx(lab2, account, kind):
    token = lab02.bad_tokens(local_users.jwt_secret(lab2.runtime), sub=str(account["id"]))[kind]
    answer = httpx.patch(f"{lab2.url()}/users/{account['id']}", json={"name": "Mallory"}, headers=bearer(token))
    assert_401(answer, "token_expired" if kind.startswith("expired") else "invalid_token")
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


def test_a_short_lived_token_expires_and_then_gets_401(lab2, account):
    short = httpx.post(f"{lab2.url()}/auth/token",
                       json={"email": account["email"], "password": account["password"], "ttl_s": 1}).json()
    assert short["expires_in"] == 1
    url = f"{lab2.url()}/users/{account['id']}"
    assert httpx.patch(url, json={"name": "Quick"}, headers=bearer(short["access_token"])).status_code == 200
    deadline = time.monotonic() + 5
    while (answer := httpx.patch(url, json={"name": "Late"}, headers=bearer(short["access_token"]))).status_code == 200:
        assert time.monotonic() < deadline, "a 1 s token still works after 5 s"
        time.sleep(0.2)
    assert_401(answer, "token_expired")


def test_a_token_cannot_change_another_user_but_can_delete_its_own(lab2, account):
    other = httpx.post(f"{lab2.url()}/users", json={"email": f"o-{uuid.uuid4().hex[:8]}@example.com", "name": "O"})
    denied = httpx.delete(f"{lab2.url()}/users/{other.json()['id']}", headers=bearer(account["token"]))
    assert denied.status_code == 403 and denied.json()["error"] == "forbidden"
    mine = httpx.delete(f"{lab2.url()}/users/{account['id']}", headers=bearer(account["token"]))
    assert mine.status_code == 204
    assert httpx.get(f"{lab2.url()}/users/{account['id']}").status_code == 404


def test_wrong_password_and_unknown_email_get_the_same_401(lab2, account):
    wrong = httpx.post(f"{lab2.url()}/auth/token", json={"email": account["email"], "password": "nope-nope"})
    unknown = httpx.post(f"{lab2.url()}/auth/token", json={"email": "nobody@example.com", "password": "nope-nope"})
    assert_401(wrong, "invalid_credentials")
    assert_401(unknown, "invalid_credentials")
    assert wrong.json() == unknown.json()


def test_a_too_short_password_is_422(lab2):
    answer = httpx.post(f"{lab2.url()}/users", json={"email": "short@example.com", "name": "S", "password": "1234"})
    assert answer.status_code == 422 and answer.json()["error"] == "validation_error"
    assert "1234" not in answer.text
