"""nginx in front of the user service, as every runtime runs it: the pieces they share.

The configuration is ``stack/deploy/nginx/nginx.conf.template`` filled in around an upstream
block: the learner's ``upstream.conf`` from the lab workspace when the plan lists the ``upstream``
exercise (lab 02), the reference solution in later labs (``upstream_source``). Every line of it
that holds ``{address}`` is repeated once per member of the fronted service (``expand``). Until
that exercise is written, or when nginx refuses it at start, nginx answers every request with a
JSON 501 saying so (``_not_configured``). ``install_tested`` is the sequence every runtime's
nginx goes through: render, ``nginx -t``, fall back to the 501 entry on a refusal, install.
How a runtime renders, tests and installs is its own (``local/nginx.py``: a file and a process;
``compose/nginx.py``: a bind mount and ``docker exec``; ``kubernetes/nginx.py``: ``kubectl exec``).
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from scalelab.errors import ScalelabError, ServiceFailed
from scalelab.plans import plan_for
from scalelab.waiting import wait_until

FRONTS = "users"            # while nginx runs, the stack's url("users") is nginx's URL
# The services whose members nginx balances over: the FastAPI replicas, and lab 02's Express ones
# (stack/shop-node: the same API on the same database, in another language), and lab 06's green
# colour of the user service (blue-green and canary deploys beside the blue one, ``users``).
UPSTREAM = ("users", "express", "green")
ROUTES = "routes.json"      # in the runtime's home: the traffic split Stack.route() set (lab 06)
WEIGHT_UNIT = 60            # a member's weight: its service's share · 60 / its members (exact for 1..6)
EXERCISE = "upstream"       # the plan's exercise name; the learner's file is upstream.conf
DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "nginx"
TEMPLATE = DEPLOY / "nginx.conf.template"
REFERENCE = DEPLOY / "reference" / "upstream.conf"
STUB_MARK = "YOUR CODE HERE"
TLS_EXERCISE = "tls"        # lab 02's tls.conf: HTTPS on nginx, and the port that redirects to it
TLS_REFERENCE = DEPLOY / "reference" / "tls.conf"
ENTRY_START, ENTRY_END = "# ---- the entry:", "# ---- end of the entry"
TLS_PLACEHOLDERS = ("tls_listen", "redirect_listen", "https_port", "certificate", "certificate_key", "entry")


@dataclass(frozen=True)
class TlsEntry:
    """Where a client reaches nginx's HTTPS, the plain-HTTP port that redirects to it, and the CA
    to trust (``Stack.tls_entry()``)."""
    https_url: str
    redirect_url: str
    ca_file: Path
    certificate_file: Path      # what nginx serves: its certificate, then the CA's


class ConfigRejected(ScalelabError):
    """``nginx -t`` refused the rendered configuration; the message is nginx's own."""


# -- the upstream block ----------------------------------------------------------------------
def _learners_file(rt, exercise: str, to_write: str) -> tuple[str | None, str]:
    """``(text, origin)`` of ``<exercise>.conf`` in the workspace; None and why while not written."""
    path = Path(rt.workspace) / f"{exercise}.conf"
    if not path.exists():
        return None, f"{path.name} is not in the workspace yet: run its exercise cell"
    text = path.read_text()
    if STUB_MARK in text:
        return None, f"{path.name} is still the stub: write {to_write}"
    return text, str(path)


def upstream_source(rt) -> tuple[str | None, str]:
    """``(text, origin)`` of the upstream block; text is None while the exercise is not done."""
    if EXERCISE not in plan_for(rt.lab).exercises:
        return REFERENCE.read_text(), str(REFERENCE)
    return _learners_file(rt, EXERCISE, "the upstream block")


def has_tls(lab: int | None) -> bool:
    """Whether lab ``lab``'s nginx serves HTTPS (the plan lists the tls exercise: lab 02)."""
    return lab is not None and TLS_EXERCISE in plan_for(lab).exercises


def no_tls(lab: int | None) -> ScalelabError:
    """The one-line error of ``tls_entry()`` in a lab without HTTPS."""
    return ScalelabError(f"lab {lab}'s nginx serves no HTTPS: TLS at the edge is lab 02's")


def tls_source(rt) -> tuple[str | None, str]:
    """``(text, origin)`` of tls.conf; text is None when the lab has no TLS or it is not written yet."""
    if not has_tls(rt.lab):
        return None, "no HTTPS in this lab (TLS at the edge is lab 02's)"
    return _learners_file(rt, TLS_EXERCISE, "the HTTPS server")


def unknown_placeholders(text: str) -> list[str]:
    """``{name}`` tokens outside comments that are not one of TLS_PLACEHOLDERS."""
    found = re.findall(r"\{([A-Za-z_]\w*)\}", "\n".join(line.split("#", 1)[0] for line in text.splitlines()))
    return sorted(set(found) - set(TLS_PLACEHOLDERS))


def with_tls(text: str, tls: str | None, reason: str, values: dict[str, str]) -> str:
    """Fill the template's ``{{tls}}`` in the rendered ``text``: tls.conf with its placeholders
    (``values``: tls_listen, redirect_listen, https_port, certificate, certificate_key) filled, and
    every ``{entry}`` line replaced by the main server's entry (its locations and error pages),
    so HTTPS serves exactly what the plain port serves. Without tls.conf: a comment saying why."""
    if tls is None:
        return text.replace("{{tls}}", f"    # not configured: {reason}")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if ENTRY_START in line)
    end = next(i for i, line in enumerate(lines) if ENTRY_END in line)
    entry = lines[start + 1:end]
    margin = min(len(line) - len(line.lstrip()) for line in entry if line.strip())
    block: list[str] = []
    for line in tls.splitlines():
        code = line.split("#", 1)[0]
        if "{entry}" in code:
            indent = line[:len(line) - len(line.lstrip())]
            block.extend(f"{indent}{body[margin:]}" if body.strip() else "" for body in entry)
            continue
        for key, value in values.items():
            code = code.replace("{" + key + "}", value)
        block.append(code + line[len(line.split("#", 1)[0]):])
    rendered = "\n".join(f"    {line}" if line.strip() else "" for line in block)
    return text.replace("{{tls}}", rendered)


# -- the traffic split (lab 06: blue-green and canary) ----------------------------------------
def routes(rt) -> dict[str, int] | None:
    """The split ``Stack.route`` set (service -> percent of the requests); None: every member alike."""
    path = Path(rt.home) / ROUTES
    return json.loads(path.read_text()) if path.exists() else None


def set_routes(rt, shares: dict[str, int] | None) -> None:
    path = Path(rt.home) / ROUTES
    if shares is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps(shares))


def route(rt, shares: dict[str, int] | None) -> None:
    """Every runtime's ``route``: keep the split (``shares`` validated by ``Stack.route``; None:
    none) and reload the running nginx with it; a reload that fails puts the split back."""
    before = routes(rt)
    if shares is None and before is None:
        return
    set_routes(rt, shares)
    lab = rt.running_lab()
    if lab is None or not plan_for(lab).has("nginx") or not rt.members("nginx"):
        return
    try:
        rt.reload("nginx")
    except BaseException:
        set_routes(rt, before)
        raise


def carries_traffic(rt, service: str) -> bool:
    """Whether nginx sends ``service`` requests: always without a split, else when its share is > 0
    (a restarted member of a service with no share is not waited for in nginx's rotation)."""
    shares = routes(rt)
    return shares is None or shares.get(service, 0) > 0


def weighted(rt, addresses: dict[str, list[str]]) -> list[str]:
    """The upstream's servers from each service's member addresses: all of them, alike, without a
    split; with one, the members of each service that has a share, as ``address weight=N`` so that
    the service gets its share of the requests (nginx's weighted round robin), the others left out."""
    shares = routes(rt)
    if shares is None:
        return [address for found in addresses.values() for address in found]
    servers: list[str] = []
    for service, found in addresses.items():
        if shares.get(service, 0) > 0 and found:
            weight = max(1, round(shares[service] * WEIGHT_UNIT / len(found)))
            servers.extend(f"{address} weight={weight}" for address in found)
    return servers


def expand(text: str, addresses: list[str]) -> str:
    """Repeat every line that holds ``{address}`` once per address; indent for ``http {}``."""
    lines: list[str] = []
    for line in text.splitlines():
        if "{address}" in line:
            lines.extend(line.replace("{address}", address) for address in addresses)
        else:
            lines.append(line)
    return "\n".join(f"    {line}" if line.strip() else "" for line in lines)


def _not_configured(reason: str) -> str:
    # An nginx single-quoted string: no quotes, no $ (variables) in the text.
    detail = re.sub(r"[$'\\]", "", reason).replace('"', "`")
    return ("            default_type application/json;\n"
            f"            return 501 '{{\"error\":\"exercise_not_done\",\"detail\":\"{detail}\"}}';")


def explain(output: str, text: str) -> str:
    """nginx -t's complaint about the rendered ``text``, with the offending line quoted."""
    lines = [line for line in output.splitlines() if "[emerg]" in line or "[crit]" in line]
    message = (lines[0] if lines else output.strip()).split("] ", 1)[-1]
    message = re.sub(r"^\d+#\d+: ", "", message)
    if m := re.search(r" in (\S+):(\d+)$", message):
        rendered = text.splitlines()
        offending = rendered[int(m[2]) - 1].strip() if int(m[2]) <= len(rendered) else ""
        message = message[:m.start()] + (f" — in the line `{offending}`" if offending else "")
    return message


def install_tested(render: Callable[[str | None, str, str | None, str], str], test: Callable[[str], str | None],
                   install: Callable[[str], None], upstream: str | None, origin: str, strict: bool,
                   tls: tuple[str | None, str] = (None, "")) -> str:
    """Render ``upstream`` (from ``origin``) and ``tls`` (tls.conf's text and origin), ``test`` it
    (nginx -t: None, or nginx's complaint) and ``install`` it; returns the text installed. When
    nginx refuses it, strict=True raises ConfigRejected naming the learner's file at fault (the
    running nginx keeps its configuration); strict=False leaves out a refused tls.conf, and
    installs the 501 entry for a refused upstream, with nginx's complaint in its body (at start:
    the stack still comes up). ``render(upstream, reason, tls, tls_reason)`` renders the
    upstream (the 501 entry saying ``reason`` when None) and tls.conf (a comment when None)."""
    tls_text, tls_origin = tls
    text = render(upstream, origin, tls_text, tls_origin)
    problem = test(text)
    if problem is not None and tls_text is not None:
        refused = f"nginx rejected {Path(tls_origin).name}: {problem}"
        without = render(upstream, origin, None, refused)
        if test(without) is None:               # the upstream is fine: tls.conf is at fault
            if strict:
                raise ConfigRejected(refused)
            text, problem, tls_text, tls_origin = without, None, None, refused
    if problem is not None:
        if strict or upstream is None:
            raise ConfigRejected(f"nginx rejected {Path(origin).name}: {problem}")
        text = render(None, f"nginx rejected {Path(origin).name}: {problem}", None, "the upstream was refused")
        if (problem := test(text)) is not None:
            raise ServiceFailed(f"nginx rejected the lab's own template: {problem}")
    install(text)
    return text


def wait_until_routed(entry_url: str, member: str, timeout: float) -> bool:
    """Poll nginx at ``entry_url`` until a response comes from ``member`` (its X-Instance),
    at most ``timeout`` seconds; True if it did. Both runtimes use it after a restart."""
    with httpx.Client(base_url=entry_url, timeout=5) as client:   # polling nginx's choice
        return bool(wait_until(lambda: client.get("/health").headers.get("x-instance") == member, timeout,
                               interval=0.02, transient=httpx.TransportError))
