"""rlsedit: lifelong editing of linear maps (and LLM MLP layers) with soft recursive least squares.

The solver core knows nothing of language models: it imports torch and numpy only.

Row convention throughout (docs/method.md section 2): W is (d_k, d_v), keys K are (u, d_k), values V are
(u, d_v), and V ~ K W. For a torch ``nn.Linear`` the map is ``weight.T``.
"""

from .anchor import Anchor
from .base import Editor, StateDictError, UpdateRecord, weight_fingerprint
from .baselines import AlphaEditEditor, FTEditor, MEMITEditor, ROMEEditor, null_space_projector
from .checkpoint import atomic_write, load_checkpoint, load_editor, save_editor
from .closed_form import ObjectiveValue, batch_solve, objective
from .editor import RLSEditor
from .errors import (
    AnchorError,
    BatchNotKeptError,
    CheckpointError,
    DTypeError,
    EmptyBatchError,
    FactorizationError,
    MissingCheckpointError,
    NonFiniteError,
    NotAppliedError,
    NoUniqueSolutionError,
    ParameterError,
    RefactorizationError,
    RLSEditError,
    ShapeError,
    W0NotKeptError,
)
from .health import Health, diagnose
from .ledger import LedgerEntry, batch_digest
from .registry import EDITORS, editor_from_state_dict, make_editor
from .stream import GaussianStream, run_stream

__version__ = "0.1.0"

__all__ = [
    "EDITORS",
    "AlphaEditEditor",
    "Anchor",
    "AnchorError",
    "BatchNotKeptError",
    "CheckpointError",
    "DTypeError",
    "Editor",
    "EmptyBatchError",
    "FTEditor",
    "FactorizationError",
    "GaussianStream",
    "Health",
    "LedgerEntry",
    "MEMITEditor",
    "MissingCheckpointError",
    "NoUniqueSolutionError",
    "NonFiniteError",
    "NotAppliedError",
    "ObjectiveValue",
    "ParameterError",
    "RLSEditError",
    "RLSEditor",
    "ROMEEditor",
    "RefactorizationError",
    "ShapeError",
    "StateDictError",
    "UpdateRecord",
    "W0NotKeptError",
    "__version__",
    "atomic_write",
    "batch_digest",
    "batch_solve",
    "diagnose",
    "editor_from_state_dict",
    "load_checkpoint",
    "load_editor",
    "make_editor",
    "null_space_projector",
    "objective",
    "run_stream",
    "save_editor",
    "weight_fingerprint",
]
