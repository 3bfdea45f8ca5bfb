"""Exercises with live checks, progressive hints and a solution to reveal.

    ex.fetch_user.check(stack)   # tests the live stack; prints a green line or raises CheckFailed
    ex.fetch_user.hint(1)        # progressive hints, never the whole answer
    ex.fetch_user.solution()     # the reference solution

A check that fails says *what is wrong*, as one short message (no traceback in
Jupyter), and names the next hint; an untouched stub says "not attempted yet".
"""

import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from scalelab.errors import ScalelabError
from scalelab.paths import REPO

GREEN, RED, RESET = "\033[32m", "\033[31m", "\033[0m"


class CheckFailed(ScalelabError):
    """A live check found something to fix; the message says what."""


class NotAttempted(CheckFailed):
    """The exercise is still the stub (or its cell has not been run)."""


def expect_status(response, status: int, what: str, then: str = ""):
    """A call the check relies on answered ``status``; else one CheckFailed naming the call
    (``what``), its answer (status and the start of the body) and ``then``: the fix, or where
    to look. Returns the response, so a check reads ``user = expect_status(...).json()``."""
    if response.status_code != status:
        raise CheckFailed(f"{what} answered {response.status_code} {response.text[:200]}{then}")
    return response


@dataclass
class Exercise:
    name: str                       # also the workspace file: <name>.py
    title: str
    checker: Callable               # checker(stack, exercise) -> str (what was proved)
    hints: list[str] = field(default_factory=list)
    reference: str | None = None    # module path of the reference solution, e.g. "shop.reference.pool"
    handle: str = ""                # how notebooks name it, e.g. "lab01.pool" (used in hints)
    last_result: str | None = None  # what the last passing check proved, measured

    def check(self, stack) -> None:
        try:
            proved = self.checker(stack, self)
        except NotAttempted as exc:
            raise NotAttempted(f"{self.title}: not attempted yet — {exc}{self._hint_pointer()}") from None
        except CheckFailed as exc:
            raise CheckFailed(f"{self.title}: {exc}{self._hint_pointer()}") from None
        except Exception as exc:        # never a traceback: what broke, in one message
            detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "no detail"
            raise CheckFailed(f"{self.title}: the check could not finish — {type(exc).__name__}: {detail}. "
                              "The stack may be unhealthy or very slow: stack.status() and stack.logs(member) "
                              f"show its side; run the check again{self._hint_pointer()}") from None
        self.last_result = proved
        print(f"{GREEN}✓ {self.title}{RESET}: {proved}")

    def hint(self, n: int = 1) -> None:
        if not self.hints:
            print("No hints for this one: read the cell above again.")
            return
        n = max(1, min(n, len(self.hints)))
        more = f"  (hint({n + 1}) for more)" if n < len(self.hints) else ""
        print(f"Hint {n}/{len(self.hints)}: {self.hints[n - 1]}{more}")

    def solution(self) -> None:
        if not self.reference:
            print("This exercise has no reference file; see solutions/ in the repository.")
            return
        print(reference_file(self).read_text())

    def _hint_pointer(self) -> str:
        handle = self.handle or self.name
        return f"\n  hint: {handle}.hint(1)  ·  stuck? {handle}.solution()" if self.hints else ""

    # -- helpers for checkers ---------------------------------------------------
    def workspace_file(self, stack) -> Path:
        return stack.workspace / f"{self.name}.py"

    def load(self, stack) -> ModuleType:
        """Import the learner's workspace file here too (checks call it directly)."""
        path = self.workspace_file(stack)
        if not path.exists():
            raise NotAttempted(f"run the exercise cell: it writes {path.name} into {path.parent}")
        spec = importlib.util.spec_from_file_location(f"learner_{self.name}", path)
        assert spec is not None and spec.loader is not None  # always set for an existing .py file
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise CheckFailed(f"{path.name} does not import: {type(exc).__name__}: {exc}") from None
        return module

    def function(self, stack, name: str) -> Callable:
        fn = getattr(self.load(stack), name, None)
        if fn is None:
            raise CheckFailed(f"{self.name}.py must define {name}()")
        if is_stub(fn):
            raise NotAttempted(f"{name}() still raises NotImplementedError: replace those two lines with your code")
        return fn


def is_stub(fn: Callable) -> bool:
    """True while a function's body is still the generated ``raise NotImplementedError()``."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    return "raise NotImplementedError" in source


def reference_file(exercise: Exercise) -> Path:
    """``reference`` is a module path (``shop.reference.pool``) or a repo-relative file path."""
    reference = exercise.reference
    assert reference is not None  # callers only ask for exercises that have one
    if "/" in reference:
        return REPO / reference
    spec = importlib.util.find_spec(reference)
    assert spec is not None and spec.origin is not None  # reference modules are plain .py files in the repo
    return Path(spec.origin)
