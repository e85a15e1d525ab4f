"""config.yaml: validation against the packaged JSON schema, defaults, and per-benchmark views."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import jsonschema
import yaml

from sslseg import SslsegError

__all__ = ["SCHEMA_PATH", "load_config", "benchmark", "config_hash"]

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"


def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


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


def validate(cfg: dict, source: str = "config") -> dict:
    """Validate ``cfg`` in place (defaults filled) and check names against the registries."""
    schema = _schema()
    try:
        jsonschema.validate(cfg, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise SslsegError(f"{source}: invalid value at {where}: {e.message}") from None
    _fill_defaults(cfg, schema, schema)
    from sslseg.data import DATASETS
    from sslseg.methods import METHODS, dims_error, method_params
    from sslseg.models import MODELS

    for name, b in cfg["benchmarks"].items():
        where = f"{source}: benchmarks/{name}"
        if b["dataset"] not in DATASETS:
            _bad(where, "dataset", b["dataset"], DATASETS.names())
        for m in b["methods"]:
            if m not in METHODS:
                _bad(where, "methods", m, METHODS.names())
            dims = DATASETS[b["dataset"]].dims
            if why := dims_error(m, dims):
                raise SslsegError(f"{where}/methods: {why}; dataset {b['dataset']!r} is {dims}D")
        if b["model"]["name"] not in MODELS:
            _bad(where, "model/name", b["model"]["name"], MODELS.names())
        if b["reference"] not in b["methods"]:
            raise SslsegError(f"{where}/reference: {b['reference']!r} is not one of its methods {b['methods']}")
        if len(b["model"]["channels"]) != len(b["model"]["dropout"]):
            raise SslsegError(f"{where}/model: channels and dropout have different lengths")
        if b["schedule"]["selection"] == "val" and b["schedule"]["val_every"] == 0:
            raise SslsegError(f"{where}/schedule: selection 'val' needs val_every > 0")
        ws = b.get("warm_start")
        if ws and ws["from"] not in b["methods"]:
            raise SslsegError(f"{where}/warm_start/from: {ws['from']!r} is not one of its methods {b['methods']}")
        for m, params in b["hparams"].items():
            if m not in METHODS:
                _bad(where, "hparams", m, METHODS.names())
            try:
                method_params(m, params)
            except SslsegError as e:
                raise SslsegError(f"{where}/hparams/{m}: {e}") from None
    for t in cfg["targets"]:
        if t not in cfg["benchmarks"]:
            raise SslsegError(f"{source}: targets: {t!r} is not a benchmark")
    return cfg


def _bad(where: str, key: str, value, known) -> None:
    raise SslsegError(f"{where}/{key}: unknown name {value!r} (known: {', '.join(known)})")


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SslsegError(f"{path}: config file is missing")
    try:
        cfg = yaml.safe_load(path.read_text())
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
    """Short stable hash of a JSON-able object (the resolved benchmark config)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
