#!/usr/bin/env python3
"""Write the user API contract the Express replica publishes: stack/shop-node/openapi.json.

It is the FastAPI user service's own document (``shop.api.contract``), built with lab 02's
settings (tokens required, no rate limit), cut down to the paths the Express service serves.
One source, so the two kinds of replica cannot drift apart in what they promise; the tests
fuzz both against it and ``--check`` (run by the tests) says when this file is stale.

Usage: python tools/node_contract.py [--check]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "stack"))

TARGET = ROOT / "stack" / "shop-node" / "openapi.json"
PATHS = ("/health", "/ready", "/users", "/users/{user_id}", "/auth/token")


def document() -> dict:
    from shop.api import contract
    from shop.config import Settings
    from shop.main import create_app

    settings = Settings(auth_required=True, jwt_secret="x" * 32, redis_url=None, rate_limit=0, instance="contract")
    full = contract.build(create_app(settings), settings)
    paths = {path: full["paths"][path] for path in PATHS}
    used = set()

    def refs(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                name = node["$ref"].rsplit("/", 1)[-1]
                if name not in used:
                    used.add(name)
                    refs(full["components"]["schemas"][name])
            for value in node.values():
                refs(value)
        elif isinstance(node, list):
            for value in node:
                refs(value)

    refs(paths)
    schemas = {name: schema for name, schema in full["components"]["schemas"].items() if name in used}
    components = {**full["components"], "schemas": schemas}
    info = {**full["info"], "title": "shop users (Express replica)"}
    return {**full, "info": info, "paths": paths, "components": components}


def render() -> str:
    return json.dumps(document(), indent=1, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python tools/node_contract.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)} ({len(text)} bytes, {len(PATHS)} paths)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
