"""rlsedit: lifelong editing of linear maps (and LLM MLP layers) with soft recursive least squares.

The solver core knows nothing of language models: it imports torch and numpy only.

Row convention throughout (PAPER.md section 2): W is (d_k, d_v), keys K are (u, d_k), values V are
(u, d_v), and V ~ K W. For a torch ``nn.Linear`` the map is ``weight.T``.
"""

from .anchor import Anchor
from .base import Editor, StateDictError, UpdateRecord
from .baselines import AlphaEditEditor, FTEditor, MEMITEditor, ROMEEditor, null_space_projector
from .closed_form import ObjectiveValue, batch_solve, objective
from .editor import RLSEditor
from .errors import (
    AnchorError,
    DTypeError,
    EmptyBatchError,
    FactorizationError,
    NonFiniteError,
    NotAppliedError,
    NoUniqueSolutionError,
    RLSEditError,
    ShapeError,
)
from .registry import EDITORS, editor_from_state_dict, make_editor

__version__ = "0.1.0"

__all__ = [
    "EDITORS",
    "AlphaEditEditor",
    "Anchor",
    "AnchorError",
    "DTypeError",
    "Editor",
    "EmptyBatchError",
    "FTEditor",
    "FactorizationError",
    "MEMITEditor",
    "NoUniqueSolutionError",
    "NonFiniteError",
    "NotAppliedError",
    "ObjectiveValue",
    "RLSEditError",
    "RLSEditor",
    "ROMEEditor",
    "ShapeError",
    "StateDictError",
    "UpdateRecord",
    "__version__",
    "batch_solve",
    "editor_from_state_dict",
    "make_editor",
    "null_space_projector",
    "objective",
]
