"""Probe: does an SSL method's training move BatchNorm running statistics away from what eval mode needs?

    python benchmarks/probe_bn_drift.py --model results/acdc-cpu/supervised/l3/seed1/model.pt \
        --bench acdc-cpu --method unimatch --labels 3 [--iterations 40]

Starts the method from a trained model (as `warm_start` does) and, every 4 iterations, prints the method's logged
losses and the share of foreground pixels it predicts on the unlabelled batch in eval mode (running statistics)
and in train mode (batch statistics), beside the share in the labelled batch's labels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from sslseg.config import load_config, run_spec
from sslseg.data import load_prepared
from sslseg.data.loader import TwoStreamSampler
from sslseg.infer import load_checkpoint
from sslseg.methods import METHODS, build_networks, method_params
from sslseg.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--bench", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--labels", type=int, required=True)
    ap.add_argument("--model", required=True, help="model.pt to start from")
    ap.add_argument("--iterations", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = run_spec(load_config(args.config), args.bench, args.method, args.labels, 0)
    prepared = Path(f"resources/prepared/{spec.dataset['name']}")
    info, _ = load_prepared(prepared)
    s, cls = spec.schedule, METHODS[args.method]
    nets = build_networks(cls, lambda name: build_model(spec.networks[name], info.dims, info.in_channels,
                                                        info.n_classes))
    source = next(iter(load_checkpoint(Path(args.model))["networks"].values()))["state_dict"]
    for net in nets.values():
        net.load_state_dict(source)
    m = cls(nets, method_params(args.method, spec.hparams), args.iterations, info.n_classes)
    sampler = TwoStreamSampler(prepared, args.labels, s["patch"], s["batch_labelled"], s["batch_unlabelled"],
                               np.random.default_rng(0), cls.streams)
    (opt,) = m.optimisers(s)
    net = m.predictor()
    m.train()
    for it in range(args.iterations):
        batch = sampler.next()
        loss, logs = m.training_step(batch, it)
        if it % 4 == 0:
            with torch.no_grad():
                net.eval()
                fg_eval = (net(batch["x_u"]).argmax(1) > 0).float().mean().item()
                net.train()
                fg_train = (net(batch["x_u"]).argmax(1) > 0).float().mean().item()
            print(it, {k: round(v, 3) for k, v in logs.items()}, f"fg eval {fg_eval:.4f}",
                  f"fg train {fg_train:.4f}", f"fg labels {(batch['y_l'] > 0).float().mean().item():.4f}", flush=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.after_step(it)


if __name__ == "__main__":
    main()
