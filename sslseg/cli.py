"""``sslseg`` command line: one subcommand per pipeline stage; argument parsing only.

Every stage takes what it needs explicitly (the workflow passes it), or reads it from ``--config`` and
``--bench`` when run by hand; both go through the same resolution in ``sslseg.config``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sslseg import SslsegError, TrainingInterrupted, __version__

__all__ = ["main"]


def _config(args) -> dict:
    from sslseg.config import load_config

    if not args.config or not args.bench:
        raise SslsegError("name both --config and --bench to read the settings from a config file")
    return load_config(args.config)


def _json_arg(text: str, what: str) -> dict:
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise SslsegError(f"{path}: {what} file is missing")
        text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError as e:
        raise SslsegError(f"--spec: not valid JSON for {what} ({e})") from None


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
    facts = ", ".join(f"{k} {v}" for k, v in facts.items())
    _done("download", f"{args.dataset} from {source or 'its default source'} into {args.out}"
                      + (f" ({facts})" if facts else ""))


def cmd_preprocess(args) -> None:
    from sslseg.data import DATASETS, check_splits, load_prepared

    spec = DATASETS[args.dataset]
    check_splits(spec.name)
    spec.preprocess(spec, Path(args.raw), Path(args.out))
    _, cases = load_prepared(Path(args.out))
    counts = cases["split"].value_counts()
    _done("preprocess", f"{len(cases)} cases of {spec.name} (" + ", ".join(
        f"{counts.get(k, 0)} {k}" for k in ("train", "val", "test")) + f") in {args.out}")


def cmd_train(args) -> None:
    from sslseg.config import RunSpec, run_spec
    from sslseg.train import train

    if args.spec:
        spec = RunSpec.from_json(json.dumps(_json_arg(args.spec, "a run specification")))
    else:
        if args.method is None or args.labels is None or args.seed is None:
            raise SslsegError("give --spec, or --config, --bench, --method, --labels and --seed")
        if args.seed < 0:
            raise SslsegError(f"--seed {args.seed}: seeds are integers >= 0")
        spec = run_spec(_config(args), args.bench, args.method, args.labels, args.seed)
    train(spec, Path(args.prepared), Path(args.out), device=args.device, init=Path(args.init) if args.init else None,
          ckpt_every=args.ckpt_every)


def _stage_args(args, resolver: str, keys) -> dict:
    """Settings given as flags; with --config/--bench, the rest resolved from the config as the workflow does
    (``sslseg.config.<resolver>``, imported only then); without, the stage's defaults (the protocol's, for a
    protocol)."""
    given = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    if args.config or args.bench:
        import sslseg.config

        return {**getattr(sslseg.config, resolver)(_config(args), args.bench), **given}
    return given


def cmd_infer(args) -> None:
    from sslseg.infer import infer

    a = _stage_args(args, "inference_args", ("protocol", "overlap", "mode", "batch_size"))
    paths = infer(Path(args.model), Path(args.prepared), Path(args.out), args.split, device=args.device, **a)
    _done("infer", f"{len(paths)} {args.split} predictions in {args.out}")


def cmd_evaluate(args) -> None:
    from sslseg.evaluate import evaluate

    a = _stage_args(args, "evaluation_args", ("protocol", "empty_policy"))
    rows = evaluate(Path(args.pred), Path(args.prepared), Path(args.out), args.split, a.get("protocol", "strict"),
                    a.get("empty_policy"))
    dice = [r["dice"] for r in rows if r["dice"] == r["dice"]]
    _done("evaluate", f"{len({r['case'] for r in rows})} cases x {len({r['class_name'] for r in rows})} structures "
                      f"in {args.out} (mean Dice {sum(dice) / len(dice) if dice else float('nan'):.4f})")


def cmd_aggregate(args) -> None:
    from sslseg.config import report_spec
    from sslseg.report import aggregate

    spec = _json_arg(args.spec, "a report specification") if args.spec else report_spec(_config(args), args.bench)
    aggregate(spec, Path(args.results), Path(args.prepared))
    _done("aggregate", f"tables of {spec['name']} in {args.results} (summary.txt, table.md, tables.xlsx)")


def cmd_figures(args) -> None:
    from sslseg.config import report_spec
    from sslseg.figures import figures

    spec = _json_arg(args.spec, "a report specification") if args.spec else report_spec(_config(args), args.bench)
    paths = figures(spec, Path(args.results), Path(args.prepared), Path(args.out) if args.out else None)
    _done("figures", f"{len(paths)} figures of {spec['name']} in {paths[0].parent} "
          f"({', '.join(p.name for p in paths)})")


def _done(command: str, what: str) -> None:
    print(f"sslseg {command}: wrote {what}", flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sslseg", description="Semi-supervised medical image segmentation pipeline: "
                                "download -> preprocess -> train -> infer -> evaluate -> aggregate -> figures.")
    p.add_argument("--version", action="version", version=f"sslseg {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help_, bench=True):
        s = sub.add_parser(name, help=help_, description=help_)
        s.set_defaults(fn=fn)
        if bench:
            s.add_argument("--config", help="config file to read unspecified settings from (with --bench)")
            s.add_argument("--bench", help="benchmark name (a key of benchmarks: in the config)")
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
    s.add_argument("--spec", help="the run specification as JSON (or @file), as the workflow passes it")
    s.add_argument("--method")
    s.add_argument("--labels", type=int, help="label budget")
    s.add_argument("--seed", type=int)
    s.add_argument("--prepared", required=True)
    s.add_argument("--out", required=True, help="run folder (model.pt, train_log.csv, provenance.json)")
    s.add_argument("--init", help="model.pt of the benchmark's warm_start method (same budget and seed)")
    s.add_argument("--device", help="torch device (default: a free GPU if any, else cpu)")
    s.add_argument("--ckpt-every", dest="ckpt_every", type=int,
                   help="iterations between resume states (default: $SSLSEG_CKPT_EVERY or 200)")
    s = add("infer", cmd_infer, "predict a split into NIfTI files with the original geometry")
    s.add_argument("--model", required=True)
    s.add_argument("--prepared", required=True)
    s.add_argument("--out", required=True, help="prediction folder")
    s.add_argument("--split", default="test", choices=["val", "test"])
    s.add_argument("--protocol", help="evaluation protocol (its 2D resize rule and 3D window defaults)")
    s.add_argument("--overlap", type=float, help="3D window overlap")
    s.add_argument("--mode", choices=["gaussian", "constant"], help="3D window weighting")
    s.add_argument("--batch-size", dest="batch_size", type=int, help="windows or slices per forward pass")
    s.add_argument("--device", help="torch device (default: a free GPU if any, else cpu)")
    s = add("evaluate", cmd_evaluate, "per case x class Dice, Jaccard, HD95, ASD of a prediction folder")
    s.add_argument("--pred", required=True)
    s.add_argument("--prepared", required=True)
    s.add_argument("--out", required=True, help="metrics.csv")
    s.add_argument("--split", default="test", choices=["val", "test"])
    s.add_argument("--protocol", help="evaluation protocol (units, default empty policy)")
    s.add_argument("--empty-policy", dest="empty_policy",
                   choices=["penalty", "exclude", "zero", "duomod", "decseg"])
    s = add("aggregate", cmd_aggregate, "summaries, p-values, Excel and paper tables of a benchmark")
    s.add_argument("--spec", help="the report specification as JSON (or @file), as the workflow passes it")
    s.add_argument("--results", required=True, help="results/{bench}")
    s.add_argument("--prepared", required=True)
    s = add("figures", cmd_figures, "training curves, per-case, budget, per-class and overlay figures of a benchmark")
    s.add_argument("--spec", help="the report specification as JSON (or @file), as the workflow passes it")
    s.add_argument("--results", required=True, help="results/{bench}, with the outputs of `sslseg aggregate`")
    s.add_argument("--prepared", required=True)
    s.add_argument("--out", help="figure folder (default: results/{bench}/figures)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.fn(args)
    except TrainingInterrupted as e:
        print(f"sslseg {args.command}: interrupted: {e}", file=sys.stderr)
        return 143
    except SslsegError as e:
        print(f"sslseg {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk, a read-only or vanished folder: name the file, no traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"sslseg {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
