"""What every runtime says about its members the same way: a name that is not one of them."""

from collections.abc import Iterable

from scalelab.errors import ScalelabError


class NoSuchMember(ScalelabError):
    """``stack.logs("users-9")``, ``stack.kill("redis")`` ...: not a member of the running stack."""


def no_member(member: str, known: Iterable[str], of: str | None = None) -> NoSuchMember:
    """The one-line error for ``member``, naming the members there are (those of service ``of``)."""
    names = ", ".join(known) or "none (is the stack up?)"
    return NoSuchMember(f"no member {member!r} in this stack; members{f' of {of}' if of else ''}: {names}")
