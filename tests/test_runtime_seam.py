"""The seam between the labs and the runtimes (runtimes/base.py), held for every runtime.

Checked on the runtime classes, so it runs without Docker or a cluster: each implements the
core protocol with the protocol's parameters; the capabilities each has are the ones
docs/ARCHITECTURE.md lists; a stack whose runtime lacks one says so in one line; the labs
talk to ``Stack`` only.
"""

import inspect
import re
from pathlib import Path

import pytest

from scalelab import Stack
from scalelab.errors import ScalelabError
from scalelab.runtimes import RUNTIMES, runtime_class, runtimes_with
from scalelab.runtimes.base import CAPABILITIES, Runtime, has_capability, protocol_methods

REPO = Path(__file__).resolve().parents[1]

# What each runtime can do beyond the core (docs/ARCHITECTURE.md's table says the same).
EXPECTED = {
    "local": {"replication", "alert_rules", "inside_url", "cpu_meter", "rabbitmq", "wipe", "tls", "kafka"},
    "compose": {"replication", "alert_rules", "inside_url", "cpu_meter", "rabbitmq", "tls", "kafka"},
    "kind": {"replication", "alert_rules", "inside_url", "cpu_meter", "rabbitmq", "apply", "wipe", "tls", "kafka"},
    "kubernetes": {"replication", "alert_rules", "inside_url", "cpu_meter", "rabbitmq", "apply", "wipe", "tls", "kafka"},
}


def _parameters(function) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in list(inspect.signature(function).parameters.values())[1:]]


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_the_runtime_implements_the_core_protocol_with_its_parameters(name):
    cls = runtime_class(name)
    assert isinstance(getattr(cls, "name", None), str) and cls.name == name
    for method in protocol_methods(Runtime):
        implemented = getattr(cls, method, None)
        assert callable(implemented), f"{cls.__name__} lacks {method}()"
        assert _parameters(implemented) == _parameters(getattr(Runtime, method)), \
            f"{cls.__name__}.{method}{inspect.signature(implemented)} differs from the protocol's"


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_the_runtime_has_the_capabilities_the_architecture_lists_with_their_parameters(name):
    cls = runtime_class(name)
    assert {c for c in CAPABILITIES if has_capability(cls, c)} == EXPECTED[name]
    for capability in EXPECTED[name]:
        protocol, _ = CAPABILITIES[capability]
        for method in protocol_methods(protocol):
            assert _parameters(getattr(cls, method)) == _parameters(getattr(protocol, method)), \
                f"{cls.__name__}.{method} differs from {protocol.__name__}'s"


def test_architecture_md_lists_each_runtimes_capabilities():
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    for name, capabilities in EXPECTED.items():
        row = re.search(rf"^\| `{name}` \|[^\n]*\| ([a-z_, ]+) \|$", text, flags=re.M)
        assert row, f"ARCHITECTURE.md's capability table has no row for {name}"
        assert set(row[1].replace(" ", "").split(",")) == capabilities, (name, row[1])


def test_a_capability_the_runtime_lacks_is_one_line_naming_the_runtimes_that_have_it(tmp_path):
    stack = Stack(lab=6, state_dir=tmp_path)            # local: nothing started by Stack()
    with pytest.raises(ScalelabError) as refused:
        stack.apply([{"kind": "Deployment"}])
    message = str(refused.value)
    assert "\n" not in message and "on the local runtime" in message
    assert all(f'runtime="{name}"' in message for name in runtimes_with("apply"))
    assert not stack.supports("apply") and stack.supports("cpu_meter")


def test_labs_talk_to_the_stack_only():
    for path in sorted((REPO / "stack" / "scalelab" / "labs").rglob("*.py")):
        text = path.read_text()
        assert not re.search(r"\bstack\.runtime\b", text), f"{path.relative_to(REPO)} reaches around Stack"
    for path in sorted((REPO / "solutions").glob("*.ipynb")):
        assert "stack.runtime." not in path.read_text(), f"{path.name} reaches around Stack"


# -- what the runtimes share ----------------------------------------------------------------------
def test_nginx_install_tested_falls_back_to_the_501_entry_or_refuses_when_strict():
    from scalelab.errors import ServiceFailed
    from scalelab.runtimes.common.nginx import ConfigRejected, install_tested

    def render(upstream, reason, tls=None, tls_reason=""):
        return (f"upstream {upstream}" if upstream is not None else f"501 {reason}") + (f" + {tls}" if tls else "")

    def nginx_t(text):
        return "invalid parameter" if "bad" in text else None

    installed = []
    assert install_tested(render, nginx_t, installed.append, "good", "/ws/upstream.conf", strict=True) == "upstream good"
    text = install_tested(render, nginx_t, installed.append, "bad", "/ws/upstream.conf", strict=False)
    assert text == "501 nginx rejected upstream.conf: invalid parameter" and installed == ["upstream good", text]
    with pytest.raises(ConfigRejected, match="nginx rejected upstream.conf: invalid parameter"):
        install_tested(render, nginx_t, installed.append, "bad", "/ws/upstream.conf", strict=True)
    with pytest.raises(ServiceFailed, match="the lab's own template"):
        install_tested(lambda *_: "bad template", nginx_t, installed.append, "x", "/ws/u.conf", strict=False)
    assert len(installed) == 2, "nothing nginx refused was installed"
    # tls.conf (lab 02): refused alone, it is left out at start and named when strict; the upstream stays
    assert install_tested(render, nginx_t, installed.append, "good", "/ws/upstream.conf", strict=False,
                          tls=("bad tls", "/ws/tls.conf")) == "upstream good"
    with pytest.raises(ConfigRejected, match="nginx rejected tls.conf: invalid parameter"):
        install_tested(render, nginx_t, installed.append, "good", "/ws/upstream.conf", strict=True,
                       tls=("bad tls", "/ws/tls.conf"))
    assert install_tested(render, nginx_t, installed.append, "good", "/ws/upstream.conf", strict=True,
                          tls=("ssl on", "/ws/tls.conf")) == "upstream good + ssl on"


def test_every_runtime_names_an_unknown_member_in_the_same_words(tmp_path):
    """local, compose and kubernetes raise the one NoSuchMember (runtimes/common/members.py); on local:"""
    from scalelab.runtimes.common.members import NoSuchMember, no_member
    error = no_member("users-9", ["users-1", "users-2"], of="users")
    assert isinstance(error, NoSuchMember) and str(error) == (
        "no member 'users-9' in this stack; members of users: users-1, users-2")
    assert str(no_member("redis-1", [])) == "no member 'redis-1' in this stack; members: none (is the stack up?)"
    with pytest.raises(NoSuchMember, match="no member 'users-9'"):
        Stack(lab=1, state_dir=tmp_path).logs("users-9")
