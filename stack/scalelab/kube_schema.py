"""Validate Kubernetes manifests against the official OpenAPI schema, offline.

    problems = validate(yaml_text)          # [] when every document is valid
    problems = validate(docs, version="1.34.0")

The schemas ship inside the ``kubernetes-validate`` wheel (one per Kubernetes minor
version), so this works without a cluster and without a network. ``strict`` schemas
reject unknown fields: a typo such as ``contianers:`` is an error, not silently ignored.
"""

from collections.abc import Iterable
from typing import Any

import yaml

# kind 0.30's node image (and make kind-offline's) runs Kubernetes 1.34: the version the lab's
# manifests target.
KUBERNETES_VERSION = "1.34.0"


def documents(source: str | Iterable[dict]) -> list[dict]:
    """YAML text (one or more ``---`` documents) or already-parsed objects → a list of objects."""
    if isinstance(source, str):
        docs = list(yaml.safe_load_all(source))
    else:
        docs = list(source)
    return [doc for doc in docs if doc]


def _name(doc: Any) -> str:
    if not isinstance(doc, dict):
        return repr(doc)[:40]
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?') if isinstance(meta, dict) else '?'}"


def validate(source: str | Iterable[dict], version: str = KUBERNETES_VERSION, strict: bool = True) -> list[str]:
    """Every schema violation, as one line each (``Deployment/users: spec.replicas: 'x' is not of type ...``)."""
    import kubernetes_validate

    try:
        docs = documents(source)
    except yaml.YAMLError as exc:
        return [f"not valid YAML: {str(exc).splitlines()[0]}"]
    if not docs:
        return ["no Kubernetes objects found"]
    problems = []
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            problems.append(f"{_name(doc)}: every object needs apiVersion and kind")
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=strict)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path) or "(top level)"
            problems.append(f"{_name(doc)}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{_name(doc)}: no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes {version}")
    return problems
