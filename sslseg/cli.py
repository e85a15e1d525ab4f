"""``sslseg`` command line: one subcommand per pipeline stage; argument parsing only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sslseg import SslsegError, __version__

__all__ = ["main"]


def _bench(args):
    from sslseg.config import benchmark, load_config

    cfg = load_config(args.config)
    return cfg, benchmark(cfg, args.bench)


def cmd_download(args) -> None:
    from sslseg.config import load_config
    from sslseg.data import DATASETS
    from sslseg.io import write_json

    spec = DATASETS[args.dataset]
    source, sha256 = args.source, args.sha256
    if source is None and args.config:
        entry = load_config(args.config)["sources"].get(args.dataset, "")
        source, sha256 = (entry, sha256) if isinstance(entry, str) else (entry["url"], sha256 or entry.get("sha256"))
    facts = spec.download(source or "", Path(args.out), sha256) or {}
    write_json(Path(args.out) / "download.json", {"dataset": args.dataset, "source": source or "(default)", **facts})


def cmd_preprocess(args) -> None:
    from sslseg.data import DATASETS

    spec = DATASETS[args.dataset]
    spec.preprocess(spec, Path(args.raw), Path(args.out))


def cmd_train(args) -> None:
    from sslseg.train import train

    _, bench = _bench(args)
    train(bench, args.bench, args.method, args.labels, args.seed, Path(args.prepared), Path(args.out),
          device=args.device, init=Path(args.init) if args.init else None)


def cmd_infer(args) -> None:
    from sslseg.infer import infer

    _, bench = _bench(args)
    inf = bench["inference"]
    infer(Path(args.model), Path(args.prepared), Path(args.out), args.split, bench["protocol"], inf["overlap"],
          inf["mode"], inf["batch_size"], args.device)


def cmd_evaluate(args) -> None:
    from sslseg.evaluate import evaluate

    _, bench = _bench(args)
    evaluate(Path(args.pred), Path(args.prepared), Path(args.out), args.split, bench["protocol"],
             bench["empty_policy"])


def cmd_aggregate(args) -> None:
    from sslseg.report import aggregate

    _, bench = _bench(args)
    aggregate(bench, args.bench, Path(args.results), Path(args.prepared))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sslseg", description="Semi-supervised medical image segmentation pipeline: "
                                "download -> preprocess -> train -> infer -> evaluate -> aggregate.")
    p.add_argument("--version", action="version", version=f"sslseg {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help_, bench=True):
        s = sub.add_parser(name, help=help_, description=help_)
        s.set_defaults(fn=fn)
        if bench:
            s.add_argument("--config", default="config.yaml", help="config file (default: config.yaml)")
            s.add_argument("--bench", required=True, help="benchmark name (a key of benchmarks: in the config)")
        return s

    s = add("download", cmd_download, "fetch (or generate) a dataset's raw files, verified by checksum", bench=False)
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", required=True, help="raw folder, e.g. resources/raw/{dataset}")
    s.add_argument("--source", help="URL (https://, file://) or local file/directory; overrides the config")
    s.add_argument("--sha256", help="expected SHA-256 of the source archive (default: the dataset's pinned one)")
    s.add_argument("--config", help="config file whose sources: entry gives the source")
    s = add("preprocess", cmd_preprocess, "raw files -> prepared h5 cases + cases.csv + dataset.json", bench=False)
    s.add_argument("--dataset", required=True)
    s.add_argument("--raw", required=True)
    s.add_argument("--out", required=True, help="prepared folder, e.g. resources/prepared/{dataset}")
    s = add("train", cmd_train, "train one method x label budget x seed")
    s.add_argument("--method", required=True)
    s.add_argument("--labels", type=int, required=True, help="label budget")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--prepared", required=True)
    s.add_argument("--out", required=True, help="run folder (model.pt, train_log.csv, provenance.json)")
    s.add_argument("--init", help="model.pt of the benchmark's warm_start method (same budget and seed)")
    s.add_argument("--device", help="torch device (default: a free GPU if any, else cpu)")
    s = add("infer", cmd_infer, "predict a split into NIfTI files with the original geometry")
    s.add_argument("--model", required=True)
    s.add_argument("--prepared", required=True)
    s.add_argument("--out", required=True, help="prediction folder")
    s.add_argument("--split", default="test", choices=["val", "test"])
    s.add_argument("--device", help="torch device (default: a free GPU if any, else cpu)")
    s = add("evaluate", cmd_evaluate, "per case x class Dice, Jaccard, HD95, ASD of a prediction folder")
    s.add_argument("--pred", required=True)
    s.add_argument("--prepared", required=True)
    s.add_argument("--out", required=True, help="metrics.csv")
    s.add_argument("--split", default="test", choices=["val", "test"])
    s = add("aggregate", cmd_aggregate, "summaries, p-values, Excel and paper tables of a benchmark")
    s.add_argument("--results", required=True, help="results/{bench}")
    s.add_argument("--prepared", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from sslseg.train import TrainingInterrupted

    try:
        args.fn(args)
    except TrainingInterrupted as e:
        print(f"sslseg {args.command}: interrupted: {e}", file=sys.stderr)
        return 143
    except SslsegError as e:
        print(f"sslseg {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
