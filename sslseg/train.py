"""The one trainer: iteration loop, SGD with poly lr, validation-based selection, checkpoint/resume, logging,
provenance. Methods (sslseg.methods) only turn batches into losses.

Outputs in ``out``: ``model.pt`` (selected weights), ``train_log.csv``, ``provenance.json``. The resume state lives
in ``out/.resume/state.pt`` -- a path Snakemake does not declare, so it survives a rerun of the job -- and is
removed once the run has finished. A resumed run continues the same random streams, so on CPU it ends bit for bit
where an uninterrupted run would.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

import sslseg
from sslseg import SslsegError
from sslseg.config import config_hash
from sslseg.data.loader import TwoStreamSampler, load_prepared
from sslseg.device import claim_device
from sslseg.infer import predict_volume
from sslseg.io import atomic_path, read_case, write_json
from sslseg.methods import METHODS, dims_error, method_params
from sslseg.metrics import dice_per_class
from sslseg.models import build_model

__all__ = ["train", "seed_everything", "poly_lr", "TrainingInterrupted"]


class TrainingInterrupted(SslsegError):
    """SIGTERM/SIGINT arrived (pre-emption, time limit): the resume state was saved; rerunning continues."""


class _StopSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each iteration (main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    return np.random.default_rng(seed)


def poly_lr(base: float, step: int, total: int, power: float) -> float:
    return base * (1 - step / total) ** power


class Validator:
    """Mean foreground Dice over the validation volumes, with the same inference as ``sslseg infer``."""

    def __init__(self, prepared: Path, meta: dict, cases, bench: dict) -> None:
        self.meta, self.bench = meta, bench
        n = len(meta["classes"]) + 1
        ids = cases.loc[cases["split"] == "val", "case"].tolist()
        self.cases = [read_case(Path(prepared) / "cases" / f"{c}.h5", n_classes=n) for c in ids]
        if not self.cases:
            raise SslsegError(f"{Path(prepared) / 'cases.csv'}: no validation case; use schedule/selection 'last'")

    def __call__(self, model: torch.nn.Module) -> float:
        inf, n = self.bench["inference"], len(self.meta["classes"]) + 1
        scores = []
        for c in self.cases:
            pred = predict_volume(model, c.image, self.meta["dims"], self.bench["schedule"]["patch"], n,
                                  self.bench["protocol"], inf["overlap"], inf["mode"], inf["batch_size"])
            scores.append(np.nanmean(dice_per_class(pred, c.label, range(1, n))))
        return float(np.nanmean(scores))


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _state_dict_cpu(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def warm_start_of(bench: dict, method: str) -> str | None:
    """The method whose model seeds ``method``'s networks in this benchmark, or None."""
    ws = bench.get("warm_start") or {}
    return ws.get("from") if ws.get("from") not in (None, method) else None


def train(bench: dict, bench_name: str, method: str, budget: int, seed: int, prepared: Path, out: Path,
          device: str | None = None, stop_after: int | None = None, log_every: int = 50,
          init: Path | None = None) -> Path:
    """Train one run and write ``out/model.pt``; ``stop_after`` ends early leaving the resume state (tests).

    ``init``: the model.pt of the benchmark's ``warm_start`` method (same budget and seed); every network of the
    method starts from its weights and the run lasts ``warm_start/iterations`` iterations.
    """
    out = Path(out)
    meta, cases = load_prepared(prepared)
    sched, dims = dict(bench["schedule"]), meta["dims"]
    n_classes = len(meta["classes"]) + 1
    params = method_params(method, bench["hparams"].get(method))
    if why := dims_error(method, dims):
        raise SslsegError(f"method {why}; {bench_name!r} is {dims}D")
    source = warm_start_of(bench, method)
    init_state, init_hash = None, None
    if source:
        if init is None:
            raise SslsegError(f"benchmark {bench_name!r} warm-starts {method!r} from {source!r}: pass --init "
                              f"<{source} model.pt of budget {budget}, seed {seed}>")
        init_state, init_info = _load_init(Path(init), source, budget, seed)
        init_hash = init_info["config_hash"]
        sched["iterations"] = bench["warm_start"].get("iterations") or sched["iterations"]
    identity = {"bench": bench, "method": method, "budget": budget, "seed": seed, "params": repr(params),
                "init": init_hash}
    chash = config_hash(identity)
    rng = seed_everything(seed)
    dev = claim_device(device)
    torch.set_num_threads(max(1, int(os.environ.get("SSLSEG_THREADS", torch.get_num_threads()))))

    make_model = lambda: build_model(bench["model"], dims, 1, n_classes).to(dev)  # noqa: E731
    m = METHODS[method](make_model, params, sched["iterations"], n_classes)
    if init_state is not None:
        for mod in m.modules().values():
            mod.load_state_dict(init_state)
    sampler = TwoStreamSampler(prepared, budget, sched["patch"], dims, n_classes, sched["batch_labelled"],
                               sched["batch_unlabelled"] if m.uses_unlabelled else 0, rng,
                               sched["fg_oversample"], mix_batch=m.needs_mix_batch)
    if m.uses_unlabelled and not sampler.batch_u:
        raise SslsegError(f"method {method!r} needs unlabelled data: set schedule/batch_unlabelled > 0")
    opt = torch.optim.SGD(m.parameters(), lr=sched["lr"], momentum=sched["momentum"],
                          weight_decay=sched["weight_decay"])
    validator = Validator(prepared, meta, cases, bench) if sched["val_every"] else None

    resume = out / ".resume" / "state.pt"
    start, best, log_rows, wall_before = 0, {"dice": -1.0, "step": -1, "state": None}, [], 0.0
    if resume.is_file():
        st = torch.load(resume, map_location="cpu", weights_only=True)
        if st.get("config_hash") == chash:
            for k, mod in m.modules().items():
                mod.load_state_dict(st["modules"][k])
            opt.load_state_dict(st["optimizer"])
            sampler.load_state(st["sampler"])
            torch.set_rng_state(st["torch_rng"])
            random.setstate(st["py_rng"])
            start, best, log_rows, wall_before = st["step"], st["best"], st["log"], st["wall"]
            print(f"[sslseg train] resumed from {resume} at iteration {start}", flush=True)
        else:
            print(f"[sslseg train] ignoring {resume}: it belongs to another configuration", flush=True)

    t0 = time.time()
    m.train()
    finished = False
    step = start
    with _StopSignal() as stop:
        for step in range(start, sched["iterations"]):
            if (stop_after is not None and step >= stop_after) or stop.received is not None:
                break
            if step and step == m.restart_step:  # two-stage methods (BCP) go on from the best weights so far
                if best["state"] is not None:
                    m.eval_model().load_state_dict(best["state"])
                m.begin_stage()
                best = {"dice": -1.0, "step": -1, "state": None}
            lr = poly_lr(sched["lr"], step, sched["iterations"], sched["poly_power"])
            for g in opt.param_groups:
                g["lr"] = lr
            batch = {k: v.to(dev) for k, v in sampler.next().items()}
            loss, logs = m.training_step(batch, step)
            if not torch.isfinite(loss):
                raise SslsegError(f"{method}: loss became {float(loss)} at iteration {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            m.after_step(step)
            it = step + 1
            row = {"iteration": it, "lr": lr, "loss": loss.item(), **logs, "val_dice": ""}
            if validator and (it % sched["val_every"] == 0 or it == sched["iterations"]):
                row["val_dice"] = vd = validator(m.eval_model())
                m.train()
                if vd > best["dice"]:
                    best = {"dice": vd, "step": it, "state": _state_dict_cpu(m.eval_model())}
            log_rows.append(row)
            if it % log_every == 0 or row["val_dice"] != "":
                print(f"[sslseg train] {bench_name}/{method}/l{budget}/seed{seed} it {it}/{sched['iterations']} "
                      f"loss {row['loss']:.4f} lr {lr:.5f} val_dice {row['val_dice']}", flush=True)
            if it % sched["ckpt_every"] == 0 and it < sched["iterations"]:
                _save_resume(resume, m, opt, sampler, it, best, log_rows, wall_before + time.time() - t0, chash)
        else:
            finished = True
    wall = wall_before + time.time() - t0
    if finished:
        warm = {"from": source, "model": str(init), "config_hash": init_hash} if source else None
        _finish(out, m, bench, meta, method, budget, seed, best, log_rows, wall, chash, dev, sched, warm)
        if resume.is_file():
            resume.unlink()
            resume.parent.rmdir()
        return out / "model.pt"
    _save_resume(resume, m, opt, sampler, step, best, log_rows, wall, chash)
    if stop.received is not None:
        raise TrainingInterrupted(f"stopped by signal {stop.received} before iteration {step}; resume state saved "
                                  f"in {resume}; rerun the same command to continue")
    return resume


def _load_init(path: Path, source: str, budget: int, seed: int) -> tuple[dict, dict]:
    if not path.is_file():
        raise SslsegError(f"{path}: warm-start model missing; train {source!r} (budget {budget}, seed {seed}) first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        info = ckpt["info"]
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is reported with its path
        raise SslsegError(f"{path}: not a readable sslseg model ({type(e).__name__}: {e})") from None
    if (info.get("method"), info.get("budget"), info.get("seed")) != (source, budget, seed):
        raise SslsegError(f"{path}: is {info.get('method')}/l{info.get('budget')}/seed{info.get('seed')}, "
                          f"expected the warm start {source}/l{budget}/seed{seed}")
    return ckpt["state_dict"], info


def _save_resume(path: Path, m, opt, sampler, step, best, log_rows, wall, chash) -> None:
    state = {"modules": {k: mod.state_dict() for k, mod in m.modules().items()}, "optimizer": opt.state_dict(),
             "sampler": sampler.state(), "torch_rng": torch.get_rng_state(), "py_rng": random.getstate(),
             "step": step, "best": best, "log": log_rows, "wall": wall, "config_hash": chash}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def _finish(out: Path, m, bench, meta, method, budget, seed, best, log_rows, wall, chash, dev, sched,
            warm: dict | None) -> None:
    selection = sched["selection"]
    state = best["state"] if selection == "val" and best["state"] is not None else _state_dict_cpu(m.eval_model())
    info = {"model": bench["model"], "dims": meta["dims"], "n_classes": len(meta["classes"]) + 1,
            "patch": list(sched["patch"]), "method": method, "budget": budget, "seed": seed, "config_hash": chash,
            "selection": selection, "selected_iteration": best["step"] if selection == "val" else sched["iterations"]}
    with atomic_path(out / "model.pt", suffix=".pt") as tmp:
        torch.save({"state_dict": state, "info": info}, tmp)
    fields = sorted({k for r in log_rows for k in r}, key=lambda k: (k not in ("iteration", "lr", "loss"), k))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(log_rows)
    with atomic_path(out / "train_log.csv") as tmp:
        tmp.write_text(buf.getvalue())
    write_json(out / "provenance.json", {
        "config_hash": chash, "benchmark": bench, "method": method, "iterations": sched["iterations"], "warm_start": warm, "budget": budget, "seed": seed,
        "selection": selection, "selected_iteration": info["selected_iteration"], "best_val_dice": best["dice"],
        "wall_time_s": round(wall, 2), "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "git_commit": _git_commit(), "python": sys.version.split()[0], "platform": platform.platform(),
        "versions": {"sslseg": sslseg.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "deterministic": "torch.use_deterministic_algorithms(True); cudnn.benchmark=False; threads="
                         f"{torch.get_num_threads()}",
        "time_finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    print(f"[sslseg train] wrote {out / 'model.pt'} (selection {selection}, iteration {info['selected_iteration']},"
          f" best val Dice {best['dice']:.4f}, {wall:.0f} s)", flush=True)
