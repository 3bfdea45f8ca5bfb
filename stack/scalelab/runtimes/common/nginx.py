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

import re
from collections.abc import Callable
from pathlib import Path

import httpx

from scalelab.errors import ScalelabError, ServiceFailed
from scalelab.plans import plan_for
from scalelab.waiting import wait_until

FRONTS = "users"            # while nginx runs, the stack's url("users") is nginx's URL
EXERCISE = "upstream"       # the plan's exercise name; the learner's file is upstream.conf
DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "nginx"
TEMPLATE = DEPLOY / "nginx.conf.template"
REFERENCE = DEPLOY / "reference" / "upstream.conf"
STUB_MARK = "YOUR CODE HERE"


class ConfigRejected(ScalelabError):
    """``nginx -t`` refused the rendered configuration; the message is nginx's own."""


# -- the upstream block ----------------------------------------------------------------------
def upstream_source(rt) -> tuple[str | None, str]:
    """``(text, origin)`` of the upstream block; text is None while the exercise is not done."""
    if EXERCISE not in plan_for(rt.lab).exercises:
        return REFERENCE.read_text(), str(REFERENCE)
    path = Path(rt.workspace) / f"{EXERCISE}.conf"
    if not path.exists():
        return None, f"{path.name} is not in the workspace yet: run its exercise cell"
    text = path.read_text()
    if STUB_MARK in text:
        return None, f"{path.name} is still the stub: write the upstream block"
    return text, str(path)


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


def install_tested(render: Callable[[str | None, str], str], test: Callable[[str], str | None],
                   install: Callable[[str], None], upstream: str | None, origin: str, strict: bool) -> str:
    """Render ``upstream`` (from ``origin``), ``test`` it (nginx -t: None, or nginx's complaint) and
    ``install`` it; returns the text installed. When nginx refuses it, strict=True raises
    ConfigRejected (the running nginx keeps its configuration); strict=False installs the 501
    entry instead, with nginx's complaint in its body (at start: the stack still comes up).
    ``render(upstream, reason)`` renders the upstream, or the 501 entry saying ``reason`` when None."""
    text = render(upstream, origin)
    if (problem := test(text)) is not None:
        if strict or upstream is None:
            raise ConfigRejected(f"nginx rejected {Path(origin).name}: {problem}")
        text = render(None, f"nginx rejected {Path(origin).name}: {problem}")
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
