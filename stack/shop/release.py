"""What a colour of the user service runs, beyond the code: ``green.json`` (lab 06, deploys).

Lab 06's blue-green and canary steps run a second colour of the user service beside the first:
``green-1``, ``green-2``. The notebook writes the release green runs into the lab workspace and
deploys it with a rolling restart of green; the members of green read it at start
(``SHOP_RELEASE_FILE``, a file name in the workspace). One setting is all a release needs here:

``planted_error_rate``  the share of API requests (probes and metrics aside) answered 500 — a bug
                        planted on purpose so that a canary has something to catch; 0 = none.

No file (or no ``SHOP_RELEASE_FILE``): a release without a planted bug.
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path

from shop.errors import send_error

PROBES = ("/health", "/ready", "/metrics")   # what the orchestrator asks: a bad release still passes them


class ReleaseError(ValueError):
    """The release file holds something the service cannot run: the message names it."""


@dataclass(frozen=True)
class Release:
    planted_error_rate: float = 0.0


def parse(text: str, name: str) -> Release:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReleaseError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) - {"planted_error_rate"}:
        raise ReleaseError(f"{name} must be an object with at most planted_error_rate, got {text.strip()[:80]}")
    rate = data.get("planted_error_rate", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ReleaseError(f"{name}: planted_error_rate must be a number from 0 to 1, got {rate!r}")
    return Release(float(rate))


def load(workspace: Path | None, name: str | None) -> Release:
    """The release in ``<workspace>/<name>``; the default release when either is unset or it is missing."""
    if not name or workspace is None or not (Path(workspace) / name).exists():
        return Release()
    return parse((Path(workspace) / name).read_text(), name)


class PlantedErrors:
    """Answer a share ``rate`` of the API's requests with a JSON 500, as a buggy release would."""

    def __init__(self, app, rate: float, draw=random.random):
        self.app = app
        self.rate = rate
        self.draw = draw

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not scope["path"].startswith(PROBES) and self.draw() < self.rate:
            return await send_error(send, 500, "internal_error", "the service failed on this request "
                                    "(a bug planted in this release: lab 06's canary step)")
        await self.app(scope, receive, send)
