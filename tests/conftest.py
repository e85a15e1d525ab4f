import copy
import dataclasses
from pathlib import Path

import pytest

from sslseg.config import run_spec, validate
from sslseg.data import DATASETS

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """The synthetic datasets, generated and prepared once per test session."""
    root = tmp_path_factory.mktemp("data")
    out = {}
    for name in ("synth2d", "synth3d", "synthpolyp", "synthmm"):
        spec = DATASETS[name]
        spec.download("", root / "raw" / name)
        spec.preprocess(spec, root / "raw" / name, root / "prepared" / name)
        out[name] = root / "prepared" / name
    return out


# the edge-guided UNet at the tiny width (its method's default is the paper's 16-256)
EGM_TINY = {"egm_dt": {"student": {"name": "egm_unet", "channels": [4, 8, 16], "dropout": [0.0, 0.1, 0.2]}}}
EGM_TINY3D = {"egm_dt": {"student": {"name": "egm_unet", "channels": [4, 8], "dropout": [0.0, 0.0]}}}
# SSCD's heads sit at 1/2, 1/4 and 1/8: five levels, narrow
SSCD_NET = {"name": "unet", "channels": [2, 4, 4, 8, 8], "dropout": [0.0, 0.0, 0.0, 0.0, 0.0]}
SSCD_TINY = {"sscd": {"student": SSCD_NET, "second": SSCD_NET}}
# DEC-Seg's network at its narrowest useful width (one block per stage) and small generators
DECSEG_NET = {"name": "decseg", "base": 4, "layers": [1, 1, 1, 1], "cfa_channels": 2}
DECSEG_TINY = {"decseg": {"student": DECSEG_NET}}

TINY = {
    "synth2d": {"dataset": "synth2d", "methods": ["supervised", "mean_teacher"], "labels": [1], "seeds": [0, 1],
                "model": {"name": "unet", "channels": [4, 8, 16], "dropout": [0.0, 0.1, 0.2]},
                "schedule": {"iterations": 8, "batch_labelled": 2, "batch_unlabelled": 2, "patch": [32, 32]},
                "validation": {"every": 4}, "networks": {**EGM_TINY, **SSCD_TINY, **DECSEG_TINY},
                "hparams": {"decseg": {"generator_channels": [4, 8], "generator_dropout": [0.0, 0.0]}}},
    "synth3d": {"dataset": "synth3d", "methods": ["supervised", "mean_teacher"], "labels": [2], "seeds": [0, 1],
                "model": {"name": "unet", "channels": [4, 8], "dropout": [0.0, 0.0]},
                "schedule": {"iterations": 4, "batch_labelled": 1, "batch_unlabelled": 1, "patch": [16, 24, 24],
                             "fg_oversample": 0.5},
                "validation": {"every": 4, "batch_size": 8}, "inference": {"batch_size": 8}, "networks": EGM_TINY3D},
    "synthpolyp": {"dataset": "synthpolyp", "methods": ["supervised", "fixmatch"], "labels": [4], "seeds": [0],
                   "model": {"name": "unet", "channels": [4, 8, 16], "dropout": [0.0, 0.1, 0.2]},
                   "schedule": {"iterations": 6, "batch_labelled": 2, "batch_unlabelled": 2, "patch": [32, 32]},
                   "validation": {"every": 3}, "networks": {**EGM_TINY, **SSCD_TINY, **DECSEG_TINY},
                   "hparams": {"decseg": {"generator_channels": [4, 8], "generator_dropout": [0.0, 0.0]}}},
    "synthmm": {"dataset": "synthmm", "methods": ["supervised", "mean_teacher"], "labels": [2], "seeds": [0],
                "model": {"name": "unet", "channels": [4, 8], "dropout": [0.0, 0.0]},
                "schedule": {"iterations": 4, "batch_labelled": 2, "batch_unlabelled": 2, "patch": [16, 16, 16],
                             "fg_oversample": 0.5},
                "validation": {"every": 4}, "networks": EGM_TINY3D},
}


@pytest.fixture
def tiny():
    """Validated tiny benchmark configs (seconds per run on a CPU)."""
    return validate({"benchmarks": copy.deepcopy(TINY)})["benchmarks"]


def fit(bench: dict, method: str, budget: int, seed: int, prepared, out, **kw):
    """Train ``method`` of a (tiny) benchmark definition through the same run specification as the workflow."""
    bench = copy.deepcopy(bench)
    if method not in bench["methods"]:
        bench["methods"] = list(bench["methods"]) + [method]
    cfg = validate({"benchmarks": {"t": bench}})
    from sslseg.train import train

    return train(run_spec(cfg, "t", method, budget, seed), prepared, out, **kw)


def build_method(name: str, make, params=None, iterations: int = 100, n_classes: int = 2):
    """Method ``name`` over networks made by ``make()`` (one call per declared network, initialised as declared),
    as the trainer builds it; ``params`` a Params instance or overrides."""
    from sslseg.methods import METHODS, build_networks, method_params

    cls = METHODS[name]
    if not dataclasses.is_dataclass(params):
        params = method_params(name, params)
    return cls(build_networks(cls, lambda _: make()), params, iterations, n_classes)
