"""Method registry. A method is one class in one file: it declares the networks it trains, which of them predict,
its batch entries, optimisers and stages, and turns a batch into named losses; the trainer (sslseg.train) owns the
loop, validation, checkpoints and provenance and reads nothing method-specific.

Notation (as in UniMatch): ``x_l``/``y_l`` labelled images/labels, ``x_u`` unlabelled (weak view), ``x_u_s`` strong
views, ``p_`` probabilities, ``conf_u``/``mask_u`` confidences and pseudo-labels.

Adding a method: write ``sslseg/methods/<name>.py`` with a ``Method`` subclass decorated by
``@METHODS.register("<name>")`` and add its module to ``_MODULES`` below. Declarations (class attributes):

* ``networks``: name -> ``Network`` (initialisation scheme, default architecture; None = the benchmark's
  ``model``, overridable per method and network under the benchmark's ``networks:``). The trainer builds them in
  this order and passes them in; they are also attributes of the method (``self.student``).
* ``predict``: the network(s) whose logits (averaged, for several) predict at validation and test time; their
  architectures and weights are what ``model.pt`` holds.
* ``streams``: the batch entries ``training_step`` reads (``x_l``, ``y_l``, ``x_u``, ``x_u_mix``).
* ``stages()``: named stages by first iteration; a stage may start from the best validation weights so far (BCP's
  pre-train -> self-train); ``begin_stage`` runs at the start of each.
* ``also_validate()``: networks besides the predictor that are validated in the current stage, each keeping its
  own best weights; at the next ``restore_best`` stage they are in ``self.best_states`` (SSCD seeds stage 2 from
  stage 1's best second student).
* hooks: ``setup`` (derived state such as EMA teachers), ``after_step`` (after the optimiser step),
  ``end_iteration`` (after validation, with its outcome), ``state``/``load_state`` (counters a resume needs);
  ``self.budget`` is the run's label budget.
* ``optimisers()``: default one SGD over every trained network (the schedule's lr, momentum, weight decay); a
  method may return several, or param groups with their own ``lr`` (the schedule scales each group's initial lr).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn

from sslseg.params import resolve_params
from sslseg.registry import Registry

__all__ = ["Method", "Network", "Stage", "METHODS", "make_optimiser", "method_params", "dims_error", "init_network",
           "build_networks", "Ensemble"]


def make_optimiser(params, sched: dict) -> torch.optim.Optimizer:
    """The schedule's optimiser over ``params``: SGD (momentum, weight decay, ``nesterov``), or Adam
    (``optimizer: adam``)."""
    if sched.get("optimizer", "sgd") == "adam":
        return torch.optim.Adam(params, lr=sched["lr"], weight_decay=sched["weight_decay"])
    return torch.optim.SGD(params, lr=sched["lr"], momentum=sched["momentum"], weight_decay=sched["weight_decay"],
                           nesterov=sched.get("nesterov", False))


@dataclass(frozen=True)
class Network:
    """A network a method trains: initialisation scheme and default architecture (None = the benchmark's)."""

    init: Literal["default", "kaiming", "xavier"] = "default"
    model: dict | None = None


@dataclass(frozen=True)
class Stage:
    name: str
    start: int  # first iteration of the stage
    restore_best: bool = False  # start from the best validation weights of the previous stages (all networks)
    reset_optimisers: bool = False  # start with fresh optimiser state (momentum), as a newly built optimiser
    weight_decay: float | None = None  # the optimisers' weight decay in this stage (None: the schedule's)


class Ensemble(nn.Module):
    """Several networks predicting together: the mean of their logits."""

    def __init__(self, nets: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


class Method:
    """Base class. ``Params`` is a frozen dataclass of the method's hyper-parameters with the paper's defaults."""

    @dataclasses.dataclass(frozen=True)
    class Params:
        pass

    networks: dict[str, Network] = {"student": Network()}
    predict: tuple[str, ...] = ("student",)
    streams: frozenset[str] = frozenset({"x_l", "y_l", "x_u"})
    spatial_dims = (2, 3)  # benchmark dimensionalities the method is defined for
    model_requires: tuple[str, ...] = ()  # attributes its networks must have (e.g. encode/decode)
    uses_label_counts = False  # the trainer calls init_label_counts with the labelled set's voxels per class

    def __init__(self, nets: dict[str, nn.Module], params: Any, iterations: int, n_classes: int,
                 budget: int | None = None) -> None:
        self.p, self.iterations, self.n_classes, self.budget = params, iterations, n_classes, budget
        self.nets = dict(nets)
        for name, net in self.nets.items():
            setattr(self, name, net)
        self.stage = self.stages()[0].name
        self.best_states: dict[str, dict] = {}  # best weights of ``also_validate`` networks, by name
        self.setup()

    def setup(self) -> None:
        """Build derived state from the (possibly warm-started) networks, e.g. EMA teachers."""

    def init_label_counts(self, counts) -> None:
        """The labelled training set's voxel count per class (``uses_label_counts``), before the first step (a
        resumed run then restores its own state)."""

    def stages(self) -> list[Stage]:
        return [Stage("train", 0)]

    def begin_stage(self, stage: Stage) -> None:
        """Called at the start of every stage (after ``restore_best`` weights were loaded)."""

    def also_validate(self) -> tuple[str, ...]:
        """Networks other than the predictor validated (and their best weights kept) in the current stage."""
        return ()

    def modules(self) -> dict[str, nn.Module]:
        """Every network whose state is checkpointed (trained and derived)."""
        return dict(self.nets)

    def optimisers(self, sched: dict) -> list[torch.optim.Optimizer]:
        return [make_optimiser([p for net in self.nets.values() for p in net.parameters()], sched)]

    def predictor(self) -> nn.Module:
        """The network (or ensemble) used for validation and inference."""
        nets = [self.nets[n] for n in self.predict]
        return nets[0] if len(nets) == 1 else Ensemble(nets)

    def train(self, mode: bool = True) -> None:
        for m in self.modules().values():
            m.train(mode)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called after the optimiser step (EMA updates)."""

    def end_iteration(self, step: int, validation: tuple[float, bool] | None) -> None:
        """Called last in every iteration, after its validation if there was one: ``(mean Dice, whether it is the
        best of the stage so far)``, else None (Hsu & Hua's static teacher adapts its period to it)."""

    def state(self) -> dict:
        """Method state outside the networks that a resumed run needs (counters); ints and floats only."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore what ``state`` returned."""


METHODS: Registry[type[Method]] = Registry("method")


def dims_error(name: str, dims: int) -> str | None:
    """Why method ``name`` cannot run on a ``dims``-D benchmark, or None when it can."""
    allowed = METHODS[name].spatial_dims
    if dims in allowed:
        return None
    return f"{name!r} is defined for {' and '.join(map(str, allowed))}D benchmarks"


def method_params(name: str, overrides: dict | None = None):
    """The method's Params with ``overrides`` applied; an unknown key or wrong type raises SslsegError naming it."""
    return resolve_params(f"method {name!r}", METHODS[name].Params, overrides)


CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def init_network(model: nn.Module, scheme: str) -> nn.Module:
    """SSL4MIS ``kaiming_normal_init_weight`` / ``xavier_normal_init_weight``: conv weights, BN to (1, 0);
    ``default`` keeps PyTorch's initialisation."""
    if scheme == "default":
        return model
    for m in model.modules():
        if isinstance(m, CONVS):
            (nn.init.kaiming_normal_ if scheme == "kaiming" else nn.init.xavier_normal_)(m.weight)
        elif isinstance(m, NORMS):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
    return model


def build_networks(method: type[Method], build) -> dict[str, nn.Module]:
    """The method's networks, built by ``build(name)`` and initialised one after the other, in declaration order
    (so the random stream, and the result, depend only on the seed)."""
    return {name: init_network(build(name), net.init) for name, net in method.networks.items()}


_MODULES = ["supervised", "mean_teacher", "uamt", "cps", "fixmatch", "unimatch", "bcp", "aigcmatch", "egm_dt", "sscd",
            "duomod", "decseg"]

for _m in _MODULES:
    __import__(f"sslseg.methods.{_m}")
