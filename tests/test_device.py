"""GPU claiming for concurrent local jobs (Snakemake never sets CUDA_VISIBLE_DEVICES)."""

import subprocess
import sys

import pytest
import torch

from sslseg import SslsegError
from sslseg.device import claim_device, claim_gpu_index

HOLD = """
import sys, time
from pathlib import Path
from sslseg.device import claim_gpu_index
print(claim_gpu_index(int(sys.argv[1]), Path(sys.argv[2])), flush=True)
time.sleep(30)
"""


def test_concurrent_processes_get_distinct_gpus(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", HOLD, "3", str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    try:
        got = sorted(int(p.stdout.readline()) for p in procs)
        assert got == [0, 1, 2]
        with pytest.raises(SslsegError, match="all 3 GPUs are taken"):
            claim_gpu_index(3, tmp_path)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert claim_gpu_index(3, tmp_path) == 0  # locks die with their processes


def test_explicit_and_cpu_devices(monkeypatch):
    assert claim_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert claim_device() == torch.device("cpu")


def test_visible_devices_set_by_the_scheduler_are_respected(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("SSLSEG_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert claim_device() == torch.device("cuda:0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    first, second = claim_device(), claim_device()
    assert {first.index, second.index} == {0, 1}
