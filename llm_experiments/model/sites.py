"""Edit sites: where each architecture's MLP output projection lives and how its weight is laid out.

Each architecture declares its site once (:data:`SITES`). The solver's map is W (d_k, d_v) in the row
convention V ~ K W (docs/method.md section 2), with d_k the MLP's inner width and d_v the hidden size:

==========  ===================================  ========  =============================
model_type  module (``{layer}`` filled in)       layout    parameter shape
==========  ===================================  ========  =============================
llama       ``model.layers.{layer}.mlp.down_proj``  out_in   (d_v, d_k), W = weight.T
qwen2       ``model.layers.{layer}.mlp.down_proj``  out_in   (d_v, d_k), W = weight.T
gpt2        ``transformer.h.{layer}.mlp.c_proj``    in_out   (d_k, d_v), W = weight
==========  ===================================  ========  =============================

The layout is declared, never guessed from shapes (a square weight would be ambiguous): d_k and
d_v come from the model's config and the declared layout is asserted against the parameter's
shape and the module's class. W is read as a float copy; it is cast to the parameter's own dtype
only when written back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn


class SiteError(ValueError):
    """A model, layer or weight that does not match the declared edit site."""


class UnsupportedArchitectureError(SiteError):
    """The model's ``config.model_type`` has no declared edit site."""


class LayoutError(SiteError):
    """The parameter's shape or module class contradicts the site's declared layout."""


@dataclass(frozen=True)
class EditSite:
    """One architecture's edit site.

    Attributes:
        model_type: the Hugging Face ``config.model_type`` it applies to.
        module_template: dotted path of the edited linear map, with ``{layer}``.
        layer_template: dotted path of the decoder block whose output is the residual stream
            after that layer (where target values are optimised), with ``{layer}``.
        layout: ``"out_in"`` (``nn.Linear``, weight is (d_v, d_k)) or ``"in_out"`` (GPT-2's
            ``Conv1D``, weight is (d_k, d_v)).
        module_class: class name the edited module must have (checked, not inferred).
        d_k_attrs: config attributes giving d_k, tried in order (the first that is set wins);
            an int multiplier ``4`` as the last entry means "that many times d_v" (GPT-2's default).
        d_v_attr: config attribute giving d_v (the hidden size).
        num_layers_attr: config attribute giving the number of decoder blocks.
    """

    model_type: str
    module_template: str
    layer_template: str
    layout: str
    module_class: str
    d_k_attrs: tuple[str | int, ...]
    d_v_attr: str
    num_layers_attr: str

    def __post_init__(self) -> None:
        if self.layout not in ("out_in", "in_out"):
            raise ValueError(f"layout must be 'out_in' or 'in_out', got {self.layout!r}")
        for t in (self.module_template, self.layer_template):
            if "{layer}" not in t:
                raise ValueError(f"template {t!r} must contain '{{layer}}'")

    # -- paths and dimensions ----------------------------------------------------------------
    def module_path(self, layer: int) -> str:
        return self.module_template.format(layer=layer)

    def layer_path(self, layer: int) -> str:
        return self.layer_template.format(layer=layer)

    def num_layers(self, model: nn.Module) -> int:
        return int(getattr(model.config, self.num_layers_attr))

    def dims(self, model: nn.Module) -> tuple[int, int]:
        """(d_k, d_v) from the model's config."""
        cfg = model.config
        d_v = int(getattr(cfg, self.d_v_attr))
        for attr in self.d_k_attrs:
            if isinstance(attr, int):
                return attr * d_v, d_v
            value = getattr(cfg, attr, None)
            if value is not None:
                return int(value), d_v
        raise SiteError(f"{self.model_type}: none of the config attributes {self.d_k_attrs} gives d_k")

    def check_layer(self, model: nn.Module, layer: int) -> None:
        n = self.num_layers(model)
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
            raise SiteError(f"layer {layer!r} is not a layer of this {self.model_type} model (0..{n - 1})")

    def module(self, model: nn.Module, layer: int) -> nn.Module:
        """The edited module at ``layer``, with its layout asserted."""
        self.check_layer(model, layer)
        path = self.module_path(layer)
        try:
            mod = model.get_submodule(path)
        except AttributeError as exc:
            raise SiteError(f"{self.model_type}: the model has no module {path!r}") from exc
        if type(mod).__name__ != self.module_class:
            raise LayoutError(f"{path} is a {type(mod).__name__}, but the {self.model_type} site declares a "
                              f"{self.module_class} with layout {self.layout!r}")
        d_k, d_v = self.dims(model)
        expected = (d_v, d_k) if self.layout == "out_in" else (d_k, d_v)
        if tuple(mod.weight.shape) != expected:
            raise LayoutError(
                f"{path}.weight has shape {tuple(mod.weight.shape)}, but layout {self.layout!r} with "
                f"d_k={d_k}, d_v={d_v} (from the config) needs {expected}"
            )
        return mod

    def parameter(self, model: nn.Module, layer: int) -> nn.Parameter:
        return self.module(model, layer).weight


SITES: dict[str, EditSite] = {
    site.model_type: site
    for site in (
        EditSite("llama", "model.layers.{layer}.mlp.down_proj", "model.layers.{layer}", "out_in", "Linear",
                 ("intermediate_size",), "hidden_size", "num_hidden_layers"),
        EditSite("qwen2", "model.layers.{layer}.mlp.down_proj", "model.layers.{layer}", "out_in", "Linear",
                 ("intermediate_size",), "hidden_size", "num_hidden_layers"),
        EditSite("gpt2", "transformer.h.{layer}.mlp.c_proj", "transformer.h.{layer}", "in_out", "Conv1D",
                 ("n_inner", 4), "n_embd", "n_layer"),
    )
}


def site_for(model: nn.Module) -> EditSite:
    """The declared site of ``model``'s architecture (by ``config.model_type``)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in SITES:
        raise UnsupportedArchitectureError(
            f"no edit site declared for model_type {model_type!r}; declared: {sorted(SITES)}"
        )
    return SITES[model_type]


# -- weights ------------------------------------------------------------------------------------
def read_weight(model: nn.Module, layer: int, *, site: EditSite | None = None,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """W (d_k, d_v) of ``layer``'s edit site, as a new ``dtype`` tensor on the parameter's device."""
    site = site or site_for(model)
    weight = site.parameter(model, layer).detach()
    W = weight.T if site.layout == "out_in" else weight
    return W.to(dtype=dtype, copy=True)


def write_weight(model: nn.Module, layer: int, W: torch.Tensor, *, site: EditSite | None = None) -> None:
    """Write W (d_k, d_v) into ``layer``'s edit site, cast to the parameter's own dtype and device.

    Raises :class:`LayoutError` for a wrong shape and :class:`SiteError` for non-finite values;
    the parameter is untouched when it raises.
    """
    site = site or site_for(model)
    param = site.parameter(model, layer)
    d_k, d_v = site.dims(model)
    if not isinstance(W, torch.Tensor) or tuple(W.shape) != (d_k, d_v):
        shape = tuple(W.shape) if isinstance(W, torch.Tensor) else type(W).__name__
        raise LayoutError(f"W for layer {layer} must be (d_k, d_v) = ({d_k}, {d_v}), got {shape}")
    if not bool(torch.isfinite(W).all()):
        raise SiteError(f"W for layer {layer} has non-finite entries; the model was not changed")
    new = (W.T if site.layout == "out_in" else W).to(device=param.device, dtype=param.dtype)
    if not bool(torch.isfinite(new).all()):
        raise SiteError(f"W for layer {layer} overflows {param.dtype}; the model was not changed")
    with torch.no_grad():
        param.copy_(new)


def snapshot_weights(model: nn.Module, layers: Iterable[int], *, site: EditSite | None = None,
                     device: torch.device | str | None = "cpu") -> dict[int, torch.Tensor]:
    """Exact copies of the edit sites' parameters (own dtype and layout), for :func:`restore_weights`."""
    site = site or site_for(model)
    return {layer: site.parameter(model, layer).detach().to(device=device, copy=True) for layer in layers}


def restore_weights(model: nn.Module, snapshot: dict[int, torch.Tensor], *, site: EditSite | None = None) -> None:
    """Put back the parameters saved by :func:`snapshot_weights`, bit for bit."""
    site = site or site_for(model)
    params = {layer: site.parameter(model, layer) for layer in snapshot}
    for layer, saved in snapshot.items():
        if saved.shape != params[layer].shape or saved.dtype != params[layer].dtype:
            raise LayoutError(f"snapshot of layer {layer} is {tuple(saved.shape)} {saved.dtype}, the parameter is "
                              f"{tuple(params[layer].shape)} {params[layer].dtype}")
    with torch.no_grad():
        for layer, saved in snapshot.items():
            params[layer].copy_(saved)
