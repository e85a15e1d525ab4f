"""Method registry. A method is one class in one file: it owns its networks and turns a batch into named losses;
the trainer (sslseg.train) owns everything else.

Notation (as in UniMatch): ``x_l``/``y_l`` labelled images/labels, ``x_u`` unlabelled (weak view), ``x_u_s`` strong
views, ``p_`` probabilities, ``conf_u``/``mask_u`` confidences and pseudo-labels.

Adding a method: write ``sslseg/methods/<name>.py`` with a ``Method`` subclass decorated by
``@METHODS.register("<name>")`` and add its module to ``_MODULES`` below.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
import torch.nn as nn

from sslseg import SslsegError
from sslseg.registry import Registry

__all__ = ["Method", "METHODS", "method_params", "dims_error"]


class Method:
    """Base class. ``Params`` is a frozen dataclass of the method's hyper-parameters with the paper's defaults."""

    @dataclasses.dataclass(frozen=True)
    class Params:
        pass

    uses_unlabelled = True
    spatial_dims = (2, 3)  # benchmark dimensionalities the method is defined for
    needs_mix_batch = False  # a second unlabelled batch ``x_u_mix`` (CutMix sources)
    restart_step: int | None = None  # a two-stage method restarts from the best validation weights here

    def begin_stage(self) -> None:
        """Called at ``restart_step`` after the best validation weights were loaded into ``eval_model()``."""

    def __init__(self, make_model: Callable[[], nn.Module], params: Any, iterations: int, n_classes: int) -> None:
        self.p = params
        self.iterations = iterations
        self.n_classes = n_classes
        self.student = make_model()

    def modules(self) -> dict[str, nn.Module]:
        """Every network whose state is checkpointed (trained or EMA)."""
        return {"student": self.student}

    def parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates."""
        return list(self.student.parameters())

    def train(self, mode: bool = True) -> None:
        for m in self.modules().values():
            m.train(mode)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called after the optimiser step (EMA updates)."""

    def eval_model(self) -> nn.Module:
        """The network used for validation and inference."""
        return self.student


METHODS: Registry[type[Method]] = Registry("method")


def dims_error(name: str, dims: int) -> str | None:
    """Why method ``name`` cannot run on a ``dims``-D benchmark, or None when it can."""
    allowed = METHODS[name].spatial_dims
    if dims in allowed:
        return None
    return f"{name!r} is defined for {' and '.join(map(str, allowed))}D benchmarks"


def method_params(name: str, overrides: dict | None = None):
    """The method's Params with ``overrides`` applied; an unknown key raises SslsegError naming it."""
    cls = METHODS[name]
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    overrides = dict(overrides or {})
    for k, v in overrides.items():
        if k not in fields:
            raise SslsegError(f"unknown hyper-parameter {k!r} for method {name!r} (known: {', '.join(fields) or 'none'})")
        default = fields[k].default
        numeric = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)  # noqa: E731
        if numeric(default) and not numeric(v):
            raise SslsegError(f"hyper-parameter {k!r} of {name!r} must be a number, got {v!r}")
    return cls.Params(**overrides)


_MODULES = ["supervised", "mean_teacher", "uamt", "cps", "fixmatch", "unimatch", "bcp"]

for _m in _MODULES:
    __import__(f"sslseg.methods.{_m}")
