"""config.yaml: inheritance, validation against the packaged JSON schema, defaults, and what each stage needs.

A run's identity is what its result depends on -- the prepared dataset, its networks, schedule, method and resolved
hyper-parameters, budget, seed, the warm-start run, validation -- and nothing else (``RunSpec``). The workflow
passes each stage exactly its part (``run_spec``, ``inference_args``, ``evaluation_args``, ``report_spec``), so
Snakemake reruns a job only when that part changed: a new seed or method adds runs and reruns nothing else,
inference settings rerun inference and evaluation, reporting settings only aggregation.

``extends: other`` makes a benchmark start from another's resolved definition: mappings merge key by key (a mapping
with another ``name`` -- a different model -- replaces the inherited one), lists and scalars replace.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import jsonschema
import yaml

from sslseg import SslsegError

__all__ = ["SCHEMA_PATH", "load_config", "validate", "benchmark", "config_hash", "RunSpec", "run_spec",
           "inference_args", "evaluation_args", "report_spec", "protocol_of", "workflow_view"]

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"


def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref")
    if ref:
        node = root
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node
    return schema


def _fill_defaults(obj, schema: dict, root: dict):
    schema = _resolve(schema, root)
    if not isinstance(obj, dict) or schema.get("type") != "object":
        return obj
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        if key not in obj and "default" in sub:
            obj[key] = copy.deepcopy(sub["default"])
        if key in obj:
            obj[key] = _fill_defaults(obj[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in obj:
            if key not in schema.get("properties", {}):
                obj[key] = _fill_defaults(obj[key], extra, root)
    return obj


def _merge(parent, child):
    if isinstance(parent, dict) and isinstance(child, dict):
        if "name" in parent and "name" in child and parent["name"] != child["name"]:
            return copy.deepcopy(child)
        out = copy.deepcopy(parent)
        for k, v in child.items():
            out[k] = _merge(parent[k], v) if k in parent else copy.deepcopy(v)
        return out
    return copy.deepcopy(child)


def _inherit(benches: dict, source: str) -> dict:
    """Every benchmark with its ``extends`` chain merged in (the key itself removed)."""
    done: dict[str, dict] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict:
        if name in done:
            return done[name]
        b = benches[name]
        parent = b.get("extends") if isinstance(b, dict) else None
        if parent is None:
            done[name] = b
            return b
        where = f"{source}: benchmarks/{name}/extends"
        if parent not in benches:
            raise SslsegError(f"{where}: unknown benchmark {parent!r} (config has: {', '.join(benches)})")
        if parent in chain:
            raise SslsegError(f"{where}: inheritance cycle {' -> '.join(chain + (parent,))}")
        own = {k: v for k, v in b.items() if k != "extends"}
        done[name] = _merge(resolve(parent, chain + (parent,)), own)
        return done[name]

    return {name: resolve(name, (name,)) for name in benches}


def validate(cfg: dict, source: str = "config") -> dict:
    """Validate ``cfg`` in place (inheritance resolved, defaults filled) and check names against the registries."""
    schema = _schema()
    if isinstance(cfg.get("benchmarks"), dict) and all(isinstance(b, dict) for b in cfg["benchmarks"].values()):
        cfg["benchmarks"] = _inherit(cfg["benchmarks"], source)
    try:
        jsonschema.validate(cfg, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise SslsegError(f"{source}: invalid value at {where}: {e.message}") from None
    _fill_defaults(cfg, schema, schema)
    for name, b in cfg["benchmarks"].items():
        _check_benchmark(b, f"{source}: benchmarks/{name}")
    for t in cfg["targets"]:
        if t not in cfg["benchmarks"]:
            raise SslsegError(f"{source}: targets: {t!r} is not a benchmark")
    if Path(source).is_file():  # relative local sources are relative to the config file, as a reader expects
        cfg["sources"] = {k: _relative_to(v, Path(source).parent) for k, v in cfg["sources"].items()}
    return cfg


def _relative_to(entry, base: Path):
    """A ``sources:`` entry with a relative local path taken from ``base`` (URLs and absolute paths as they are)."""
    if isinstance(entry, dict):
        return {**entry, "url": _relative_to(entry["url"], base)}
    if not entry or "://" in entry or os.path.isabs(entry):
        return entry
    return os.path.normpath(os.path.join(base, entry))


def _check_benchmark(b: dict, where: str) -> None:
    from sslseg.data import DATASETS
    from sslseg.methods import METHODS, dims_error, method_params
    from sslseg.models import MODELS, model_error, model_params
    from sslseg.protocols import PROTOCOLS

    if b["dataset"] not in DATASETS:
        _bad(where, "dataset", b["dataset"], DATASETS.names())
    dims = DATASETS[b["dataset"]].info.dims
    budgets = DATASETS[b["dataset"]].info.budgets
    if bad := [n for n in b["labels"] if n not in budgets]:
        raise SslsegError(f"{where}/labels: {b['dataset']} has no frozen labelled list for {bad} "
                          f"(budgets: {', '.join(map(str, budgets))})")
    for key, name in (("protocol", b["protocol"]), ("validation/protocol", b["validation"]["protocol"])):
        if name is not None and name not in PROTOCOLS:
            _bad(where, key, name, PROTOCOLS.names())
    for name, v in b["variants"].items():
        if name in METHODS:
            raise SslsegError(f"{where}/variants/{name}: a variant may not take a method's name")
        if v["method"] not in METHODS:
            _bad(f"{where}/variants/{name}", "method", v["method"], METHODS.names())
        try:
            method_params(v["method"], resolve_method(b, name)[1])
        except SslsegError as e:
            raise SslsegError(f"{where}/variants/{name}/hparams: {e}") from None
        for net in v.get("networks") or {}:
            if net not in METHODS[v["method"]].networks:
                _bad(f"{where}/variants/{name}/networks", "", net, list(METHODS[v["method"]].networks))
        if v.get("schedule"):
            _check_schedule(b, name, f"{where}/variants/{name}/schedule")
    for m in b["methods"]:
        if m not in METHODS and m not in b["variants"]:
            _bad(where, "methods", m, METHODS.names() + list(b["variants"]))
        if why := dims_error(resolve_method(b, m)[0], dims):
            raise SslsegError(f"{where}/methods: {why}; dataset {b['dataset']!r} is {dims}D")
    for m, params in b["hparams"].items():
        if m not in METHODS:
            _bad(where, "hparams", m, METHODS.names())
        try:
            method_params(m, params)
        except SslsegError as e:
            raise SslsegError(f"{where}/hparams/{m}: {e}") from None
    for m in b["schedules"]:
        if m not in METHODS:
            _bad(where, "schedules", m, METHODS.names())
        _check_schedule(b, m, f"{where}/schedules/{m}")
    for m, nets in b["networks"].items():
        if m not in METHODS:
            _bad(where, "networks", m, METHODS.names())
        for net in nets:
            if net not in METHODS[m].networks:
                _bad(f"{where}/networks/{m}", "", net, list(METHODS[m].networks))
    for m in b["methods"]:
        base = resolve_method(b, m)[0]
        for net, spec in _network_models(b, m).items():
            key = (f"variants/{m}/networks/{net}" if net in (b["variants"].get(m) or {}).get("networks", {}) else
                   f"networks/{base}/{net}" if net in b["networks"].get(base, {}) else "model")
            if spec["name"] not in MODELS:
                _bad(where, f"{key}/name", spec["name"], MODELS.names())
            try:
                model_params(spec)
            except SslsegError as e:
                raise SslsegError(f"{where}/{key}: {e}") from None
            if why := model_error(spec, dims):
                raise SslsegError(f"{where}/{key}: {why}; dataset {b['dataset']!r} is {dims}D")
            missing = [a for a in METHODS[base].model_requires
                       if not callable(getattr(MODELS[spec["name"]], a, None))]
            if missing:
                raise SslsegError(f"{where}/{key}: method {base!r} needs a network with {', '.join(missing)}; "
                                  f"model {spec['name']!r} has none")
    if b["reference"] not in b["methods"]:
        raise SslsegError(f"{where}/reference: {b['reference']!r} is not one of its methods {b['methods']}")
    if b["validation"]["selection"] == "val" and b["validation"]["every"] == 0:
        raise SslsegError(f"{where}/validation: selection 'val' needs every > 0")
    ws = b.get("warm_start")
    if ws and ws["from"] not in b["methods"]:
        raise SslsegError(f"{where}/warm_start/from: {ws['from']!r} is not one of its methods {b['methods']}")
    for m in (ws or {}).get("except", []):
        if m not in b["methods"]:
            raise SslsegError(f"{where}/warm_start/except: {m!r} is not one of its methods {b['methods']}")


def _check_schedule(b: dict, name: str, where: str) -> None:
    """The schedule of method or variant ``name`` (``method_schedule``) must be a schedule."""
    try:
        jsonschema.validate(method_schedule(b, name), _schema()["$defs"]["benchmark"]["properties"]["schedule"])
    except jsonschema.ValidationError as e:
        key = "/".join(str(p) for p in e.absolute_path)
        raise SslsegError(f"{where}{'/' + key if key else ''}: {e.message}") from None


def method_schedule(b: dict, name: str) -> dict:
    """The schedule of ``name``, a method or a variant of ``b``: ``schedule``, updated by the method's ``schedules``
    entry, then by the variant's ``schedule``."""
    v = b["variants"].get(name) or {}
    return {**b["schedule"], **b["schedules"].get(v.get("method", name), {}), **(v.get("schedule") or {})}


def resolve_method(b: dict, name: str) -> tuple[str, dict, dict]:
    """(registered method, hparams overrides, network overrides) of ``name``, a method or a variant of ``b``."""
    v = b["variants"].get(name)
    if v is None:
        return name, dict(b["hparams"].get(name, {})), dict(b["networks"].get(name, {}))
    base = v["method"]
    return (base, {**b["hparams"].get(base, {}), **(v.get("hparams") or {})},
            {**b["networks"].get(base, {}), **(v.get("networks") or {})})


def _network_models(b: dict, name: str) -> dict[str, dict]:
    """Architecture of each network of method (or variant) ``name`` in benchmark ``b``: the benchmark's (or the
    variant's) override, else the method's own default, else the benchmark's ``model``. A method default without
    a ``name`` amends the architecture it would otherwise get (SSCD: the benchmark's UNet with deep-supervision
    heads)."""
    from sslseg.methods import METHODS

    method, _, over = resolve_method(b, name)
    out = {}
    for net, decl in METHODS[method].networks.items():
        own = decl.model or {}
        if "name" in own:
            out[net] = dict(over.get(net) or own)
        else:
            out[net] = {**(over.get(net) or b["model"]), **own}
    return out


def _bad(where: str, key: str, value, known) -> None:
    where = f"{where}/{key}" if key else where
    raise SslsegError(f"{where}: unknown name {value!r} (known: {', '.join(known)})")


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SslsegError(f"{path}: config file is missing")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SslsegError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise SslsegError(f"{path}: expected a mapping at the top level")
    return validate(cfg, str(path))


def benchmark(cfg: dict, name: str) -> dict:
    try:
        return cfg["benchmarks"][name]
    except KeyError:
        raise SslsegError(f"unknown benchmark {name!r} (config has: {', '.join(cfg['benchmarks'])})") from None


def config_hash(obj) -> str:
    """Short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunSpec:
    """Everything one training run depends on (plus the benchmark's and the variant's names, which it does not)."""

    bench: str
    dataset: dict  # {"name", "format"}: the prepared data (their content reaches a run through the workflow's files)
    method: str
    hparams: dict  # the method's resolved Params
    networks: dict  # network name -> resolved model spec
    schedule: dict
    validation: dict  # every, selection, protocol, overlap, mode, batch_size
    budget: int
    seed: int
    warm_start: dict | None  # {"from": method, "run": its identity hash}
    name: str = ""  # the run's method label in its benchmark: a variant's name, else the method (not identity)

    @property
    def label(self) -> str:
        return self.name or self.method

    def identity(self) -> dict:
        d = asdict(self)
        del d["bench"], d["name"]
        return d

    @property
    def hash(self) -> str:
        return config_hash(self.identity())

    def to_json(self) -> str:
        d = asdict(self)
        if not d["name"]:
            del d["name"]  # a plain method: the JSON (a Snakemake param) stays what it was before variants
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "RunSpec":
        try:
            spec = cls(**json.loads(text))
        except (ValueError, TypeError) as e:
            raise SslsegError(f"not a run specification ({e})") from None
        if not isinstance(spec.seed, int) or not 0 <= spec.seed < 2**32:
            raise SslsegError(f"run specification: seed must be an integer in [0, 2^32), got {spec.seed!r}")
        return spec


def protocol_of(b: dict, key: str = "protocol"):
    from sslseg.protocols import PROTOCOLS

    return PROTOCOLS[b[key]]


def run_spec(cfg: dict, bench: str, method: str, budget: int, seed: int) -> RunSpec:
    """The identity of run ``bench/method/l{budget}/seed{seed}`` in a validated config."""
    from sslseg.io import FORMAT
    from sslseg.methods import method_params
    from sslseg.models import model_spec
    from sslseg.params import params_dict

    b = benchmark(cfg, bench)
    if method not in b["methods"]:
        raise SslsegError(f"benchmark {bench!r} has no method {method!r} (methods: {', '.join(b['methods'])})")
    base, hparams, _ = resolve_method(b, method)
    sched = method_schedule(b, method)
    ws = b.get("warm_start") or {}
    warm = None
    if ws.get("from") not in (None, method) and method not in ws.get("except", []):
        sched["iterations"] = ws.get("iterations") or sched["iterations"]
        warm = {"from": ws["from"], "run": run_spec(cfg, bench, ws["from"], budget, seed).hash}
    val = dict(b["validation"])
    val["protocol"] = val["protocol"] or b["protocol"]
    proto = protocol_of(val)
    val["overlap"] = proto.overlap if val["overlap"] is None else val["overlap"]
    val["mode"] = val["mode"] or proto.mode
    return RunSpec(
        bench=bench, dataset={"name": b["dataset"], "format": FORMAT}, method=base,
        hparams=params_dict(method_params(base, hparams)),
        networks={n: model_spec(s) for n, s in _network_models(b, method).items()},
        schedule=sched, validation=val, budget=int(budget), seed=int(seed), warm_start=warm,
        name=method if method != base else "")


def inference_args(cfg: dict, bench: str) -> dict:
    """What ``sslseg infer`` needs besides the model: protocol and window settings (protocol defaults filled)."""
    b = benchmark(cfg, bench)
    proto, inf = protocol_of(b), b["inference"]
    return {"protocol": proto.name, "overlap": proto.overlap if inf["overlap"] is None else inf["overlap"],
            "mode": inf["mode"] or proto.mode, "batch_size": inf["batch_size"]}


def evaluation_args(cfg: dict, bench: str) -> dict:
    b = benchmark(cfg, bench)
    proto = protocol_of(b)
    return {"protocol": proto.name, "empty_policy": b["empty_policy"] or proto.empty_policy}


def report_spec(cfg: dict, bench: str) -> dict:
    """What ``sslseg aggregate`` needs: the runs to read and how to present them."""
    b = benchmark(cfg, bench)
    return {"name": bench, "dataset": b["dataset"], "methods": b["methods"], "labels": b["labels"],
            "seeds": b["seeds"], "reference": b["reference"], "selection": b["validation"]["selection"],
            **evaluation_args(cfg, bench)}


def _package_digest() -> str:
    """Hash of every file of the installed package: the registries (names, declarations, parameter checks) and
    everything else a view is derived from."""
    h = hashlib.sha256()
    root = Path(__file__).parent
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _view(cfg: dict, source: str) -> dict:
    """What the workflow passes to its stages, derived from a config (validated here, in place)."""
    from sslseg.data import DATASETS
    from sslseg.figures import captions
    from sslseg.io import FORMAT
    from sslseg.methods import METHODS

    validate(cfg, source)
    benches = {}
    for name, b in cfg["benchmarks"].items():
        spec = report_spec(cfg, name)
        benches[name] = {"infer": inference_args(cfg, name), "evaluate": evaluation_args(cfg, name),
                         "report": spec, "captions": captions(spec),
                         "runs": {f"{m}/l{n}/seed{s}": run_spec(cfg, name, m, n, s).to_json()
                                  for m in b["methods"] for n in b["labels"] for s in b["seeds"]}}
    return {"config": cfg, "methods": METHODS.names(), "datasets": DATASETS.names(), "format": FORMAT,
            "benchmarks": benches}


def workflow_view(cfg: dict, source: str, cache: Path | None = None) -> dict:
    """The validated config (``config``, defaults filled), the registered ``methods`` and ``datasets``, the
    prepared-data ``format`` and, per benchmark, every stage's arguments: ``runs`` (run path
    ``{method}/l{budget}/seed{seed}`` -> RunSpec JSON), ``infer``, ``evaluate``, ``report`` and the figure
    ``captions``.

    Deriving it imports the registries (torch, with the methods and models) and resolves every run; ``cache`` (a
    folder: the workflow's ``.snakemake/sslseg``) keeps the result under a hash of the config, its source and the
    package's files, so that a workflow whose config and package did not change builds its DAG from the stored
    view without importing either. Only valid configs are stored: an invalid one is checked (and reported) every
    time. ``cfg`` is not modified.
    """
    given = json.dumps({"config": cfg, "source": source}, sort_keys=True, default=repr)
    path = None
    if cache is not None:
        path = Path(cache) / f"{config_hash({'c': given, 'p': _package_digest()})}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # none yet (or unreadable): derive it
    text = json.dumps(_view(copy.deepcopy(cfg), source), sort_keys=True)
    if path is not None:
        from sslseg.io import atomic_path

        try:
            with atomic_path(path) as tmp:
                tmp.write_text(text, encoding="utf-8")
            for old in sorted(path.parent.glob("*.json"), key=lambda p: p.stat().st_mtime)[:-8]:
                old.unlink(missing_ok=True)  # keep the 8 newest views
        except OSError:
            pass  # a read-only or full working directory: the view is derived again next time
    return json.loads(text)  # as a stored view reads back
