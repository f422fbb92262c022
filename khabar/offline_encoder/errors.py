"""The one error the offline-encoder builder raises."""
from __future__ import annotations


class BackboneError(RuntimeError):
    """A backbone cannot be built or checked; the message is one line that says what to do."""
