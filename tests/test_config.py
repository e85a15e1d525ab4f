"""sslseg.config: the repository config, defaults, and error messages that name the offending key."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from sslseg import SslsegError
from sslseg.config import (RunSpec, benchmark, config_hash, evaluation_args, inference_args, load_config, run_spec,
                           validate)
from sslseg.methods import METHODS, method_params

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"

BASE = {
    "targets": ["b"],
    "benchmarks": {
        "b": {"dataset": "synth2d", "methods": ["supervised", "mean_teacher"], "labels": [1], "seeds": [0]},
    },
}


def write(tmp_path, cfg) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return path


def edit(**bench) -> dict:
    import copy

    cfg = copy.deepcopy(BASE)
    cfg["benchmarks"]["b"].update(bench)
    return cfg


def error(tmp_path, cfg) -> str:
    path = write(tmp_path, cfg)
    with pytest.raises(SslsegError) as e:
        load_config(path)
    msg = str(e.value)
    assert msg.startswith(str(path)), msg
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- valid configs

def test_repository_config_is_valid_and_filled():
    cfg = load_config(REPO_CONFIG)
    assert cfg["targets"] == ["synth2d", "synth3d"]
    s2, s3 = benchmark(cfg, "synth2d"), benchmark(cfg, "synth3d")
    assert s2["protocol"] == "strict" and s3["protocol"] == "strict"
    assert s2["empty_policy"] is None  # the protocol's (strict: penalty)
    assert s2["reference"] == "supervised"
    assert s2["hparams"] == {}
    raw = yaml.safe_load(REPO_CONFIG.read_text())
    # relative local sources are taken from the config file's folder
    assert cfg["sources"] == {k: os.path.normpath(REPO_CONFIG.parent / v) for k, v in raw.get("sources", {}).items()}
    # defaults fill what the file leaves out, and keep what it sets
    assert s2["schedule"]["iterations"] == raw["benchmarks"]["synth2d"]["schedule"]["iterations"]
    assert s2["schedule"]["patch"] == [64, 64]
    assert s2["schedule"]["lr"] == 0.01 and s2["validation"]["selection"] == "val"
    assert s2["schedule"]["fg_oversample"] == 0.0
    assert s2["inference"] == {"overlap": None, "mode": None, "batch_size": 4}  # None: the protocol's
    assert s3["inference"]["batch_size"] == 2 and s3["validation"]["batch_size"] == 2
    # inheritance: the -ssl benchmarks are their base with other methods
    s2ssl = benchmark(cfg, "synth2d-ssl")
    assert s2ssl["methods"][-1] == "bcp" and {k: v for k, v in s2ssl.items() if k != "methods"} == \
        {k: v for k, v in s2.items() if k != "methods"}
    assert s2["model"]["name"] == "unet" and s2["model"]["channels"] == [8, 16, 32, 64]
    for b in (s2, s3):
        assert set(b["methods"]) <= set(METHODS.names())


def test_minimal_config_gets_all_defaults(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    b = cfg["benchmarks"]["b"]
    assert b["protocol"] == "strict" and b["empty_policy"] is None and b["reference"] == "supervised"
    assert b["model"] == {"name": "unet"}
    spec = run_spec(cfg, "b", "mean_teacher", 1, 0)
    assert spec.networks["student"] == {"name": "unet", "channels": [16, 32, 64, 128, 256],
                                        "dropout": [0.05, 0.1, 0.2, 0.3, 0.5], "deep_supervision": False,
                                        "upsample": "bilinear"}
    assert b["schedule"]["iterations"] == 30000 and b["schedule"]["batch_labelled"] == 12
    assert b["validation"]["every"] == 200
    assert inference_args(cfg, "b") == {"protocol": "strict", "overlap": 0.5, "mode": "gaussian", "batch_size": 4}
    assert evaluation_args(cfg, "b") == {"protocol": "strict", "empty_policy": "penalty"}


def test_config_hash_is_stable_and_sensitive(tmp_path):
    a = load_config(write(tmp_path, BASE))["benchmarks"]["b"]
    b = load_config(write(tmp_path, BASE))["benchmarks"]["b"]
    assert config_hash(a) == config_hash(b) and len(config_hash(a)) == 16
    b["seeds"] = [1]
    assert config_hash(a) != config_hash(b)


def test_targets_may_be_omitted(tmp_path):
    cfg = dict(BASE)
    del cfg["targets"]
    load_config(write(tmp_path, cfg))


# ---------------------------------------------------------------- errors naming the offending key

def test_unknown_top_level_key(tmp_path):
    msg = error(tmp_path, {**BASE, "benchmark": {}})
    assert "'benchmark'" in msg and "(top level)" in msg


def test_unknown_benchmark_key(tmp_path):
    msg = error(tmp_path, edit(seed=[0]))
    assert "benchmarks/b" in msg and "'seed'" in msg


def test_unknown_schedule_key(tmp_path):
    msg = error(tmp_path, edit(schedule={"iters": 10}))
    assert "benchmarks/b/schedule" in msg and "'iters'" in msg


def test_wrong_type(tmp_path):
    msg = error(tmp_path, edit(labels="three"))
    assert "benchmarks/b/labels" in msg and "'three'" in msg


@pytest.mark.parametrize("bench,where", [
    (dict(labels=[0]), "benchmarks/b/labels/0"),
    (dict(seeds=[0, 0]), "benchmarks/b/seeds"),

    (dict(empty_policy="skip"), "benchmarks/b/empty_policy"),
    (dict(inference={"overlap": 1.0}), "benchmarks/b/inference/overlap"),
    (dict(schedule={"patch": [64, 4]}), "benchmarks/b/schedule/patch/1"),
    (dict(methods=[]), "benchmarks/b/methods"),
])
def test_schema_violations_name_the_path(tmp_path, bench, where):
    assert f"invalid value at {where}:" in error(tmp_path, edit(**bench))


def test_missing_required_key(tmp_path):
    cfg = edit()
    del cfg["benchmarks"]["b"]["seeds"]
    msg = error(tmp_path, cfg)
    assert "benchmarks/b" in msg and "'seeds'" in msg


def test_unknown_dataset(tmp_path):
    msg = error(tmp_path, edit(dataset="acdc_typo"))
    assert "benchmarks/b/dataset" in msg and "'acdc_typo'" in msg and "synth2d" in msg


def test_unknown_method(tmp_path):
    msg = error(tmp_path, edit(methods=["supervised", "sscd_typo"]))
    assert "benchmarks/b/methods" in msg and "'sscd_typo'" in msg and "mean_teacher" in msg


def test_method_of_another_dimensionality(tmp_path):
    cfg = edit(dataset="synth3d", methods=["supervised", "unimatch"], labels=[2])
    msg = error(tmp_path, cfg)
    assert "benchmarks/b/methods" in msg and "'unimatch' is defined for 2D" in msg and "3D" in msg


def test_warm_start_from_a_method_of_the_benchmark(tmp_path):
    msg = error(tmp_path, edit(warm_start={"from": "cps"}))
    assert "benchmarks/b/warm_start/from" in msg and "'cps'" in msg


def test_unknown_model(tmp_path):
    msg = error(tmp_path, edit(model={"name": "resnet"}))
    assert "benchmarks/b/model/name" in msg and "'resnet'" in msg and "vnet" in msg


def test_unknown_protocol(tmp_path):
    msg = error(tmp_path, edit(protocol="lenient"))
    assert "benchmarks/b/protocol" in msg and "'lenient'" in msg and "ssl4mis-2d" in msg


@pytest.mark.parametrize("model, needle", [
    ({"name": "unet", "chanels": [8, 16]}, "'chanels'"),
    ({"name": "unet", "channels": "wide"}, "'channels'"),
    ({"name": "unet", "deep_supervision": "yes"}, "true or false"),
    ({"name": "vnet", "normalization": "layernorm"}, "'normalization'"),
    ({"name": "vnet"}, "3D"),  # synth2d is 2D
])
def test_model_parameters_are_validated_per_model(tmp_path, model, needle):
    msg = error(tmp_path, edit(model=model))
    assert "benchmarks/b/model" in msg and needle in msg


def test_per_method_network_override(tmp_path):
    cfg = load_config(write(tmp_path, edit(methods=["supervised", "cps"], networks={
        "cps": {"second": {"name": "unet", "channels": [4, 8], "dropout": [0, 0]}}})))
    spec = run_spec(cfg, "b", "cps", 1, 0)
    assert spec.networks["student"]["channels"] == [16, 32, 64, 128, 256]
    assert spec.networks["second"]["channels"] == [4, 8]
    msg = error(tmp_path, edit(methods=["supervised", "cps"], networks={"cps": {"third": {"name": "unet"}}}))
    assert "benchmarks/b/networks/cps" in msg and "'third'" in msg and "second" in msg
    msg = error(tmp_path, edit(methods=["supervised", "cps"], networks={"cps": {"second": {"name": "unet",
                                                                                           "width": 3}}}))
    assert "benchmarks/b/networks/cps/second" in msg and "'width'" in msg


def test_method_needing_features_rejects_a_model_without_them(tmp_path, monkeypatch):
    from sslseg.models import MODELS

    monkeypatch.delattr(MODELS["unet"], "encode")
    msg = error(tmp_path, edit(methods=["supervised", "unimatch"]))
    assert "benchmarks/b/model" in msg and "encode" in msg


def test_reference_not_in_methods(tmp_path):
    msg = error(tmp_path, edit(methods=["mean_teacher"]))  # reference defaults to supervised
    assert "benchmarks/b/reference" in msg and "'supervised'" in msg
    msg = error(tmp_path, edit(reference="mean_teacher", methods=["supervised"]))
    assert "benchmarks/b/reference" in msg and "'mean_teacher'" in msg


def test_channels_dropout_length_mismatch(tmp_path):
    msg = error(tmp_path, edit(model={"channels": [8, 16]}))
    assert "benchmarks/b/model" in msg and "dropout" in msg


def test_val_selection_needs_validation(tmp_path):
    msg = error(tmp_path, edit(validation={"every": 0}))
    assert "benchmarks/b/validation" in msg and "every" in msg
    load_config(write(tmp_path, edit(validation={"every": 0, "selection": "last"})))


def test_unknown_hparams_key(tmp_path):
    msg = error(tmp_path, edit(hparams={"mean_teacher": {"ema_decay": 0.9, "ema_decy": 0.5}}))
    assert "benchmarks/b/hparams/mean_teacher" in msg and "'ema_decy'" in msg
    assert "ema_decay" in msg  # the known names are listed


def test_hparams_for_unknown_method_and_wrong_type(tmp_path):
    msg = error(tmp_path, edit(hparams={"nosuch_method": {}}))
    assert "benchmarks/b/hparams" in msg and "'nosuch_method'" in msg
    msg = error(tmp_path, edit(hparams={"mean_teacher": {"consistency": "high"}}))
    assert "benchmarks/b/hparams/mean_teacher" in msg and "'consistency'" in msg


def test_hparams_are_kept(tmp_path):
    cfg = load_config(write(tmp_path, edit(hparams={"mean_teacher": {"ema_decay": 0.9}})))
    assert cfg["benchmarks"]["b"]["hparams"] == {"mean_teacher": {"ema_decay": 0.9}}


def test_unknown_target(tmp_path):
    msg = error(tmp_path, {**BASE, "targets": ["b", "c"]})
    assert "targets" in msg and "'c'" in msg


def test_bad_benchmark_name(tmp_path):
    cfg = {"targets": [], "benchmarks": {"bad name": BASE["benchmarks"]["b"]}}
    assert "bad name" in error(tmp_path, cfg)


@pytest.mark.parametrize("text", ["benchmarks: [unclosed\n", "benchmarks:\n  b: {dataset: synth2d\n", "a: b: c\n"])
def test_bad_yaml(tmp_path, text):
    assert "not valid YAML" in error(tmp_path, text)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_top_level_not_a_mapping(tmp_path, text):
    assert "mapping" in error(tmp_path, text)


def test_missing_config_file(tmp_path):
    with pytest.raises(SslsegError, match="missing") as e:
        load_config(tmp_path / "none.yaml")
    assert "none.yaml" in str(e.value)


def test_unknown_benchmark_lookup():
    cfg = load_config(REPO_CONFIG)
    with pytest.raises(SslsegError, match="'synth4d'") as e:
        benchmark(cfg, "synth4d")
    assert "synth2d" in str(e.value)


# ---------------------------------------------------------------- method registry

def test_method_registry_names():
    names = METHODS.names()
    assert "supervised" in names and "mean_teacher" in names
    assert names == sorted(names)
    assert "supervised" in METHODS and "nosuch" not in METHODS
    with pytest.raises(SslsegError, match="unknown method 'nosuch'"):
        METHODS["nosuch"]


def test_method_params_applies_overrides():
    default = method_params("mean_teacher")
    p = method_params("mean_teacher", {"ema_decay": 0.9, "consistency": 2})
    assert p.ema_decay == 0.9 and p.consistency == 2
    for f in dataclasses.fields(p):
        if f.name not in ("ema_decay", "consistency"):
            assert getattr(p, f.name) == getattr(default, f.name)
    assert default.ema_decay == 0.99 and default.consistency == 0.1
    assert method_params("mean_teacher", None) == default
    assert method_params("supervised", {}) == method_params("supervised")
    with pytest.raises(SslsegError, match="'ema_decy'"):
        method_params("mean_teacher", {"ema_decy": 0.9})
    with pytest.raises(SslsegError, match="must be a number"):
        method_params("mean_teacher", {"noise_std": "0.1"})
    with pytest.raises(SslsegError, match="none"):
        method_params("supervised", {"lr": 0.1})


# ---------------------------------------------------------------- inheritance and run identity

def test_extends_merges_mappings_and_replaces_lists(tmp_path):
    cfg = edit(schedule={"iterations": 100, "lr": 0.02}, hparams={"bcp": {"pretrain": 0.1}},
               model={"name": "unet", "channels": [8, 16], "dropout": [0, 0]})
    cfg["benchmarks"]["c"] = {"extends": "b", "seeds": [3], "schedule": {"lr": 0.05},
                              "hparams": {"mean_teacher": {"ema_decay": 0.9}}}
    cfg["benchmarks"]["d"] = {"extends": "c", "model": {"name": "unet", "channels": [4, 8]}}
    cfg["benchmarks"]["e"] = {"extends": "c", "dataset": "synth3d", "labels": [2], "model": {"name": "vnet"}}
    got = load_config(write(tmp_path, cfg))["benchmarks"]
    c, d, e = got["c"], got["d"], got["e"]
    assert c["seeds"] == [3] and c["methods"] == ["supervised", "mean_teacher"] and "extends" not in c
    assert c["schedule"]["iterations"] == 100 and c["schedule"]["lr"] == 0.05
    assert c["hparams"] == {"bcp": {"pretrain": 0.1}, "mean_teacher": {"ema_decay": 0.9}}
    assert d["model"] == {"name": "unet", "channels": [4, 8], "dropout": [0, 0]} and d["seeds"] == [3]
    assert e["model"] == {"name": "vnet"}  # another model replaces the inherited mapping


@pytest.mark.parametrize("benches, needle", [
    ({"c": {"extends": "nosuch"}}, "benchmarks/c/extends: unknown benchmark 'nosuch'"),
    ({"c": {"extends": "d"}, "d": {"extends": "c"}}, "inheritance cycle"),
])
def test_bad_extends(tmp_path, benches, needle):
    cfg = edit()
    cfg["benchmarks"].update(benches)
    assert needle in error(tmp_path, cfg)


def test_run_identity_holds_only_what_the_run_depends_on(tmp_path):
    base = edit(methods=["supervised", "mean_teacher", "cps"], labels=[1, 2], seeds=[0, 1])
    a = load_config(write(tmp_path, base))
    ids = {(m, n, s): run_spec(a, "b", m, n, s).hash for m in ("supervised", "mean_teacher") for n in (1, 2)
           for s in (0, 1)}
    assert len(set(ids.values())) == len(ids)  # every run its own identity
    same = [
        dict(seeds=[0, 1, 2]), dict(labels=[1, 2, 4]), dict(methods=["supervised", "mean_teacher", "cps", "uamt"]),
        dict(hparams={"cps": {"consistency": 1.0}}), dict(inference={"batch_size": 1, "overlap": 0.25}),
        dict(empty_policy="exclude"), dict(reference="cps"),
        dict(protocol="ssl4mis-2d", validation={"protocol": "strict"}),  # validation pinned: only tests change
        dict(networks={"cps": {"second": {"name": "unet", "channels": [4, 8], "dropout": [0, 0]}}}),
    ]
    for change in same:
        b = load_config(write(tmp_path, edit(**{**base["benchmarks"]["b"], **change})))
        assert all(run_spec(b, "b", m, n, s).hash == h for (m, n, s), h in ids.items()), change
    differ = [
        (dict(hparams={"mean_teacher": {"consistency": 1.0}}), {"mean_teacher"}),
        (dict(schedule={"iterations": 10}), {"supervised", "mean_teacher"}),
        (dict(validation={"every": 50}), {"supervised", "mean_teacher"}),
        (dict(model={"name": "unet", "channels": [8, 16], "dropout": [0, 0]}), {"supervised", "mean_teacher"}),
        (dict(protocol="ssl4mis-2d"), {"supervised", "mean_teacher"}),  # validation predicts as its protocol
        (dict(warm_start={"from": "supervised"}), {"mean_teacher"}),
    ]
    for change, changed in differ:
        b = load_config(write(tmp_path, edit(**{**base["benchmarks"]["b"], **change})))
        moved = {m for (m, n, s), h in ids.items() if run_spec(b, "b", m, n, s).hash != h}
        assert moved == changed, change


def test_warm_started_identity_follows_its_source(tmp_path):
    cfg = edit(warm_start={"from": "supervised", "iterations": 5})
    a = load_config(write(tmp_path, cfg))
    mt = run_spec(a, "b", "mean_teacher", 1, 0)
    assert mt.schedule["iterations"] == 5 and mt.warm_start == {"from": "supervised",
                                                                 "run": run_spec(a, "b", "supervised", 1, 0).hash}
    cfg["benchmarks"]["b"]["schedule"] = {"lr": 0.02}
    b = load_config(write(tmp_path, cfg))
    assert run_spec(b, "b", "mean_teacher", 1, 0).warm_start["run"] != mt.warm_start["run"]


def test_run_spec_round_trips_and_refuses_foreign_methods(tmp_path):
    from sslseg.config import RunSpec

    cfg = load_config(write(tmp_path, BASE))
    spec = run_spec(cfg, "b", "mean_teacher", 1, 0)
    assert RunSpec.from_json(spec.to_json()) == spec
    with pytest.raises(SslsegError, match="no method 'cps'"):
        run_spec(cfg, "b", "cps", 1, 0)


def test_variants_are_methods_with_their_own_hparams(tiny, tmp_path):
    b = dict(tiny["synth2d"], methods=["supervised", "unimatch", "aigcmatch", "aig-rr", "aig-ar"],
             hparams={"aigcmatch": {"p_fp_max": 0.8}},
             variants={"aig-rr": {"method": "aigcmatch", "hparams": {"cutmix": "random", "fp": "random"}},
                       "aig-ar": {"method": "aigcmatch", "hparams": {"fp": "random"}}})
    cfg = validate({"benchmarks": {"t": b}})
    rr, base = run_spec(cfg, "t", "aig-rr", 1, 0), run_spec(cfg, "t", "aigcmatch", 1, 0)
    assert (rr.method, rr.label, base.label) == ("aigcmatch", "aig-rr", "aigcmatch")
    # the benchmark's hparams of the method, updated by the variant's
    assert rr.hparams["cutmix"] == rr.hparams["fp"] == "random" and rr.hparams["p_fp_max"] == 0.8
    assert run_spec(cfg, "t", "aig-ar", 1, 0).hparams["cutmix"] == "attention"
    # the variant's name is a label, not part of what the run depends on: the same settings, the same identity
    same = dict(b, methods=["supervised", "aigcmatch", "aig-rr"], variants={"aig-rr": {"method": "aigcmatch"}})
    assert run_spec(validate({"benchmarks": {"t": same}}), "t", "aig-rr", 1, 0).hash == base.hash
    assert "name" not in json.loads(base.to_json()) and RunSpec.from_json(rr.to_json()) == rr
    # adding variants changes no other run
    plain = validate({"benchmarks": {"t": dict(tiny["synth2d"], methods=["supervised", "unimatch"])}})
    assert run_spec(plain, "t", "unimatch", 1, 0).hash == run_spec(cfg, "t", "unimatch", 1, 0).hash


def test_a_variant_changes_its_method_schedule_but_not_the_warm_start_iterations(tiny):
    b = dict(tiny["synth2d"], methods=["supervised", "bcp", "bcp-slow", "bcp-short"],
             schedules={"bcp": {"lr": 0.02, "batch_labelled": 4}},
             variants={"bcp-slow": {"method": "bcp", "schedule": {"lr": 0.01}},
                       "bcp-short": {"method": "bcp", "schedule": {"iterations": 2}}})
    cfg = validate({"benchmarks": {"t": b}})
    bcp, slow = run_spec(cfg, "t", "bcp", 1, 0), run_spec(cfg, "t", "bcp-slow", 1, 0)
    # schedule, then the method's schedules entry, then the variant's
    assert (bcp.schedule["lr"], slow.schedule["lr"], slow.schedule["batch_labelled"]) == (0.02, 0.01, 4)
    assert slow.hash != bcp.hash and run_spec(cfg, "t", "supervised", 1, 0).schedule["lr"] == b["schedule"]["lr"]
    assert run_spec(cfg, "t", "bcp-short", 1, 0).schedule["iterations"] == 2
    warm = validate({"benchmarks": {"t": dict(b, warm_start={"from": "supervised", "iterations": 3})}})
    assert run_spec(warm, "t", "bcp-short", 1, 0).schedule["iterations"] == 3
    assert run_spec(warm, "t", "bcp-slow", 1, 0).schedule["lr"] == 0.01
    # a variant of the warm start's own method is its control: it continues that model, as the SSL methods do
    ctl = dict(b, methods=b["methods"] + ["supervised-lr01"], warm_start={"from": "supervised", "iterations": 3},
               variants=dict(b["variants"], **{"supervised-lr01": {"method": "supervised", "schedule": {"lr": 0.01}}}))
    cfg = validate({"benchmarks": {"t": ctl}})
    sup, c = run_spec(cfg, "t", "supervised", 1, 0), run_spec(cfg, "t", "supervised-lr01", 1, 0)
    assert sup.warm_start is None and c.warm_start == {"from": "supervised", "run": sup.hash}
    assert (c.method, c.schedule["lr"], c.schedule["iterations"]) == ("supervised", 0.01, 3)


@pytest.mark.parametrize("variants, needle", [
    ({"unimatch": {"method": "aigcmatch"}}, "variants/unimatch: a variant may not take a method's name"),
    ({"v": {"method": "aigcmach"}}, "variants/v/method: unknown name 'aigcmach'"),
    ({"v": {"method": "aigcmatch", "hparams": {"fp": "dropout"}}}, "variants/v/hparams: parameter 'fp'"),
    ({"v": {"method": "aigcmatch", "networks": {"teacher": {"name": "unet"}}}}, "variants/v/networks: unknown"),
    ({"v": {"method": "aigcmatch", "schedule": {"lr": -1}}}, "variants/v/schedule/lr: -1 is less than"),
])
def test_bad_variants_name_the_key(tiny, variants, needle):
    b = dict(tiny["synth2d"], methods=["supervised", "unimatch"] + [v for v in variants if v != "unimatch"],
             variants=variants)
    with pytest.raises(SslsegError, match=needle):
        validate({"benchmarks": {"t": b}})


def test_warm_start_except_trains_from_scratch(tiny):
    b = dict(tiny["synth2d"], methods=["supervised", "mean_teacher", "egm_dt"],
             warm_start={"from": "supervised", "iterations": 3, "except": ["egm_dt"]})
    cfg = validate({"benchmarks": {"t": b}})
    mt, egm = run_spec(cfg, "t", "mean_teacher", 1, 0), run_spec(cfg, "t", "egm_dt", 1, 0)
    assert mt.warm_start is not None and mt.schedule["iterations"] == 3
    assert egm.warm_start is None and egm.schedule["iterations"] == b["schedule"]["iterations"]
    with pytest.raises(SslsegError, match="warm_start/except: 'cps' is not one of its methods"):
        validate({"benchmarks": {"t": dict(b, warm_start=dict(b["warm_start"], **{"except": ["cps"]}))}})


@pytest.mark.parametrize("method, hp, needle", [
    ("mean_teacher", {"ema_decay": 5.0}, "'ema_decay' of method 'mean_teacher' must be in [0, 1], got 5.0"),
    ("mean_teacher", {"consistency": -3}, "'consistency' of method 'mean_teacher' must be in [0, inf], got -3"),
    ("uamt", {"passes": 0}, "'passes' of method 'uamt' must be in [1, inf], got 0"),
    ("unimatch", {"p_fp": 1.5}, "'p_fp' of method 'unimatch' must be in [0, 1], got 1.5"),
    ("fixmatch", {"threshold": 2}, "'threshold' of method 'fixmatch' must be in [0, 1], got 2"),
    ("bcp", {"u_weight": -0.5}, "'u_weight' of method 'bcp' must be in [0, inf], got -0.5"),
    ("aigcmatch", {"p_fp_max": 1.5}, "method 'aigcmatch': p_fp_max must be in (0, 1)"),
    ("egm_dt", {"static_step": -0.1}, "'static_step' of method 'egm_dt' must be in [0, 1], got -0.1"),
    ("sscd", {"p_kl": 2.0}, "'p_kl' of method 'sscd' must be in [0, 1], got 2.0"),
    ("sscd", {"ema_decay": 1.5}, "'ema_decay' of method 'sscd' must be in [0, 1], got 1.5"),
])
def test_hyper_parameters_out_of_range_name_the_range(tiny, method, hp, needle):
    b = dict(tiny["synth2d"], methods=["supervised", method], hparams={method: hp})
    with pytest.raises(SslsegError, match=re.escape(f"benchmarks/t/hparams/{method}") + ".*" + re.escape(needle)):
        validate({"benchmarks": {"t": b}})


def test_workflow_view_is_derived_once_and_read_back_without_torch(tmp_path):
    """The view the Snakefile builds its DAG from: equal whether derived or read from the cache; a second process
    reads it without importing torch or the methods; a changed config gets its own view; an invalid one is reported
    and not stored."""
    import subprocess
    import sys

    from sslseg.config import report_spec, workflow_view
    from sslseg.figures import captions

    cfg = edit(methods=["supervised", "mean_teacher", "bcp"], labels=[1, 2], seeds=[0, 1],
               warm_start={"from": "supervised", "iterations": 10})
    cache, before = tmp_path / "cache", json.dumps(cfg, sort_keys=True)
    view = workflow_view(cfg, "config.yaml", cache)
    assert len(list(cache.glob("*.json"))) == 1 and json.dumps(cfg, sort_keys=True) == before
    resolved = validate(json.loads(json.dumps(cfg)), "config.yaml")
    assert view["config"] == resolved and "bcp" in view["methods"] and "acdc" in view["datasets"]
    b = view["benchmarks"]["b"]
    assert set(b["runs"]) == {f"{m}/l{n}/seed{s}" for m in ("supervised", "mean_teacher", "bcp") for n in (1, 2)
                              for s in (0, 1)}
    assert b["runs"]["bcp/l2/seed1"] == run_spec(resolved, "b", "bcp", 2, 1).to_json()
    assert json.loads(b["runs"]["bcp/l2/seed1"])["warm_start"]["run"] == run_spec(resolved, "b", "supervised", 2,
                                                                                      1).hash
    assert b["infer"] == inference_args(resolved, "b") and b["evaluate"] == evaluation_args(resolved, "b")
    assert b["report"] == report_spec(resolved, "b") and b["captions"] == captions(report_spec(resolved, "b"))
    code = ("import json, sys; from sslseg.config import workflow_view; "
            f"v = workflow_view(json.loads({json.dumps(json.dumps(cfg))}), 'config.yaml', {str(cache)!r}); "
            "print(json.dumps(v, sort_keys=True)); print('torch' in sys.modules, 'sslseg.methods' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert json.loads(out[0]) == view and out[1] == "False False"
    workflow_view(edit(seeds=[2]), "config.yaml", cache)
    assert len(list(cache.glob("*.json"))) == 2
    with pytest.raises(SslsegError, match="methods: unknown name 'nope'"):
        workflow_view(edit(methods=["nope"]), "config.yaml", cache)
    assert len(list(cache.glob("*.json"))) == 2
