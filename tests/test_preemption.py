"""A training process killed midway (SIGKILL: node failure; SIGTERM: pre-emption or time limit) and started again
ends with the same model, bit for bit on CPU, as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import TINY


def _cmd(cfg, prepared, out):
    return [sys.executable, "-m", "sslseg", "train", "--config", str(cfg), "--bench", "synth2d", "--method",
            "mean_teacher", "--labels", "1", "--seed", "0", "--prepared", str(prepared), "--out", str(out),
            "--ckpt-every", "10"]


@pytest.fixture
def setup(tmp_path, prepared):
    bench = dict(TINY["synth2d"], schedule=dict(TINY["synth2d"]["schedule"], iterations=150),
                 validation={"every": 50})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"benchmarks": {"synth2d": bench}}))
    env = dict(os.environ, SSLSEG_THREADS="1")
    subprocess.run(_cmd(cfg, prepared["synth2d"], tmp_path / "full"), check=True, env=env, capture_output=True)
    return cfg, prepared["synth2d"], env, tmp_path


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 143)])
def test_killed_run_resumes_to_the_same_model(setup, sig, code):
    cfg, prepared, env, tmp = setup
    out = tmp / "cut"
    p = subprocess.Popen(_cmd(cfg, prepared, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = out / ".resume" / "state.pt"
    deadline = time.time() + 120
    while not state.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "training ended before it could be interrupted"
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err.decode()
    assert state.exists() and not (out / "model.pt").exists()
    r = subprocess.run(_cmd(cfg, prepared, out), env=env, capture_output=True, text=True, check=True)
    assert "resumed from" in r.stdout
    a = torch.load(tmp / "full" / "model.pt", weights_only=True)["networks"]["student"]["state_dict"]
    b = torch.load(out / "model.pt", weights_only=True)["networks"]["student"]["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp / "full" / "train_log.csv").read_text().splitlines()[1:] == \
        (out / "train_log.csv").read_text().splitlines()[1:]
