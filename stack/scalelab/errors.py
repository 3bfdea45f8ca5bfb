"""Errors that name the fix, in one line."""


class ScalelabError(Exception):
    """A problem the learner can act on; the message says what to do."""

    def _render_traceback_(self):  # IPython: show the message, not a traceback
        return [f"{type(self).__name__}: {self}"]


class UnknownLab(ScalelabError, ValueError):
    """A lab number that is not one of the labs (a typo in ``Stack(lab=...)`` or ``--lab``)."""


class RuntimeUnavailable(ScalelabError):
    """The chosen runtime (or a binary it needs) is not available on this machine."""


class ServiceFailed(ScalelabError):
    """A service did not become ready; the message carries its log tail."""
