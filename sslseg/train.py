"""The one trainer: iteration loop, learning-rate schedule, stages, validation-based selection, checkpoint/resume,
logging, provenance. Methods (sslseg.methods) declare their networks, optimisers and stages and turn batches into
losses; the loop reads nothing method-specific.

Input: a ``RunSpec`` (sslseg.config) -- everything the run depends on. Outputs in ``out``: ``model.pt`` (the
architectures and selected weights of the predicting network(s)), ``train_log.csv``, ``provenance.json``. The
resume state lives in ``out/.resume/state.pt`` -- a path Snakemake does not declare, so it survives a rerun of the
job -- and is removed once the run has finished. A resumed run continues the same random streams, so on CPU it ends
bit for bit where an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import sslseg
from sslseg import SslsegError, TrainingInterrupted
from sslseg.config import RunSpec
from sslseg.data import DatasetInfo, load_prepared
from sslseg.data.loader import CaseStore, Prefetcher, TwoStreamSampler
from sslseg.device import claim_device
from sslseg.infer import load_checkpoint, one_line, predict_volume
from sslseg.io import atomic_path, write_json, write_torch
from sslseg.methods import METHODS, Method, Stage, build_networks, dims_error, method_params
from sslseg.metrics import dice_per_class
from sslseg.models import build_model
from sslseg.protocols import PROTOCOLS

__all__ = ["train", "seed_everything", "poly_lr", "TrainingInterrupted", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = 2


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
    """Mean foreground Dice over the validation volumes, predicted as the validation protocol says (the same
    ``predict_volume`` as ``sslseg infer``)."""

    def __init__(self, prepared: Path, info: DatasetInfo, cases, patch, val: dict) -> None:
        self.info, self.patch, self.val = info, patch, val
        self.protocol = PROTOCOLS[val["protocol"]]
        rows = cases[cases["split"] == "val"]
        if rows.empty:
            raise SslsegError(f"{Path(prepared) / 'cases.csv'}: no validation case; use validation/selection 'last'")
        shapes = [tuple(int(v) for v in s.split("x")) for s in rows["shape"]]
        self.store = CaseStore(Path(prepared) / "cases", rows["case"].tolist(), shapes, info, labels=True)

    def __call__(self, model: torch.nn.Module) -> float:
        scores = []
        for i in range(len(self.store)):
            image, label = self.store.read(i)
            pred = predict_volume(model, image, self.info.dims, self.patch, self.info.n_classes, self.protocol,
                                  self.val["overlap"], self.val["mode"], self.val["batch_size"])
            scores.append(np.nanmean(dice_per_class(pred, label, range(1, self.info.n_classes))))
        return float(np.nanmean(scores))


class Precision:
    """The schedule's numeric settings of the training step (both change results, so both are part of the run's
    identity, and both are off by default): ``precision`` fp32, or bf16 / fp16 autocast of the forward pass and
    the losses (fp16 with a gradient scaler, whose state a resume keeps); ``channels_last`` networks and inputs
    in channels-last memory layout. Validation and inference stay in fp32."""

    DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

    def __init__(self, name: str, channels_last: bool, dev: torch.device) -> None:
        self.name, self.channels_last, self.dev = name, bool(channels_last), dev
        self.dtype = self.DTYPES[name]
        self.scaler = torch.amp.GradScaler(dev.type, enabled=name == "fp16")

    def _layout(self, ndim: int):
        return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim)

    def prepare(self, m: Method) -> None:
        if self.channels_last:
            for mod in m.modules().values():
                conv = next((p for p in mod.parameters() if p.ndim in (4, 5)), None)
                if conv is not None:
                    mod.to(memory_format=self._layout(conv.ndim))

    def input(self, x: torch.Tensor) -> torch.Tensor:
        fmt = self._layout(x.ndim) if self.channels_last and x.is_floating_point() else None
        return x.contiguous(memory_format=fmt) if fmt is not None else x

    def autocast(self):
        return torch.autocast(self.dev.type, dtype=self.dtype, enabled=self.dtype is not None)

    def backward(self, loss: torch.Tensor, opts: list[torch.optim.Optimizer]) -> None:
        self.scaler.scale(loss).backward()
        for o in opts:
            self.scaler.step(o)
        self.scaler.update()


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _snapshot(m: Method) -> dict[str, dict]:
    return {k: {n: v.detach().cpu().clone() for n, v in mod.state_dict().items()} for k, mod in m.modules().items()}


class _Run:
    """Loop state that survives a resume: step, stage, best validation score, log rows, wall time."""

    def __init__(self) -> None:
        self.step, self.entered, self.log, self.wall = 0, -1, [], 0.0
        self.best = {"dice": -1.0, "step": -1, "state": None}
        self.best_other: dict[str, dict] = {}  # also-validated network -> {"dice", "step", "state"}
        self.stale, self.stopped = 0, None  # validations without a new best in the stage; early-stop iteration


def train(spec: RunSpec, prepared: Path, out: Path, device: str | None = None, init: Path | None = None,
          stop_after: int | None = None, log_every: int = 50, ckpt_every: int | None = None) -> Path:
    """Train one run and write ``out/model.pt``; ``stop_after`` ends early leaving the resume state (tests).

    ``ckpt_every``: iterations between resume states (default ``SSLSEG_CKPT_EVERY``, else 200); an execution
    setting, not part of the run's identity (a resumed run equals an uninterrupted one).
    ``init``: the model.pt of the run's warm start (``spec.warm_start``); networks take its weights by name (or its
    only network), and derived networks (EMA teachers) are built from them.
    """
    out, prepared = Path(out), Path(prepared)
    info, cases = load_prepared(prepared)
    if info.name != spec.dataset["name"]:
        raise SslsegError(f"{prepared}: holds dataset {info.name!r}; benchmark {spec.bench!r} trains on "
                          f"{spec.dataset['name']!r}")
    cls = METHODS[spec.method]
    if why := dims_error(spec.method, info.dims):
        raise SslsegError(f"method {why}; {spec.bench!r} is {info.dims}D")
    if missing := [n for n in cls.networks if n not in spec.networks]:
        raise SslsegError(f"run specification: {spec.method!r} trains networks {list(cls.networks)}; the "
                          f"specification describes {list(spec.networks)} (missing {missing})")
    sched, chash = spec.schedule, spec.hash
    ckpt_every = ckpt_every or int(os.environ.get("SSLSEG_CKPT_EVERY", 200))
    if spec.warm_start and init is None:
        raise SslsegError(f"benchmark {spec.bench!r} warm-starts {spec.label!r} from {spec.warm_start['from']!r}: "
                          f"pass --init <{spec.warm_start['from']} model.pt of budget {spec.budget}, seed {spec.seed}>")
    init_states = _load_init(Path(init), spec) if spec.warm_start else None
    _check_writable(out)
    rng = seed_everything(spec.seed)
    dev = claim_device(device)
    torch.set_num_threads(max(1, int(os.environ.get("SSLSEG_THREADS", torch.get_num_threads()))))

    nets = build_networks(cls, lambda name: build_model(spec.networks[name], info.dims, info.in_channels,
                                                        info.n_classes).to(dev))
    for net in nets.values():  # pre-trained weights named by the architecture (DEC-Seg's Res2Net), training only
        if hasattr(net, "init_pretrained"):
            net.init_pretrained()
    if init_states is not None:
        for name, net in nets.items():
            src = name if name in init_states else next(iter(init_states))
            try:
                res = net.load_state_dict(init_states[src], strict=False)
                optional = getattr(net, "warm_start_optional", ())
                if [k for k in res.missing_keys + res.unexpected_keys if not k.startswith(optional)]:
                    net.load_state_dict(init_states[src])  # raises, naming every missing and unexpected key
            except RuntimeError as e:
                raise SslsegError(f"{init}: network {src!r} does not fit network {name!r} of {spec.method!r} "
                                  f"({one_line(e, 200)})") from None
    m = cls(nets, method_params(spec.method, spec.hparams), sched["iterations"], info.n_classes, budget=spec.budget)
    sampler = TwoStreamSampler(prepared, spec.budget, sched["patch"], sched["batch_labelled"],
                               sched["batch_unlabelled"], rng, cls.streams, sched["fg_oversample"],
                               geometric=sched.get("augment", "weak") == "weak")
    if cls.uses_label_counts:
        m.init_label_counts(sampler.label_counts(info.n_classes))
    opts = m.optimisers(sched)
    for g in (g for o in opts for g in o.param_groups):
        g.setdefault("initial_lr", g["lr"])
        g.setdefault("initial_weight_decay", g["weight_decay"])
    stages = sorted(m.stages(), key=lambda s: s.start)
    val = spec.validation
    validator = Validator(prepared, info, cases, sched["patch"], val) if val["every"] else None

    precision = Precision(sched.get("precision", "fp32"), sched.get("channels_last", False), dev)
    precision.prepare(m)

    run = _Run()
    resume = out / ".resume" / "state.pt"
    if resume.is_file():
        _restore(resume, chash, m, opts, sampler, run, stages, precision)

    t0, first = time.time(), run.step
    m.train()
    total = sched["iterations"]
    # batches made ahead (SSLSEG_PREFETCH; the same stream either way): on a GPU the host's cores are otherwise
    # idle; on a CPU they are the ones training, and a second thread measured slower (docs/benchmarks.md)
    depth = int(os.environ.get("SSLSEG_PREFETCH", 2 if dev.type == "cuda" else 0))
    feed = Prefetcher(sampler, depth, pin=dev.type == "cuda") if depth > 0 else sampler
    with _StopSignal() as stop, feed if depth > 0 else contextlib.nullcontext():
        while (run.step < total and run.stopped is None and not (stop_after is not None and run.step >= stop_after)
               and stop.received is None):
            step = run.step
            if (idx := _stage_index(stages, step)) != run.entered:
                _enter(stages[idx], m, run, opts)
                run.entered = idx
            lr = _set_lr(opts, step, sched, stages[run.entered].start)
            batch = {k: precision.input(v.to(dev, non_blocking=True)) for k, v in feed.next().items()}
            with precision.autocast():
                loss, logs = m.training_step(batch, step)
            if not torch.isfinite(loss):
                raise SslsegError(f"{spec.method}: loss became {loss.item()} at iteration {step}")
            for o in opts:
                o.zero_grad(set_to_none=True)
            precision.backward(loss, opts)
            m.after_step(step)
            run.step = it = step + 1
            row = {"iteration": it, "stage": run.entered, "lr": lr, "loss": loss.item(), **logs, "val_dice": ""}
            validation = None
            if validator and (it % val["every"] == 0 or it == total):
                row["val_dice"] = vd = validator(m.predictor())
                validation = (vd, vd > run.best["dice"])
                if validation[1]:
                    run.best = {"dice": vd, "step": it, "state": _snapshot(m)}
                for name in m.also_validate():
                    other = validator(m.nets[name])
                    row[f"val_dice_{name}"] = other
                    if other > run.best_other.get(name, {"dice": -1.0})["dice"]:
                        run.best_other[name] = {"dice": other, "step": it, "state": {
                            k: v.detach().cpu().clone() for k, v in m.nets[name].state_dict().items()}}
                m.train()
            m.end_iteration(step, validation)
            if validation is not None:
                run.stale = 0 if validation[1] else run.stale + 1
                if val.get("patience") and run.stale >= val["patience"] and run.entered == len(stages) - 1 \
                        and val["selection"] == "val":
                    run.stopped = it
            run.log.append(row)
            if it % log_every == 0 or row["val_dice"] != "":
                per_it = (time.time() - t0) / (it - first)
                print(f"[sslseg train] {spec.bench}/{spec.label}/l{spec.budget}/seed{spec.seed} it {it}/{total} "
                      f"loss {row['loss']:.4f} lr {lr:.5f}"
                      + (f" val_dice {row['val_dice']:.4f}" if row["val_dice"] != "" else "") + f" {per_it:.2f} s/it "
                      f"eta {_duration(per_it * (total - it))}", flush=True)
            if it % ckpt_every == 0 and it < total:
                _save_resume(resume, m, opts, feed, run, run.wall + time.time() - t0, chash, precision)
    run.wall += time.time() - t0
    if run.step >= total or run.stopped is not None:
        _finish(out, spec, m, info, run, dev, init, precision, depth)
        if resume.is_file():
            resume.unlink()
            resume.parent.rmdir()
        return out / "model.pt"
    _save_resume(resume, m, opts, feed, run, run.wall, chash, precision)
    if stop.received is not None:
        raise TrainingInterrupted(f"stopped by signal {stop.received} before iteration {run.step}; resume state "
                                  f"saved in {resume}; rerun the same command to continue")
    return resume


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _check_writable(out: Path) -> None:
    """Fail before the work, not at the first checkpoint, when ``out`` cannot take files."""
    existing = next(p for p in (out, *out.parents) if p.exists())  # create nothing before the run writes
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise SslsegError(f"{out}: cannot write the run's files here ({e.strerror})") from None


def _stage_index(stages: list[Stage], step: int) -> int:
    return max(i for i, s in enumerate(stages) if s.start <= step)


def _enter(stage: Stage, m: Method, run: _Run, opts: list[torch.optim.Optimizer]) -> None:
    """A stage starts: optionally from the best validation weights so far (the best weights of also-validated
    networks go to ``m.best_states``), with fresh optimiser state and its own weight decay; selection restarts
    with it."""
    if stage.restore_best and run.best["state"] is not None:
        for k, mod in m.modules().items():
            mod.load_state_dict(run.best["state"][k])
    if stage.restore_best:
        m.best_states = {k: v["state"] for k, v in run.best_other.items()}
        run.best = {"dice": -1.0, "step": -1, "state": None}
        run.best_other, run.stale = {}, 0
    for o in opts:
        if stage.reset_optimisers:
            o.state.clear()
        for g in o.param_groups:
            base = g.get("initial_weight_decay", g["weight_decay"])  # a resume state saved before stage decays
            g["weight_decay"] = base if stage.weight_decay is None else stage.weight_decay
    m.stage = stage.name
    m.begin_stage(stage)


def _set_lr(opts: list[torch.optim.Optimizer], step: int, sched: dict, stage_start: int) -> float:
    """Every group's lr at iteration ``step``: poly over the run, or (``lr_steps``) step decay counted from the
    start of the current stage."""
    lrs = []
    for o in opts:
        for g in o.param_groups:
            if "lr_steps" in sched:
                decay = sched["lr_steps"]
                g["lr"] = g["initial_lr"] * decay["gamma"] ** ((step - stage_start) // decay["every"])
            else:
                g["lr"] = poly_lr(g["initial_lr"], step, sched["iterations"], sched["poly_power"])
            lrs.append(g["lr"])
    return lrs[0]


def _load_init(path: Path, spec: RunSpec) -> dict[str, dict]:
    """State dicts of the warm-start checkpoint by network name; it must be the run the spec names."""
    src, budget, seed = spec.warm_start["from"], spec.budget, spec.seed
    if not path.is_file():
        raise SslsegError(f"{path}: warm-start model missing; train {src!r} (budget {budget}, seed {seed}) first")
    ckpt = load_checkpoint(path)
    info = ckpt["info"]
    if (info.get("method"), info.get("budget"), info.get("seed")) != (src, budget, seed):
        raise SslsegError(f"{path}: is {info.get('method')}/l{info.get('budget')}/seed{info.get('seed')}, "
                          f"expected the warm start {src}/l{budget}/seed{seed}")
    if info.get("run") != spec.warm_start["run"]:
        raise SslsegError(f"{path}: was trained with another configuration (run {info.get('run')}) than this "
                          f"benchmark's {src!r} (run {spec.warm_start['run']}); retrain it")
    states = {k: v["state_dict"] for k, v in ckpt["networks"].items()}
    own = METHODS[spec.method].networks
    if len(states) > 1 and not set(own) <= set(states):
        raise SslsegError(f"{path}: has networks {sorted(states)}; {spec.method!r} needs {sorted(own)}")
    return states


def _restore(path: Path, chash: str, m: Method, opts, sampler, run: _Run, stages: list[Stage],
             precision: Precision) -> None:
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable resume state is reported and ignored
        print(f"[sslseg train] ignoring unreadable {path} ({type(e).__name__})", flush=True)
        return
    if st.get("run") != chash:
        print(f"[sslseg train] ignoring {path}: it belongs to another configuration", flush=True)
        return
    for k, mod in m.modules().items():
        mod.load_state_dict(st["modules"][k])
    for o, s in zip(opts, st["optimisers"]):
        o.load_state_dict(s)
    sampler.load_state(st["sampler"])
    m.load_state(st.get("method", {}))
    if st.get("scaler"):
        precision.scaler.load_state_dict(st["scaler"])
    torch.set_rng_state(st["torch_rng"])
    if torch.cuda.is_available() and st.get("cuda_rng") is not None:
        torch.cuda.set_rng_state_all(st["cuda_rng"])
    random.setstate(st["py_rng"])
    run.step, run.entered, run.best, run.log, run.wall = st["step"], st["entered"], st["best"], st["log"], st["wall"]
    run.best_other, run.stale = st.get("best_other", {}), st.get("stale", 0)
    if run.entered >= 0:
        m.stage = stages[run.entered].name
    print(f"[sslseg train] resumed from {path} at iteration {run.step}", flush=True)


def _save_resume(path: Path, m: Method, opts, sampler, run: _Run, wall: float, chash: str,
                 precision: Precision) -> None:
    state = {"modules": {k: mod.state_dict() for k, mod in m.modules().items()},
             "optimisers": [o.state_dict() for o in opts], "sampler": sampler.state(),
             "torch_rng": torch.get_rng_state(), "py_rng": random.getstate(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
             "method": m.state(), "step": run.step, "entered": run.entered, "best": run.best,
             "best_other": run.best_other, "log": run.log, "scaler": precision.scaler.state_dict(),
             "stale": run.stale,
             "wall": wall, "run": chash}
    write_torch(path, state)


def _finish(out: Path, spec: RunSpec, m: Method, info: DatasetInfo, run: _Run, dev, init: Path | None,
            precision: Precision, prefetch: int) -> None:
    selection, sched = spec.validation["selection"], spec.schedule
    use_best = selection == "val" and run.best["state"] is not None
    states = run.best["state"] if use_best else _snapshot(m)
    selected = run.best["step"] if selection == "val" else sched["iterations"]
    meta = {"dataset": info.name, "dims": info.dims, "in_channels": info.in_channels, "n_classes": info.n_classes,
            "patch": list(sched["patch"]), "method": spec.label, "budget": spec.budget, "seed": spec.seed,
            "run": spec.hash, "selection": selection, "selected_iteration": selected}
    ckpt = {"format": CHECKPOINT_FORMAT, "predict": list(m.predict), "info": meta,
            "networks": {n: {"model": spec.networks[n], "state_dict": states[n]} for n in m.predict}}
    write_torch(out / "model.pt", ckpt)
    fields = sorted({k for r in run.log for k in r}, key=lambda k: (k not in ("iteration", "stage", "lr", "loss"), k))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(run.log)
    with atomic_path(out / "train_log.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    write_json(out / "provenance.json", {
        "run": spec.hash, "spec": spec.identity(), "benchmark": spec.bench, "method": spec.label,
        "iterations": sched["iterations"], "budget": spec.budget, "seed": spec.seed,
        "warm_start": None if spec.warm_start is None else {**spec.warm_start, "model": str(init)},
        "selection": selection, "selected_iteration": selected, "best_val_dice": run.best["dice"],
        "stopped_early_at": run.stopped,
        "wall_time_s": round(run.wall, 2), "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "git_commit": _git_commit(), "python": sys.version.split()[0], "platform": platform.platform(),
        "versions": {"sslseg": sslseg.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "deterministic": "torch.use_deterministic_algorithms(True); cudnn.benchmark=False; threads="
                         f"{torch.get_num_threads()}",
        "precision": precision.name, "channels_last": precision.channels_last, "prefetch": prefetch,
        "time_finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    print(f"[sslseg train] wrote {out / 'model.pt'} (selection {selection}, iteration {selected}, best val Dice "
          f"{run.best['dice']:.4f}, {run.wall:.0f} s)", flush=True)
