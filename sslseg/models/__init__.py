"""Model registry. A model factory takes ``(spatial_dims, in_channels, n_classes, **config)``."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from sslseg.registry import Registry

__all__ = ["MODELS", "build_model"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def build_model(cfg: dict, spatial_dims: int, in_channels: int, n_classes: int) -> nn.Module:
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    return MODELS[cfg["name"]](spatial_dims=spatial_dims, in_channels=in_channels, n_classes=n_classes, **kwargs)


from sslseg.models import unet  # noqa: E402,F401
