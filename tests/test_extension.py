"""Extending sslseg from outside the package: a method is one class and one registry call, nothing in the trainer.

The toy method trains two networks of different architectures and predicts with their ensemble; its checkpoint
alone rebuilds the ensemble in `sslseg infer`, and a warm start maps its weights by network name."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import fit
from sslseg import SslsegError
from sslseg.cli import main
from sslseg.config import run_spec, validate
from sslseg.data import read_split
from sslseg.infer import predict_volume
from sslseg.io import read_case, read_nifti
from sslseg.methods import METHODS, Method, Network
from sslseg.methods.common import sup_loss
from sslseg.models import build_model
from sslseg.train import train

NARROW = {"name": "unet", "channels": [2, 4], "dropout": [0.0, 0.0]}


@METHODS.register("toy_pair")
class ToyPair(Method):
    """Two networks, each supervised, plus agreement of their softmaxes on unlabelled data; both predict."""

    @dataclasses.dataclass(frozen=True)
    class Params:
        agreement: float = 0.5

    networks = {"a": Network(), "b": Network(init="xavier", model=NARROW)}
    predict = ("a", "b")

    def optimisers(self, sched):
        """One optimiser per network, the second at a tenth of the learning rate (and Adam, for variety)."""
        return [torch.optim.SGD(self.a.parameters(), lr=sched["lr"], momentum=sched["momentum"]),
                torch.optim.Adam(self.b.parameters(), lr=sched["lr"] / 10)]

    def training_step(self, batch, step):
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        loss_sup = sup_loss(self.a(x_l), y_l) + sup_loss(self.b(x_l), y_l)
        loss_agree = F.mse_loss(self.a(x_u).softmax(1), self.b(x_u).softmax(1))
        return loss_sup + self.p.agreement * loss_agree, {"loss_agree": loss_agree.item()}


@METHODS.register("toy_pair_ft")
class ToyPairFineTune(ToyPair):
    """The same networks, for a warm start from toy_pair."""


def test_two_network_ensemble_round_trips_through_infer(tiny, prepared, tmp_path, capsys):
    b = dict(tiny["synth2d"], methods=["supervised", "toy_pair"])
    model = fit(b, "toy_pair", 1, 0, prepared["synth2d"], tmp_path / "run")
    ckpt = torch.load(model, weights_only=True)
    assert ckpt["predict"] == ["a", "b"] and set(ckpt["networks"]) == {"a", "b"}
    assert ckpt["networks"]["b"]["model"]["channels"] == [2, 4]  # the method's own default architecture
    assert ckpt["networks"]["a"]["model"]["channels"] == b["model"]["channels"]  # the benchmark's
    assert main(["infer", "--model", str(model), "--prepared", str(prepared["synth2d"]), "--out",
                 str(tmp_path / "pred")]) == 0, capsys.readouterr().err
    # the same prediction by hand: both networks rebuilt, logits averaged
    nets = []
    for name in ("a", "b"):
        net = build_model(ckpt["networks"][name]["model"], 2, 1, 4)
        net.load_state_dict(ckpt["networks"][name]["state_dict"])
        nets.append(net.eval())

    class ByHand(torch.nn.Module):
        def forward(self, x):
            return (nets[0](x) + nets[1](x)) / 2

    cid = read_split("synth2d", "test")[0]
    case = read_case(prepared["synth2d"] / "cases" / f"{cid}.h5", label=False)
    expected = predict_volume(ByHand(), case.image, 2, [32, 32], 4, "strict")
    got, _ = read_nifti(tmp_path / "pred" / f"{cid}.nii.gz")
    np.testing.assert_array_equal(got, expected)
    single = predict_volume(nets[0], case.image, 2, [32, 32], 4, "strict")
    assert not np.array_equal(single, expected) or not np.array_equal(
        predict_volume(nets[1], case.image, 2, [32, 32], 4, "strict"), expected)


def test_toy_method_hyper_parameters_and_networks_are_validated(tiny):
    b = dict(tiny["synth2d"], methods=["supervised", "toy_pair"], hparams={"toy_pair": {"agreemnt": 1}})
    with pytest.raises(SslsegError, match="benchmarks/t/hparams/toy_pair.*'agreemnt'"):
        validate({"benchmarks": {"t": b}})
    b = dict(tiny["synth2d"], methods=["supervised", "toy_pair"], networks={"toy_pair": {"b": {"name": "vnet"}}})
    with pytest.raises(SslsegError, match="benchmarks/t/networks/toy_pair/b.*3D"):
        validate({"benchmarks": {"t": b}})


def test_warm_start_maps_weights_by_network_name(tiny, prepared, tmp_path):
    b = dict(tiny["synth2d"], methods=["toy_pair", "toy_pair_ft"], reference="toy_pair",
             warm_start={"from": "toy_pair", "iterations": 2})
    source = fit(b, "toy_pair", 1, 0, prepared["synth2d"], tmp_path / "src")
    still = dict(b, schedule=dict(b["schedule"], lr=1e-12), validation={"every": 0, "selection": "last"})
    spec = run_spec(validate({"benchmarks": {"t": still}}), "t", "toy_pair_ft", 1, 0)
    src_run = run_spec(validate({"benchmarks": {"t": b}}), "t", "toy_pair", 1, 0).hash
    spec = dataclasses.replace(spec, warm_start=dict(spec.warm_start, run=src_run))
    out = train(spec, prepared["synth2d"], tmp_path / "ft", init=source)
    before, after = torch.load(source, weights_only=True), torch.load(out, weights_only=True)
    for name in ("a", "b"):  # each network took its namesake (their shapes differ: a mix-up could not load)
        w0, w1 = before["networks"][name]["state_dict"], after["networks"][name]["state_dict"]
        assert all(torch.allclose(w0[k].float(), w1[k].float(), atol=1e-6) for k in w0 if "running" not in k
                   and "num_batches" not in k)


def test_warm_start_from_another_architecture_is_one_clear_error(tiny, prepared, tmp_path):
    b = dict(tiny["synth2d"], methods=["supervised", "toy_pair"], warm_start={"from": "supervised"})
    sup = fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "sup")
    with pytest.raises(SslsegError, match=r"sup/model.pt: network 'student' does not fit network 'b'"):
        fit(b, "toy_pair", 1, 0, prepared["synth2d"], tmp_path / "pair", init=sup)


def test_every_optimiser_steps_and_the_schedule_scales_each_initial_lr(tiny, prepared, tmp_path):
    from sslseg.train import _set_lr

    b = dict(tiny["synth2d"], methods=["supervised", "toy_pair"])
    state = fit(b, "toy_pair", 1, 0, prepared["synth2d"], tmp_path / "run", stop_after=3)
    sgd, adam = torch.load(state, weights_only=True)["optimisers"]
    assert len(sgd["state"]) == len(list(build_model(b["model"], 2, 1, 4).parameters()))  # momentum buffers
    assert {int(v["step"]) for v in adam["state"].values()} == {3}  # Adam stepped every iteration
    assert sgd["param_groups"][0]["initial_lr"] == 0.01 and adam["param_groups"][0]["initial_lr"] == 0.001
    assert adam["param_groups"][0]["lr"] == pytest.approx(0.001 * (1 - 2 / 8) ** 0.9)  # lr of the last step (2)
    p = [torch.nn.Parameter(torch.zeros(1))]
    opts = [torch.optim.SGD(p, lr=0.01), torch.optim.Adam(p, lr=0.001)]
    for o in opts:
        for g in o.param_groups:
            g["initial_lr"] = g["lr"]
    assert _set_lr(opts, 50, {"iterations": 100, "poly_power": 0.9}, 0) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert opts[1].param_groups[0]["lr"] == pytest.approx(0.001 * 0.5 ** 0.9)
    # step decay, counted from the start of the stage (BCP's self-training on LA restarts at the base rate)
    steps = {"iterations": 100, "poly_power": 0.9, "lr_steps": {"every": 2, "gamma": 0.1}}
    assert [_set_lr(opts, t, steps, 0) for t in range(5)] == pytest.approx([0.01, 0.01, 0.001, 0.001, 1e-4])
    assert [_set_lr(opts, t, steps, 3) for t in (3, 4, 5, 6)] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    assert opts[1].param_groups[0]["lr"] == pytest.approx(0.0001)
