"""Learner code, loaded from the lab workspace, that the service really runs.

A notebook's exercise cell writes e.g. ``user_queries.py`` into the workspace; the
driver starts the service with ``SHOP_WORKSPACE=<dir>`` and ``SHOP_EXERCISES=["user_queries"]``.
Every exercise named there comes from the workspace; every other one from
``shop.reference`` (the completed earlier stages). A missing file or a stub still
raising ``NotImplementedError`` answers 501 ``exercise_not_done``; learner code that
crashes answers 500 ``exercise_error`` naming the exception, so the learner can fix it.
"""

import importlib
import importlib.util
import inspect
from pathlib import Path
from types import ModuleType

from shop.config import Settings
from shop.db import DB_UNAVAILABLE
from shop.errors import DomainError, ExerciseError, ExerciseNotDone


class Exercises:
    def __init__(self, settings: Settings):
        self._workspace = settings.workspace
        self._from_workspace = set(settings.exercises)
        self._modules: dict[str, ModuleType | Exception] = {}

    def source(self, name: str) -> str:
        """Where exercise ``name`` comes from: 'workspace' or 'reference'."""
        return "workspace" if name in self._from_workspace else "reference"

    def module(self, name: str) -> ModuleType:
        if name not in self._modules:
            self._modules[name] = self._load(name)
        loaded = self._modules[name]
        if isinstance(loaded, ExerciseNotDone):
            raise loaded
        if isinstance(loaded, Exception):
            raise ExerciseError(f"{name}.py failed to load: {type(loaded).__name__}: {loaded}")
        return loaded

    def _load(self, name: str) -> ModuleType | Exception:
        if name not in self._from_workspace:
            return importlib.import_module(f"shop.reference.{name}")
        path = Path(self._workspace or ".") / f"{name}.py"
        if not path.exists():
            return ExerciseNotDone(f"{path.name} is not in the workspace yet: run its exercise cell")
        spec = importlib.util.spec_from_file_location(f"workspace_{name}", path)
        assert spec is not None and spec.loader is not None  # always set for an existing .py file
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # learner code: report it, keep serving the rest
            return exc
        return module

    async def call(self, name: str, function: str, *args, passthrough: tuple[type[Exception], ...] = ()):
        """Call ``function`` of exercise ``name``; await it when it is a coroutine.

        Exceptions of the ``passthrough`` types reach the caller unchanged (e.g. Redis
        errors, which shop/cache.py turns into the database path).
        """
        fn = getattr(self.module(name), function, None)
        if fn is None:
            raise ExerciseError(f"{name}.py defines no function {function}()")
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                result = await result
        except NotImplementedError as exc:
            raise ExerciseNotDone(f"{function}() is still the stub: {exc or 'raise NotImplementedError()'}") from exc
        except (DomainError, *DB_UNAVAILABLE):
            raise  # a lost or slow database is not the learner's bug: db.connection() answers 503
        except passthrough:
            raise
        except Exception as exc:  # learner code: name the failure instead of a bare 500
            raise ExerciseError(f"{function}() raised {type(exc).__name__}: {exc}") from exc
        return result
