"""Model registry. A model is an ``nn.Module`` class registered by name with a frozen ``Params`` dataclass (its
config keys, validated by ``sslseg.params``) and the spatial dimensionalities it supports.

Forward contract: ``model(x)`` maps (B, in_channels, *spatial) to logits (B, n_classes, *spatial) -- what
inference and validation call. Networks with auxiliary outputs (deep-supervision heads, extra decoders) also
return them from ``model.forward_aux(x) -> (logits, {name: tensor})``; every model has ``forward_aux`` (``SegNet``
gives ``(model(x), {})``). Constructors take ``(spatial_dims, in_channels, n_classes, params)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from sslseg import SslsegError
from sslseg.params import params_dict, resolve_params
from sslseg.registry import Registry

__all__ = ["MODELS", "SegNet", "model_params", "build_model", "model_spec", "model_error"]


class SegNet(nn.Module):
    """Base of the registered networks: ``forward_aux`` defaults to no auxiliary output."""

    SPATIAL_DIMS: tuple[int, ...] = (2, 3)

    def forward_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self(x), {}


MODELS: Registry[type[SegNet]] = Registry("model")


def model_params(spec: dict):
    """The validated Params of ``spec`` (``{name: ..., **parameters}``)."""
    cls = MODELS[spec["name"]]
    return resolve_params(f"model {spec['name']!r}", cls.Params, {k: v for k, v in spec.items() if k != "name"})


def model_spec(spec: dict) -> dict:
    """``spec`` with every parameter resolved (defaults filled): what a run's identity and checkpoint record."""
    return {"name": spec["name"], **params_dict(model_params(spec))}


def model_error(spec: dict, dims: int) -> str | None:
    """Why ``spec`` cannot build a ``dims``-D network, or None."""
    cls = MODELS[spec["name"]]
    if dims not in cls.SPATIAL_DIMS:
        return f"model {spec['name']!r} is defined for {' and '.join(map(str, cls.SPATIAL_DIMS))}D, not {dims}D"
    return None


def build_model(spec: dict, spatial_dims: int, in_channels: int, n_classes: int) -> SegNet:
    if why := model_error(spec, spatial_dims):
        raise SslsegError(why)
    return MODELS[spec["name"]](spatial_dims, in_channels, n_classes, model_params(spec))


from sslseg.models import decseg, egm, unet, vnet  # noqa: E402,F401
