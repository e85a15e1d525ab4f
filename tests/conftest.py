import copy
from pathlib import Path

import pytest

from sslseg.config import validate
from sslseg.data import DATASETS

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """The two synthetic datasets, generated and prepared once per test session."""
    root = tmp_path_factory.mktemp("data")
    out = {}
    for name in ("synth2d", "synth3d"):
        spec = DATASETS[name]
        spec.download("", root / "raw" / name)
        spec.preprocess(spec, root / "raw" / name, root / "prepared" / name)
        out[name] = root / "prepared" / name
    return out


TINY = {
    "synth2d": {"dataset": "synth2d", "methods": ["supervised", "mean_teacher"], "labels": [1], "seeds": [0, 1],
                "model": {"name": "unet", "channels": [4, 8, 16], "dropout": [0.0, 0.1, 0.2]},
                "schedule": {"iterations": 8, "batch_labelled": 2, "batch_unlabelled": 2, "patch": [32, 32],
                             "val_every": 4, "ckpt_every": 4}},
    "synth3d": {"dataset": "synth3d", "methods": ["supervised", "mean_teacher"], "labels": [2], "seeds": [0, 1],
                "model": {"name": "unet", "channels": [4, 8], "dropout": [0.0, 0.0]},
                "schedule": {"iterations": 4, "batch_labelled": 1, "batch_unlabelled": 1, "patch": [16, 24, 24],
                             "val_every": 4, "ckpt_every": 2, "fg_oversample": 0.5},
                "inference": {"batch_size": 8}},
}


@pytest.fixture
def tiny():
    """Validated tiny benchmark configs (seconds per run on a CPU)."""
    return validate({"benchmarks": copy.deepcopy(TINY)})["benchmarks"]
