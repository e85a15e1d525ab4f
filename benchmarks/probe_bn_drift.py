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

from sslseg.config import benchmark, load_config
from sslseg.data.loader import TwoStreamSampler, load_prepared
from sslseg.methods import METHODS, method_params
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
    b = benchmark(load_config(args.config), args.bench)
    prepared = Path(f"resources/prepared/{b['dataset']}")
    meta, _ = load_prepared(prepared)
    n, s = len(meta["classes"]) + 1, b["schedule"]
    m = METHODS[args.method](lambda: build_model(b["model"], meta["dims"], 1, n),
                             method_params(args.method, b["hparams"].get(args.method)), args.iterations, n)
    state = torch.load(args.model, map_location="cpu", weights_only=True)["state_dict"]
    for mod in m.modules().values():
        mod.load_state_dict(state)
    sampler = TwoStreamSampler(prepared, args.labels, s["patch"], meta["dims"], n, s["batch_labelled"],
                               s["batch_unlabelled"], np.random.default_rng(0), mix_batch=m.needs_mix_batch)
    opt = torch.optim.SGD(m.parameters(), lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"])
    net = m.eval_model()
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
