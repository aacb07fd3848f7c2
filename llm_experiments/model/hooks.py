"""Forward hooks as context managers: registered on entry, always removed on exit (even on error).

- :class:`Capture` records modules' inputs and/or outputs, whole or at one token position per row.
- :class:`AddToHidden` adds a vector to a decoder block's output (the residual stream) at one token
  position per row; the vector may require grad (target-value optimisation).
- :func:`frozen_parameters` turns off ``requires_grad`` on a model's parameters and restores it.

A module's "output" is its returned tensor, or the first element when it returns a tuple (older
decoder blocks return ``(hidden_states, ...)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn


class StopForward(Exception):
    """Raised by a :class:`Capture` with ``stop=True`` once its last module ran; the ``with`` swallows it."""


def _first_tensor(x):
    return x[0] if isinstance(x, tuple) else x


def _at_positions(h: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """h (b, n, d) -> h[i, positions[i]] (b, d); the whole of h when positions is None."""
    if positions is None:
        return h
    rows = torch.arange(h.shape[0], device=h.device)
    return h[rows, positions.to(h.device)]


class Capture:
    """Record the inputs and/or outputs of modules during forward passes inside the ``with`` block.

    Args:
        model: the model whose submodules are hooked.
        paths: dotted module paths (``model.get_submodule`` names).
        inputs / outputs: what to record (the first positional input; the output tensor).
        positions: optional (batch,) token index per row; then (batch, d) rows are kept instead of
            the whole (batch, n, d) tensors.
        detach: keep detached copies (default); ``False`` keeps the graph.
        stop: raise :class:`StopForward` after the deepest hooked module ran, skipping the rest
            of the model (for statistics); the ``with`` statement swallows it.

    After (or inside) the block, ``.inputs[path]`` and ``.outputs[path]`` hold the tensors of the
    last forward pass.
    """

    def __init__(self, model: nn.Module, paths: Sequence[str], *, inputs: bool = True, outputs: bool = False,
                 positions: torch.Tensor | None = None, detach: bool = True, stop: bool = False) -> None:
        self.model = model
        self.paths = list(dict.fromkeys(paths))
        self.modules = [model.get_submodule(p) for p in self.paths]  # fails before any hook exists
        self.want_inputs, self.want_outputs = inputs, outputs
        self.positions = positions
        self.detach = detach
        self.stop = stop
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list = []
        self._pending: set[str] = set()

    def _hook(self, path: str):
        def hook(module, args, output):
            if self.want_inputs:
                x = _at_positions(args[0], self.positions)
                self.inputs[path] = x.detach().clone() if self.detach else x
            if self.want_outputs:
                y = _at_positions(_first_tensor(output), self.positions)
                self.outputs[path] = y.detach().clone() if self.detach else y
            self._pending.discard(path)
            if self.stop and not self._pending:
                raise StopForward
        return hook

    def __enter__(self) -> Capture:
        try:
            for path, mod in zip(self.paths, self.modules, strict=True):
                self._handles.append(mod.register_forward_hook(self._hook(path)))
        except BaseException:
            self._remove()
            raise
        self._pending = set(self.paths)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._remove()
        return exc_type is StopForward

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def run(self, *args, **kwargs):
        """Call the model; resets which modules are pending, so ``stop`` works batch after batch."""
        self._pending = set(self.paths)
        try:
            return self.model(*args, **kwargs)
        except StopForward:
            return None


class AddToHidden:
    """Add ``delta`` to a module's output at one token position per row, inside the ``with`` block.

    ``delta`` is (d,) (the same for every row) or (batch, d); ``positions`` is (batch,). The sum
    keeps the output's dtype; gradients flow into ``delta`` when it requires grad.
    """

    def __init__(self, model: nn.Module, path: str, delta: torch.Tensor, positions: torch.Tensor) -> None:
        self.module = model.get_submodule(path)
        self.delta = delta
        self.positions = positions
        self._handle = None

    def _hook(self, module, args, output):
        h = _first_tensor(output)
        rows = torch.arange(h.shape[0], device=h.device)
        pos = self.positions.to(h.device)
        delta = self.delta.to(device=h.device, dtype=h.dtype)
        if delta.dim() == 1:
            delta = delta.expand(h.shape[0], -1)
        # out-of-place: index_put on a clone keeps autograd correct and the module's tensor intact
        h = h.index_put((rows, pos), h[rows, pos] + delta)
        if isinstance(output, tuple):
            return (h, *output[1:])
        return h

    def __enter__(self) -> AddToHidden:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[nn.Module]:
    """Set ``requires_grad=False`` on every parameter; restore each one's flag on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def hook_count(model: nn.Module) -> int:
    """Number of forward (pre-)hooks registered on any submodule (0 for a clean model)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
