"""Editors by name, so that simulations and LLM runs can swap them from a config string."""

from __future__ import annotations

from typing import Any

from .base import Editor, StateDictError
from .baselines import AlphaEditEditor, FTEditor, MEMITEditor, ROMEEditor
from .editor import RLSEditor
from .errors import ParameterError

EDITORS: dict[str, type[Editor]] = {
    cls.name: cls for cls in (RLSEditor, MEMITEditor, AlphaEditEditor, ROMEEditor, FTEditor)
}


def make_editor(name: str, W0: Any, **kwargs: Any) -> Editor:
    """Build the editor called ``name`` (one of :data:`EDITORS`); kwargs go to its constructor.

    An option the editor does not take raises ``TypeError``: nothing is silently ignored.
    """
    try:
        cls = EDITORS[name]
    except KeyError:
        raise ParameterError(f"unknown editor {name!r}; choose one of {sorted(EDITORS)}") from None
    return cls(W0, **kwargs)


def editor_from_state_dict(state: dict[str, Any]) -> Editor:
    """Rebuild whichever editor wrote ``state`` (its ``"editor"`` entry names the class)."""
    name = state.get("editor") if isinstance(state, dict) else None
    if not isinstance(name, str) or name not in EDITORS:
        raise StateDictError(f"state names no known editor ({name!r}); known: {sorted(EDITORS)}")
    return EDITORS[name].from_state_dict(state)
