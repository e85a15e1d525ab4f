"""The trainer: smoke runs per method and dataset (grey and RGB 2D, one- and two-channel 3D), determinism, resume,
stages, warm start, provenance, a toy method added from outside; Mean Teacher's mechanism on tiny tensors."""

import dataclasses
import hashlib
import json
import math

import pandas as pd
import pytest
import torch

from conftest import build_method, fit
from sslseg import SslsegError
from sslseg.data import load_prepared
from sslseg.methods import METHODS, method_params
from sslseg.methods.common import dice_loss, ema_update, sigmoid_rampup
from sslseg.train import poly_lr


def _weights(path, network=None):
    ckpt = torch.load(path, weights_only=True)
    return ckpt["networks"][network or ckpt["predict"][0]]["state_dict"]


@pytest.mark.parametrize("bench", ["synth2d", "synth3d", "synthpolyp", "synthmm"])
@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains(tiny, prepared, tmp_path, bench, method):
    b = tiny[bench]
    info, _ = load_prepared(prepared[bench])
    if info.dims not in METHODS[method].spatial_dims:
        pytest.skip(f"{method} is {METHODS[method].spatial_dims}D only")
    b["schedule"]["batch_labelled"] = b["schedule"]["batch_unlabelled"] = 2  # BCP mixes halves of each batch
    out = fit(b, method, b["labels"][0], 0, prepared[bench], tmp_path / "run")
    assert out == tmp_path / "run" / "model.pt"
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert len(log) == b["schedule"]["iterations"] and log["loss"].map(math.isfinite).all()
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    for key in ("run", "spec", "seed", "versions", "git_commit", "device", "wall_time_s", "selected_iteration"):
        assert key in prov
    assert prov["spec"]["method"] == method and "bench" not in prov["spec"]
    assert not (tmp_path / "run" / ".resume").exists()
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["info"]["in_channels"] == info.in_channels and ckpt["predict"] == list(METHODS[method].predict)
    assert method != "decseg" or ckpt["networks"]["student"]["model"]["base"] == 4
    # parameters moved away from the initialisation
    init = _init_state(ckpt["networks"][ckpt["predict"][0]]["model"], info)
    assert any(not torch.equal(v, _weights(out)[k]) for k, v in init.items() if v.dtype.is_floating_point)


def _init_state(model: dict, info):
    from sslseg.models import build_model
    from sslseg.train import seed_everything

    seed_everything(0)
    return build_model(model, info.dims, info.in_channels, info.n_classes).state_dict()


def test_same_seed_same_model_other_seed_differs(tiny, prepared, tmp_path):
    b = tiny["synth2d"]
    a = fit(b, "mean_teacher", 1, 0, prepared["synth2d"], tmp_path / "a")
    c = fit(b, "mean_teacher", 1, 0, prepared["synth2d"], tmp_path / "c")
    d = fit(b, "mean_teacher", 1, 1, prepared["synth2d"], tmp_path / "d")
    wa, wc, wd = _weights(a), _weights(c), _weights(d)
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    # and the files themselves: torch.save into a file would record its random temporary name in the archive
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(c.read_bytes()).digest()
    assert any(not torch.equal(wa[k], wd[k]) for k in wa if wa[k].dtype.is_floating_point)


@pytest.mark.parametrize("bench, method", [("synth2d", "mean_teacher"), ("synth3d", "mean_teacher"),
                                           ("synth2d", "unimatch"), ("synth2d", "bcp"), ("synth2d", "egm_dt"),
                                           ("synth2d", "sscd")])
def test_resumed_run_equals_uninterrupted(tiny, prepared, tmp_path, bench, method):
    # unimatch: strong augmentations draw from torch's generator; bcp: the stop falls across its stage change
    b = tiny[bench]
    b["validation"]["selection"] = "last"
    if method == "bcp":
        b["schedule"]["batch_labelled"] = 2
        b["hparams"] = {"bcp": {"pretrain": 0.25}}  # self-training from iteration 2; the run stops at 3
    if method == "egm_dt":  # also the static teacher's counter (period 2 of the 6 self-training iterations)
        b["schedule"]["batch_labelled"] = 2
        b["hparams"] = {"egm_dt": {"pretrain": 0.25, "static_period": 1 / 3, "static_step": 1 / 6,
                                   "static_min": 1 / 6, "static_max": 1 / 2}}
    if method == "sscd":  # stages at 2, 3, 4, 6, 7: the stop falls where S2 starts from S1's best second student
        b["schedule"]["batch_labelled"] = 2
        b["validation"]["every"] = 1
        b["hparams"] = {"sscd": {"pretrain": 0.25, "entropy_start": 0.4}}
    full = fit(b, method, b["labels"][0], 0, prepared[bench], tmp_path / "full")
    resume = fit(b, method, b["labels"][0], 0, prepared[bench], tmp_path / "cut", stop_after=3)
    assert resume.name == "state.pt" and not (tmp_path / "cut" / "model.pt").exists()
    cut = fit(b, method, b["labels"][0], 0, prepared[bench], tmp_path / "cut")
    wf, wc = _weights(full), _weights(cut)
    assert all(torch.equal(wf[k], wc[k]) for k in wf)
    lf = pd.read_csv(tmp_path / "full" / "train_log.csv")
    lc = pd.read_csv(tmp_path / "cut" / "train_log.csv")
    assert lf["loss"].tolist() == lc["loss"].tolist()


def test_resume_state_of_another_config_is_ignored(tiny, prepared, tmp_path):
    b = tiny["synth2d"]
    fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "r", stop_after=5)
    b2 = dict(b, schedule=dict(b["schedule"], lr=0.02))
    fit(b2, "supervised", 1, 0, prepared["synth2d"], tmp_path / "r")
    fresh = fit(b2, "supervised", 1, 0, prepared["synth2d"], tmp_path / "fresh")
    w1, w2 = _weights(tmp_path / "r" / "model.pt"), _weights(fresh)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_poly_lr_and_rampup():
    assert poly_lr(0.01, 0, 100, 0.9) == 0.01
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5**0.9)
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(150, 100) == 1.0


def test_dice_loss_by_hand():
    probs = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (B=1, C=2, 1, 2): perfect prediction of [0, 1]
    assert float(dice_loss(probs, torch.tensor([[[0, 1]]]))) == pytest.approx(0.0, abs=1e-6)
    # all mass on class 0 for target [0, 1]: class 0: 1 - 2*1/(2+1); class 1: 1 - 0/(0+1)
    probs = torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]]]])
    expect = ((1 - 2 / 3) + 1) / 2
    assert float(dice_loss(probs, torch.tensor([[[0, 1]]]))) == pytest.approx(expect, abs=1e-5)


def test_mean_teacher_schedule_and_ema():
    make = lambda: torch.nn.Conv2d(1, 2, 1)  # noqa: E731
    mt = build_method("mean_teacher", make, method_params("mean_teacher"), 30000, 2)
    assert mt.consistency_weight(999) == 0.0  # SSL4MIS: off before iteration 1000 of 30000
    assert mt.consistency_weight(1000) == pytest.approx(0.1 * math.exp(-5 * (1 - 1000 / 30000) ** 2))
    assert mt.consistency_weight(30000) == pytest.approx(0.1)
    teacher_before = mt.teacher.weight.detach().clone()
    with torch.no_grad():
        mt.student.weight.add_(1.0)
    mt.after_step(0)  # decay min(1 - 1/1, 0.99) = 0: teacher := student
    assert torch.equal(mt.teacher.weight, mt.student.weight)
    with torch.no_grad():
        mt.student.weight.add_(1.0)
    mt.after_step(1000)  # decay 0.99
    assert torch.allclose(mt.teacher.weight, 0.99 * (teacher_before + 1) + 0.01 * (teacher_before + 2))
    assert not any(p.requires_grad for p in mt.teacher.parameters())


def test_ema_update_parameters_only():
    a, b = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        b.weight.fill_(3.0)
        b.running_mean.fill_(5.0)
    ema_update(a, b, 0.5)
    assert torch.allclose(a.weight, torch.full((2,), 2.0)) and torch.equal(a.running_mean, torch.zeros(2))


def test_mean_teacher_consistency_uses_unlabelled_only():
    """The consistency term compares student and teacher softmaxes on x_u; a teacher equal to the student and zero
    noise gives zero consistency loss, whatever the labelled batch holds."""
    make = lambda: torch.nn.Conv2d(1, 3, 1)  # noqa: E731
    p = method_params("mean_teacher", {"noise_std": 0.0})
    mt = build_method("mean_teacher", make, p, 10, 3)
    batch = {"x_l": torch.randn(2, 1, 4, 4), "y_l": torch.randint(0, 3, (2, 4, 4)), "x_u": torch.randn(3, 1, 4, 4)}
    _, logs = mt.training_step(batch, 5)
    assert logs["loss_cons"] == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        mt.teacher.weight.add_(1.0)
    _, logs = mt.training_step(batch, 5)
    assert logs["loss_cons"] > 0


def test_warm_start_loads_the_networks_and_checks_its_source(tiny, prepared, tmp_path):
    from sslseg import SslsegError
    from sslseg.config import run_spec, validate
    from sslseg.train import train

    b = tiny["synth2d"]
    b["warm_start"] = {"from": "supervised", "iterations": 2}
    sup = fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "sup")
    with pytest.raises(SslsegError, match="--init"):
        fit(b, "mean_teacher", 1, 0, prepared["synth2d"], tmp_path / "mt")
    with pytest.raises(SslsegError, match="expected the warm start supervised/l1/seed1"):
        fit(b, "mean_teacher", 1, 1, prepared["synth2d"], tmp_path / "mt", init=sup)
    other = dict(b, schedule=dict(b["schedule"], lr=0.02))  # the supervised run of this config would differ
    with pytest.raises(SslsegError, match="another configuration"):
        fit(other, "mean_teacher", 1, 0, prepared["synth2d"], tmp_path / "mt", init=sup)
    fit(b, "mean_teacher", 1, 0, prepared["synth2d"], tmp_path / "mt", init=sup)
    prov = json.loads((tmp_path / "mt" / "provenance.json").read_text())
    assert prov["iterations"] == 2 and prov["warm_start"]["from"] == "supervised"
    assert len(pd.read_csv(tmp_path / "mt" / "train_log.csv")) == 2
    # two steps that barely move (lr 1e-12, last iteration): the student is the warm start itself
    still = dict(b, schedule=dict(b["schedule"], lr=1e-12), validation={"every": 0, "selection": "last"})
    spec = run_spec(validate({"benchmarks": {"t": still}}), "t", "mean_teacher", 1, 0)
    spec = dataclasses.replace(spec, warm_start=dict(spec.warm_start, run=prov["spec"]["warm_start"]["run"]))
    out = train(spec, prepared["synth2d"], tmp_path / "still", init=sup)
    w0, w1 = _weights(sup), _weights(out)
    assert all(torch.allclose(w0[k].float(), w1[k].float(), atol=1e-6) for k in w0 if "running" not in k
               and "num_batches" not in k)


def test_bcp_self_training_restarts_from_the_best_pretraining_weights(tiny, prepared, tmp_path, monkeypatch):
    import sslseg.train as tr

    b = tiny["synth2d"]
    b["schedule"].update(iterations=8, batch_labelled=2)
    b["validation"] = {"every": 1}
    b["hparams"] = {"bcp": {"pretrain": 0.5}}
    scores = iter([0.1, 0.9, 0.2, 0.3, 0.5, 0.4, 0.45, 0.2])  # best pre-training at 2, best self-training at 5
    seen = {}
    monkeypatch.setattr(tr.Validator, "__call__", lambda self, model: next(scores))
    real = METHODS["bcp"].begin_stage

    def spy(self, stage):
        if stage.name == "self-train":
            seen["student"] = {k: v.clone() for k, v in self.student.state_dict().items()}
        real(self, stage)
        if stage.name == "self-train":
            seen["teacher"] = {k: v.clone() for k, v in self.teacher.state_dict().items()}

    monkeypatch.setattr(METHODS["bcp"], "begin_stage", spy)
    out = fit(b, "bcp", 1, 0, prepared["synth2d"], tmp_path / "bcp")
    prov = json.loads((tmp_path / "bcp" / "provenance.json").read_text())
    assert prov["selected_iteration"] == 5 and prov["best_val_dice"] == 0.5  # selection restarted at 4
    log = pd.read_csv(tmp_path / "bcp" / "train_log.csv")
    assert log["stage"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert all(torch.equal(seen["student"][k], seen["teacher"][k]) for k in seen["student"])
    assert _weights(out).keys() == seen["student"].keys()
    # the student restarted from the weights of iteration 2 (the best pre-training score), not those of 4
    scores = iter([0.1, 0.9])
    state = fit(b, "bcp", 1, 0, prepared["synth2d"], tmp_path / "cut", stop_after=2)
    at2 = torch.load(state, weights_only=True)["modules"]["student"]
    assert all(torch.equal(at2[k], seen["student"][k]) for k in at2)


def _sampler(prepared, seed=0, **kw):
    import numpy as np

    from sslseg.data.loader import TwoStreamSampler

    return TwoStreamSampler(prepared, 1, (32, 32), 2, 2, np.random.default_rng(seed),
                            frozenset({"x_l", "y_l", "x_u", "x_u_mix"}), **kw)


def test_prefetched_batches_are_the_samplers_own_and_resume_where_handed_out(prepared):
    from sslseg.data.loader import Prefetcher

    plain = _sampler(prepared["synth2d"])
    expected, states = [], []
    for _ in range(5):
        expected.append(plain.next())
        states.append(plain.state())
    with Prefetcher(_sampler(prepared["synth2d"]), depth=3) as feed:
        for k in range(3):
            got = feed.next()
            assert set(got) == set(expected[k]) and all(torch.equal(got[n], expected[k][n]) for n in got)
        assert feed.state() == states[2]  # not the state after the batches made ahead
        saved = feed.state()
    resumed = _sampler(prepared["synth2d"], seed=99)
    resumed.load_state(saved)
    with Prefetcher(resumed, depth=2) as feed:
        for k in (3, 4):
            got = feed.next()
            assert all(torch.equal(got[n], expected[k][n]) for n in got)


def test_an_error_while_prefetching_is_raised_by_next(prepared):
    from sslseg import SslsegError
    from sslseg.data.loader import Prefetcher

    s = _sampler(prepared["synth2d"])
    calls = []
    real = s.next

    def next_or_fail():
        calls.append(1)
        if len(calls) == 3:
            raise SslsegError("case.h5: damaged")
        return real()

    s.next = next_or_fail
    feed = Prefetcher(s, depth=4)
    feed.next(), feed.next()
    with pytest.raises(SslsegError, match="case.h5: damaged"):
        feed.next()
    assert not feed._thread.is_alive()


def test_prefetching_does_not_change_the_run(tiny, prepared, tmp_path, monkeypatch):
    b = tiny["synth2d"]
    monkeypatch.setenv("SSLSEG_PREFETCH", "2")  # the default on a GPU (off on a CPU)
    a = fit(b, "mean_teacher", 1, 0, prepared["synth2d"], tmp_path / "a")
    monkeypatch.setenv("SSLSEG_PREFETCH", "0")
    c = fit(b, "mean_teacher", 1, 0, prepared["synth2d"], tmp_path / "c")
    monkeypatch.setenv("SSLSEG_PREFETCH", "3")  # and a resume with batches made ahead continues exactly
    fit(b, "mean_teacher", 1, 0, prepared["synth2d"], tmp_path / "d", stop_after=3)
    d = fit(b, "mean_teacher", 1, 0, prepared["synth2d"], tmp_path / "d")
    wa, wc, wd = _weights(a), _weights(c), _weights(d)
    assert all(torch.equal(wa[k], wc[k]) and torch.equal(wa[k], wd[k]) for k in wa)
    assert [json.loads((tmp_path / r / "provenance.json").read_text())["prefetch"] for r in "acd"] == [2, 0, 3]


@pytest.mark.parametrize("bench, precision, channels_last", [("synth2d", "bf16", True), ("synth3d", "bf16", True),
                                                             ("synth2d", "fp16", False)])
def test_mixed_precision_and_channels_last_are_part_of_the_run(tiny, prepared, tmp_path, bench, precision,
                                                              channels_last):
    from sslseg.config import run_spec, validate

    b = tiny[bench]
    fp32 = run_spec(validate({"benchmarks": {"t": b}}), "t", "mean_teacher", b["labels"][0], 0)
    assert "precision" not in fp32.to_json() and "channels_last" not in fp32.to_json()  # older runs keep their id
    b["schedule"].update(precision=precision, channels_last=channels_last)
    spec = run_spec(validate({"benchmarks": {"t": b}}), "t", "mean_teacher", b["labels"][0], 0)
    assert spec.hash != fp32.hash
    b["validation"]["selection"] = "last"
    full = fit(b, "mean_teacher", b["labels"][0], 0, prepared[bench], tmp_path / "full")
    prov = json.loads((tmp_path / "full" / "provenance.json").read_text())
    assert (prov["precision"], prov["channels_last"]) == (precision, channels_last)
    assert pd.read_csv(tmp_path / "full" / "train_log.csv")["loss"].map(math.isfinite).all()
    # the scaler's state (fp16) and the layout survive a resume
    fit(b, "mean_teacher", b["labels"][0], 0, prepared[bench], tmp_path / "cut", stop_after=2)
    cut = fit(b, "mean_teacher", b["labels"][0], 0, prepared[bench], tmp_path / "cut")
    wf, wc = _weights(full), _weights(cut)
    assert all(torch.equal(wf[k], wc[k]) for k in wf)


def test_fp16_scaler_is_saved_with_the_resume_state(tiny, prepared, tmp_path):
    b = tiny["synth2d"]
    b["schedule"]["precision"] = "fp16"
    state = fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "r", stop_after=2)
    scaler = torch.load(state, weights_only=True)["scaler"]
    # the scaler after two steps, each either counted towards growth or an overflow (scale halved, count reset);
    # a fresh scaler would read (65536, 0)
    assert (scaler["scale"], scaler["_growth_tracker"]) in {(65536.0, 2), (32768.0, 1), (32768.0, 0), (16384.0, 0)}


def test_step_decay_follows_the_stage_and_stays_out_of_older_identities(tiny, prepared, tmp_path):
    """BCP with ``lr_steps`` (every 2, gamma 0.1) over 6 iterations, self-training from iteration 3: the logged
    lr is 1, 1, 0.1 in pre-training and again 1, 1, 0.1 in self-training (times the base 0.05)."""
    from sslseg.config import run_spec, validate

    b = tiny["synth2d"]
    b["schedule"].update(iterations=6, batch_labelled=2, lr=0.05)
    b["hparams"] = {"bcp": {"pretrain": 0.5}}
    poly = run_spec(validate({"benchmarks": {"t": dict(b, methods=["supervised", "bcp"])}}), "t", "bcp", 1, 0)
    assert "lr_steps" not in poly.to_json()
    b["schedule"]["lr_steps"] = {"every": 2, "gamma": 0.1}
    fit(b, "bcp", 1, 0, prepared["synth2d"], tmp_path / "run")
    lr = pd.read_csv(tmp_path / "run" / "train_log.csv")["lr"].tolist()
    assert lr == pytest.approx([0.05, 0.05, 0.005, 0.05, 0.05, 0.005])


def test_a_stage_sets_its_weight_decay_and_schedules_change_one_method(tiny, prepared, tmp_path):
    """BCP's ``pretrain_weight_decay`` (Hsu & Hua pre-train LA with 1e-3, self-train with 1e-4): the optimiser
    carries it while pre-training (iterations 0-2) and the schedule's 1e-4 afterwards; at its default the
    parameter stays out of the run's identity. ``schedules`` changes the schedule of one method only."""
    from sslseg.config import run_spec, validate

    b = tiny["synth2d"]
    b["schedule"].update(iterations=6, batch_labelled=2)
    b["hparams"] = {"bcp": {"pretrain": 0.5}}
    cfg = validate({"benchmarks": {"t": dict(b, methods=["supervised", "bcp"])}})
    assert "pretrain_weight_decay" not in run_spec(cfg, "t", "bcp", 1, 0).hparams
    b["hparams"]["bcp"]["pretrain_weight_decay"] = 1e-3
    decay = {}
    for stop in (2, 4):
        state = fit(b, "bcp", 1, 0, prepared["synth2d"], tmp_path / f"run{stop}", stop_after=stop)
        decay[stop] = torch.load(state, weights_only=True)["optimisers"][0]["param_groups"][0]["weight_decay"]
    assert decay == {2: 1e-3, 4: 1e-4}
    cfg = validate({"benchmarks": {"t": dict(b, methods=["supervised", "bcp"],
                                             schedules={"bcp": {"lr_steps": {"every": 5, "gamma": 0.1}}})}})
    assert run_spec(cfg, "t", "bcp", 1, 0).schedule["lr_steps"] == {"every": 5, "gamma": 0.1}
    assert "lr_steps" not in run_spec(cfg, "t", "supervised", 1, 0).schedule
    with pytest.raises(SslsegError, match=r"benchmarks/t/schedules/bcp/lr: -1 is less than"):
        validate({"benchmarks": {"t": dict(b, methods=["supervised", "bcp"], schedules={"bcp": {"lr": -1}})}})
    with pytest.raises(SslsegError, match=r"benchmarks/t/schedules: unknown name 'bcpp'"):
        validate({"benchmarks": {"t": dict(b, methods=["supervised", "bcp"], schedules={"bcpp": {}})}})


def test_early_stop_after_patience_validations_without_a_better_model(tiny, prepared, tmp_path):
    """``validation: {patience: 2}`` with a learning rate too small to change anything: validation 1 sets the best,
    validations 2 and 3 find nothing better, so training ends at iteration 3 of 8 with the model of iteration 1;
    without ``patience`` the run's JSON is what it was."""
    from sslseg.config import run_spec, validate

    b = tiny["synth2d"]
    b["schedule"].update(iterations=8, lr=1e-12)
    b["validation"] = {"every": 1}
    assert "patience" not in run_spec(validate({"benchmarks": {"t": b}}), "t", "supervised", 1, 0).to_json()
    b["validation"]["patience"] = 2
    out = fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "run")
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["stopped_early_at"] == 3 and prov["selected_iteration"] == 1 and out.is_file()
    assert len(pd.read_csv(tmp_path / "run" / "train_log.csv")) == 3 and not (tmp_path / "run" / ".resume").exists()
