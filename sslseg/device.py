"""Which device a job uses.

Snakemake counts ``--resources gpu=N`` but never sets ``CUDA_VISIBLE_DEVICES``, so on a multi-GPU workstation every
job would land on GPU 0. When the job's environment does not already restrict the visible GPUs (Slurm does, through
its GRES allocation), ``claim_device`` takes the first GPU whose lock file it can lock exclusively and holds the
lock until the process exits; with ``--resources gpu=N`` and N GPUs, concurrent jobs therefore get distinct GPUs.
Lock files live in ``$SSLSEG_GPU_LOCK_DIR`` (default: a per-user folder in the temp directory).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import torch

from sslseg import SslsegError

__all__ = ["claim_device", "claim_gpu_index"]

_HELD: list = []  # open lock files, kept for the life of the process


def claim_gpu_index(n_gpus: int, lock_dir: Path) -> int:
    """Lock and return the first free GPU index in ``range(n_gpus)``; raise if all are taken."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_gpus):
        f = open(lock_dir / f"gpu{i}.lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        _HELD.append(f)
        return i
    raise SslsegError(f"all {n_gpus} GPUs are taken by other sslseg jobs (locks in {lock_dir}); "
                      f"run snakemake with --resources gpu={n_gpus} at most")


def claim_device(requested: str | None = None) -> torch.device:
    """``requested`` if given; else a free GPU (see module doc), or the CPU when there is none."""
    if requested:
        try:
            dev = torch.device(requested)
        except RuntimeError:
            raise SslsegError(f"--device {requested!r}: not a device name (cpu, cuda, cuda:N)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise SslsegError(f"--device {requested!r}: this PyTorch ({torch.__version__}) sees no CUDA device")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SslsegError(f"--device {requested!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if not torch.cuda.is_available():
        return torch.device("cpu")
    n = torch.cuda.device_count()
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None or n == 1:
        return torch.device("cuda:0")
    default = Path(tempfile.gettempdir()) / f"sslseg-gpu-locks-{os.getuid()}"
    return torch.device(f"cuda:{claim_gpu_index(n, Path(os.environ.get('SSLSEG_GPU_LOCK_DIR', default)))}")
