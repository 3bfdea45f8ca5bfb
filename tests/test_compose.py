"""The ``compose`` runtime against a real Docker engine: containers built from stack/deploy.

Marked ``compose``: ``make test`` runs these after stack/deploy/ensure-docker.sh made an
engine available (and says so in one line where it cannot).
"""

import uuid

import httpx
import pytest

from scalelab import Stack
from scalelab.errors import RuntimeUnavailable, ScalelabError

from conftest import completed_stack, unavailable

pytestmark = pytest.mark.compose


def compose_stack(state_dir, lab: int = 1) -> Stack:
    return completed_stack(state_dir, lab, "compose")


def project_resources(stack) -> dict[str, list]:
    client, labels = stack.runtime.client, {"label": f"com.docker.compose.project={stack.runtime.project}"}
    return {"containers": client.containers.list(all=True, filters=labels),
            "networks": client.networks.list(filters=labels),
            "volumes": client.volumes.list(filters=labels)}


@pytest.fixture(scope="module")
def cstack(tmp_path_factory):
    stack = compose_stack(tmp_path_factory.mktemp("compose-state"))
    yield stack
    stack.down()


@pytest.fixture
def capi(cstack):
    with httpx.Client(base_url=cstack.url("users"), timeout=10) as client:
        yield client


def test_a_second_up_reuses_the_running_containers(cstack):
    before = cstack.status().set_index("member").pid.to_dict()
    assert cstack.runtime.up(cstack.plan, cstack.workspace) is False
    assert cstack.status().set_index("member").pid.to_dict() == before
    assert list(before) == ["postgres", "users-1"]


def test_lab01_api_serves_crud_and_json_errors_from_containers(capi):
    email = f"c-{uuid.uuid4().hex[:8]}@example.com"
    created = capi.post("/users", json={"email": email, "name": "Compose Ada"})
    assert created.status_code == 201, created.text
    user = created.json()
    got = capi.get(f"/users/{user['id']}")
    assert got.status_code == 200 and got.json() == user and got.headers["x-instance"] == "users-1"
    assert capi.get(f"/users/{user['id'] + 10**6}").status_code == 404
    bad = capi.post("/users", json={"email": "not-an-email", "name": "X"})
    assert bad.status_code == 422 and "error" in bad.json()


def test_the_stack_reaches_postgres_through_a_loopback_port_as_the_app_role(cstack):
    from scalelab import db
    assert db.fetchval(cstack.database_url("app"), "SELECT current_user") == "shop"
    assert cstack.database_url().startswith("postgresql://shop:") and "@127.0.0.1:" in cstack.database_url()


def test_every_port_is_published_on_loopback_only_and_no_container_runs_as_root(cstack):
    for container in project_resources(cstack)["containers"]:
        container.reload()
        for bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).values():
            assert all(b["HostIp"] == "127.0.0.1" for b in bindings or []), container.name
        assert container.attrs["Config"]["User"] not in ("", "root", "0"), container.name


def test_killed_member_stays_down_until_started_then_serves_on_the_same_url(cstack):
    url, old_pid = cstack.url("users"), cstack.status().set_index("member").loc["users-1", "pid"]
    cstack.kill("users-1")
    assert cstack.status().set_index("member").loc["users-1", "state"] == "stopped"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=3)
    cstack.start("users-1")
    assert cstack.url("users") == url, "a restarted member keeps its host port, as on local"
    assert httpx.get(f"{url}/ready", timeout=5).status_code == 200
    assert cstack.status().set_index("member").loc["users-1", "pid"] != old_pid


def test_a_restarted_store_keeps_its_url(cstack):
    dsn = cstack.database_url()
    cstack.restart("postgres")
    assert cstack.database_url() == dsn


def test_sigterm_shuts_the_service_down_gracefully_inside_its_container(cstack):
    cstack.restart("users-1")
    log = cstack.logs("users-1", tail=200)
    assert "Shutting down" in log and "pool closed" in log
    assert httpx.get(f"{cstack.url('users')}/health", timeout=5).status_code == 200


def test_logs_show_the_member_output(cstack):
    assert "Application startup complete" in cstack.logs("users-1", tail=200)
    with pytest.raises(ScalelabError, match="no member 'users-9'"):
        cstack.logs("users-9")


def test_scaling_out_and_in_names_replicas_like_local(cstack):
    cstack.scale("users", 2)
    try:
        members = cstack.members("users")
        assert members == ["users-1", "users-2"]
        seen = {httpx.get(f"{cstack.member_url(m)}/health", timeout=5).headers["x-instance"] for m in members}
        assert seen == set(members)
    finally:
        cstack.scale("users", 1)
    assert cstack.members("users") == ["users-1"]


def test_down_removes_every_container_network_and_volume_it_created(tmp_path):
    stack = compose_stack(tmp_path / "state")
    assert all(project_resources(stack).values()), "up created containers, a network and the data volume"
    stack.down()
    assert project_resources(stack) == {"containers": [], "networks": [], "volumes": []}
    stack.down()   # safe to call twice


def test_compose_file_runs_by_hand_with_healthchecks_ordering_the_start(tmp_path):
    """`docker compose up --scale users=2` as a learner runs it: no driver, the baked nginx config."""
    import subprocess

    from scalelab.runtimes.common import engine as compose_engine
    from scalelab.runtimes.common import images as compose_images
    try:
        client = compose_engine.connect()
        tag = compose_images.ensure(client, tmp_path / "build.log")
    except RuntimeUnavailable as exc:
        unavailable("compose", exc)
    (tmp_path / "shop.env").write_text("SHOP_JWT_SECRET=" + "k" * 40 + "\n")
    (tmp_path / ".env").write_text(f"SCALELAB_TAG={tag}\nPOSTGRES_PASSWORD=pg-{uuid.uuid4().hex}\n"
                                   f"SHOP_DB_PASSWORD=shop-{uuid.uuid4().hex}\nREDIS_PASSWORD=r-{uuid.uuid4().hex}\n"
                                   f"RABBITMQ_PASSWORD=mq-{uuid.uuid4().hex}\n"
                                   f"SHOP_ENV_FILE={tmp_path / 'shop.env'}\nNGINX_PORT=0\n")
    deploy = compose_images.DEPLOY
    compose = [*compose_engine.compose_command(), "-p", f"byhand{uuid.uuid4().hex[:6]}",
               "-f", str(deploy / "compose.yaml"), "--env-file", str(tmp_path / ".env")]

    def run(*args, timeout=240):
        return subprocess.run([*compose, *args], capture_output=True, text=True, timeout=timeout, cwd=deploy)

    try:
        up = run("up", "-d", "--scale", "users=2")
        assert up.returncode == 0, up.stderr[-1500:]
        port = run("port", "nginx", "8080").stdout.strip().rsplit(":", 1)[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            created = api.post("/users", json={"email": f"h-{uuid.uuid4().hex[:8]}@example.com", "name": "By Hand"})
            assert created.status_code == 201, created.text
            seen = {api.get("/health").headers["x-instance"] for _ in range(10)}
        assert seen == {"users-1", "users-2"}
    finally:
        down = run("down", "--volumes", "--remove-orphans", "--timeout", "15")
        assert down.returncode == 0, down.stderr[-800:]


def test_images_carry_no_build_secret_and_no_password(cstack):
    client, tag = cstack.runtime.client, cstack.runtime.tag
    for name in ("shop", "postgres", "valkey", "nginx"):
        image = client.images.get(f"scalelab/{name}:{tag}")
        steps = " ".join(step.get("CreatedBy", "") for step in image.history())
        assert "secrets" not in steps and "pip_ca" not in steps, f"{name}: a build-stage step reached the image"
        env = " ".join(image.attrs["Config"].get("Env") or [])
        assert "PIP_CERT" not in env and "PASSWORD" not in env and "SECRET" not in env, name
