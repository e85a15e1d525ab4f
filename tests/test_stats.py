"""sslseg.stats on a hand-built per-case table: seed means, table cells, paired tests and Holm correction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from sslseg.stats import METRICS, cell_table, paired_tests, seed_table

CLASSES = {1: "RV", 2: "Myo", 3: "LV"}
TAIL = [1, 3]
CASES = ["c0", "c1", "c2", "c3", "c4", "c5"]
METHODS = ["supervised", "mean_teacher", "other"]
SEEDS = [0, 1, 2]


def make_per_case(seeds=SEEDS, methods=METHODS, budgets=(1, 2)) -> pd.DataFrame:
    """Random metric values with a method effect, plus a few excluded (NaN) and both-empty entries."""
    rng = np.random.default_rng(1234)
    shift = {"supervised": 0.0, "mean_teacher": 0.03, "other": 0.1}
    rows = []
    for method in methods:
        for budget in budgets:
            for seed in seeds:
                for case in CASES:
                    for cls, name in CLASSES.items():
                        d = float(np.clip(rng.uniform(0.5, 0.9) + shift.get(method, 0.0), 0, 1))
                        row = dict(method=method, budget=budget, seed=seed, case=case, cls=cls, class_name=name,
                                   dice=d, jaccard=d / (2 - d), hd95=float(rng.uniform(1, 20)),
                                   asd=float(rng.uniform(0.2, 5)), status="ok", tp=10, fp=2, fn=3, n_pred=12,
                                   n_ref=13, unit="mm")
                        if case == "c1" and cls == 1 and seed == 0:  # prediction empty under 'exclude'
                            row.update(status="pred_empty", dice=0.0, jaccard=0.0, hd95=np.nan, asd=np.nan,
                                       tp=0, fp=0, fn=5, n_pred=0, n_ref=5)
                        if case == "c2" and cls == 3:  # class absent from this case: both empty
                            row.update(status="both_empty", dice=np.nan, jaccard=np.nan, hd95=np.nan, asd=np.nan,
                                       tp=0, fp=0, fn=0, n_pred=0, n_ref=0)
                        if method == "other" and case == "c4":  # every class both empty: the case drops out
                            row.update(status="both_empty", dice=np.nan, jaccard=np.nan, hd95=np.nan, asd=np.nan,
                                       tp=0, fp=0, fn=0, n_pred=0, n_ref=0)
                        rows.append(row)
    return pd.DataFrame(rows)


def nanmean(values) -> float:
    v = [x for x in values if not math.isnan(x)]
    return sum(v) / len(v) if v else math.nan


def by_hand_class_mean(pc: pd.DataFrame, method, budget, seed, cls, metric) -> float:
    sel = pc[(pc.method == method) & (pc.budget == budget) & (pc.seed == seed) & (pc.cls == cls)]
    return nanmean(sel[metric].tolist())


def one(df: pd.DataFrame, **keys) -> pd.Series:
    sel = df
    for k, v in keys.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, keys
    return sel.iloc[0]


# ---------------------------------------------------------------- seed_table

def test_seed_table_class_overall_tail_means():
    pc = make_per_case()
    st = seed_table(pc, TAIL)
    assert set(st["group"]) == {"RV", "Myo", "LV", "overall", "tail"}
    assert len(st) == len(METHODS) * 2 * len(SEEDS) * 5
    for method in METHODS:
        for budget in (1, 2):
            for seed in SEEDS:
                for metric in METRICS:
                    cm = {c: by_hand_class_mean(pc, method, budget, seed, c, metric) for c in CLASSES}
                    for c, name in CLASSES.items():
                        row = one(st, method=method, budget=budget, seed=seed, group=name)
                        assert row[metric] == pytest.approx(cm[c], rel=1e-12)
                        assert row["cls"] == c
                    overall = one(st, method=method, budget=budget, seed=seed, group="overall")
                    assert overall[metric] == pytest.approx(sum(cm.values()) / 3, rel=1e-12)
                    tail = one(st, method=method, budget=budget, seed=seed, group="tail")
                    assert tail[metric] == pytest.approx((cm[1] + cm[3]) / 2, rel=1e-12)


def test_seed_table_counts_excluded_cases():
    pc = make_per_case(seeds=[0, 1], methods=["supervised"], budgets=(1,))
    st = seed_table(pc, TAIL)
    rv0 = one(st, seed=0, group="RV")
    assert rv0["n_cases"] == 6 and rv0["n_excluded"] == 1 and rv0["n_both_empty"] == 0
    # the excluded case is left out of the HD95 mean but its Dice of 0 counts
    vals = pc[(pc.seed == 0) & (pc.cls == 1)]
    assert rv0["hd95"] == pytest.approx(vals.loc[vals.case != "c1", "hd95"].mean())
    assert rv0["dice"] == pytest.approx(vals["dice"].sum() / 6)
    assert one(st, seed=1, group="RV")["n_excluded"] == 0
    lv0 = one(st, seed=0, group="LV")
    assert lv0["n_excluded"] == 1 and lv0["n_both_empty"] == 1
    assert lv0["dice"] == pytest.approx(pc[(pc.seed == 0) & (pc.cls == 3) & (pc.case != "c2")]["dice"].mean())
    overall = one(st, seed=0, group="overall")
    assert overall["n_excluded"] == 2 and overall["n_both_empty"] == 1 and overall["n_cases"] == 6
    tail = one(st, seed=0, group="tail")
    assert tail["n_excluded"] == 2
    assert one(st, seed=1, group="tail")["n_excluded"] == 1


def test_seed_table_classes_then_cases_order():
    """The other protocol order (DuoMod-Net's): each case's mean over its classes (NaN skipped), then over cases."""
    pc = make_per_case(seeds=[0], methods=["supervised"], budgets=(1,))
    st = seed_table(pc, TAIL, "classes-then-cases")
    for metric in METRICS:
        case_means = [nanmean(pc[pc.case == c][metric].tolist()) for c in CASES]
        assert one(st, group="overall")[metric] == pytest.approx(nanmean(case_means), rel=1e-12)
        tail_means = [nanmean(pc[(pc.case == c) & pc.cls.isin(TAIL)][metric].tolist()) for c in CASES]
        assert one(st, group="tail")[metric] == pytest.approx(nanmean(tail_means), rel=1e-12)
        # per-class rows do not depend on the order
        assert one(st, group="RV")[metric] == one(seed_table(pc, TAIL), group="RV")[metric]
    # the two orders differ once a case misses a value (c1's RV HD95 is excluded)
    assert one(st, group="overall")["hd95"] != pytest.approx(one(seed_table(pc, TAIL), group="overall")["hd95"])


def test_seed_table_without_tail_classes_has_no_tail_group():
    pc = make_per_case(seeds=[0], methods=["supervised"], budgets=(1,))
    st = seed_table(pc, [])
    assert "tail" not in set(st["group"])
    assert "overall" in set(st["group"])


# ---------------------------------------------------------------- cell_table

def test_cell_table_mean_and_sample_std_over_seeds():
    pc = make_per_case()
    st = seed_table(pc, TAIL)
    ct = cell_table(st)
    assert len(ct) == len(METHODS) * 2 * 5
    for method in METHODS:
        for budget in (1, 2):
            for group in ("RV", "overall", "tail"):
                row = one(ct, method=method, budget=budget, group=group)
                assert row["n_seeds"] == 3
                for metric in METRICS:
                    v = [one(st, method=method, budget=budget, seed=s, group=group)[metric] for s in SEEDS]
                    mean = sum(v) / 3
                    std = math.sqrt(sum((x - mean) ** 2 for x in v) / 2)  # ddof = 1
                    assert row[f"{metric}_mean"] == pytest.approx(mean, rel=1e-12)
                    assert row[f"{metric}_std"] == pytest.approx(std, rel=1e-9)
    row = one(ct, method="supervised", budget=1, group="overall")
    assert row["n_excluded"] == 2 + 1 + 1  # seed 0: c1/RV + c2/LV; seeds 1, 2: c2/LV
    assert row["n_cases"] == 6


def test_cell_table_single_seed_has_nan_std():
    st = seed_table(make_per_case(seeds=[0]), TAIL)
    ct = cell_table(st)
    assert (ct["n_seeds"] == 1).all()
    for metric in METRICS:
        assert ct[f"{metric}_std"].isna().all()
        np.testing.assert_array_equal(ct[f"{metric}_mean"].notna(), True)
    row = one(ct, method="other", budget=2, group="Myo")
    assert row["dice_mean"] == one(st, method="other", budget=2, seed=0, group="Myo")["dice"]


def test_cell_table_two_seeds_std_by_hand():
    st = pd.DataFrame(dict(method="m", budget=1, group="overall", seed=[0, 1], dice=[0.7, 0.8], jaccard=[0.5, 0.7],
                           hd95=[3.0, 5.0], asd=[1.0, 1.0], n_cases=[4, 4], n_excluded=[0, 1], n_both_empty=0))
    row = cell_table(st).iloc[0]
    assert row["dice_mean"] == pytest.approx(0.75)
    assert row["dice_std"] == pytest.approx(math.sqrt(0.005))  # |a - b| / sqrt(2)
    assert row["hd95_std"] == pytest.approx(math.sqrt(2.0))
    assert row["asd_std"] == 0.0
    assert row["n_excluded"] == 1 and row["n_seeds"] == 2


# ---------------------------------------------------------------- paired_tests

def per_case_means(pc: pd.DataFrame, method, budget, metric) -> dict:
    """Per case: mean over classes (NaN skipped) per seed, then mean over seeds (NaN skipped)."""
    out = {}
    for case in CASES:
        seeds = []
        for seed in sorted(pc.seed.unique()):
            sel = pc[(pc.method == method) & (pc.budget == budget) & (pc.seed == seed) & (pc.case == case)]
            seeds.append(nanmean(sel[metric].tolist()))
        out[case] = nanmean(seeds)
    return out


def test_paired_tests_match_scipy_and_statsmodels():
    pc = make_per_case()
    pt = paired_tests(pc, "supervised")
    assert "supervised" not in set(pt["method"])
    assert (pt["reference"] == "supervised").all()
    assert len(pt) == 2 * 2 * len(METRICS)  # two methods x two budgets x four metrics
    for method in ("mean_teacher", "other"):
        for budget in (1, 2):
            for metric in METRICS:
                row = one(pt, method=method, budget=budget, metric=metric)
                a_all = per_case_means(pc, method, budget, metric)
                b_all = per_case_means(pc, "supervised", budget, metric)
                keep = [c for c in CASES if not (math.isnan(a_all[c]) or math.isnan(b_all[c]))]
                a = np.array([a_all[c] for c in keep])
                b = np.array([b_all[c] for c in keep])
                assert row["n"] == len(keep)
                assert row["n_excluded"] == len(CASES) - len(keep)
                assert row["mean"] == pytest.approx(a.mean(), rel=1e-12)
                assert row["mean_ref"] == pytest.approx(b.mean(), rel=1e-12)
                assert row["mean_diff"] == pytest.approx((a - b).mean(), rel=1e-9, abs=1e-12)
                assert row["p_ttest"] == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-9)
                assert row["p_wilcoxon"] == pytest.approx(sps.wilcoxon(a - b).pvalue, rel=1e-9)
    # 'other' has every class of c4 both-empty: that case drops out of its comparisons
    assert (pt.loc[pt.method == "other", "n"] == 5).all()
    assert (pt.loc[pt.method == "other", "n_excluded"] == 1).all()
    assert (pt.loc[pt.method == "mean_teacher", "n"] == 6).all()


def test_holm_correction_per_metric_across_all_comparisons():
    pc = make_per_case()
    pt = paired_tests(pc, "supervised")
    differs_from_sidak = False
    for metric in METRICS:
        sel = pt[pt["metric"] == metric]
        assert len(sel) == 4  # 2 methods x 2 budgets corrected together
        for col in ("p_ttest", "p_wilcoxon"):
            holm = multipletests(sel[col].to_numpy(), method="holm")[1]
            np.testing.assert_allclose(sel[f"{col}_holm"].to_numpy(), holm, rtol=1e-12)
            assert np.all(sel[f"{col}_holm"].to_numpy() >= sel[col].to_numpy())
            with np.errstate(divide="ignore"):  # a p-value of exactly 1 (Wilcoxon) makes log1p(-1) = -inf
                sidak = multipletests(sel[col].to_numpy(), method="holm-sidak")[1]
            if not np.allclose(holm, sidak, rtol=1e-6):
                differs_from_sidak = True
    assert differs_from_sidak  # Holm (Bonferroni steps), not Holm-Sidak


def test_holm_by_hand():
    """Three comparisons with known p-values: Holm multiplies the sorted p by 3, 2, 1 and keeps it monotone."""
    pc = make_per_case(methods=["supervised"], budgets=(1,), seeds=[0])
    frames = [pc]
    for k, delta in enumerate([0.02, 0.05, 0.08]):
        other = pc.copy()
        other["method"] = f"m{k}"
        noise = np.random.default_rng(k).normal(0, 0.03, len(other))
        for metric in METRICS:
            other[metric] = other[metric] + delta + noise
        frames.append(other)
    pt = paired_tests(pd.concat(frames, ignore_index=True), "supervised")
    sel = pt[pt.metric == "dice"].reset_index(drop=True)
    p = sel["p_ttest"].to_numpy()
    order = np.argsort(p)
    adj = np.empty(3)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * p[i]))
        adj[i] = running
    np.testing.assert_allclose(sel["p_ttest_holm"].to_numpy(), adj, rtol=1e-12)
    sidak = multipletests(p, method="holm-sidak")[1]
    assert not np.allclose(adj, sidak, rtol=1e-9, atol=0)


def test_identical_methods_give_nan_p_values():
    pc = make_per_case(methods=["supervised"], budgets=(1,), seeds=[0, 1])
    twin = pc.assign(method="twin")
    pt = paired_tests(pd.concat([pc, twin], ignore_index=True), "supervised")
    assert len(pt) == len(METRICS)
    assert pt["p_ttest"].isna().all() and pt["p_wilcoxon"].isna().all()
    assert pt["p_ttest_holm"].isna().all()
    assert (pt["mean_diff"] == 0).all()


def test_paper_table_marks_the_direction_of_significance():
    from sslseg.report import _paper_rows

    bench = {"labels": [3], "methods": ["sup", "good", "bad"]}
    metrics = ("dice", "jaccard", "hd95", "asd")
    cells = pd.DataFrame([{"group": "overall", "budget": 3, "method": m,
                           **{f"{k}_mean": v for k in metrics}, **{f"{k}_std": 0.0 for k in metrics}}
                          for m, v in (("sup", 0.5), ("good", 0.7), ("bad", 0.3))])
    # Dice higher is better, HD95 lower is better: "good" +0.2 Dice (better) and +0.2 HD95 (worse)
    pvals = pd.DataFrame([{"method": m, "budget": 3, "metric": k, "mean_diff": d, "p_wilcoxon_holm": 0.001}
                          for m, d in (("good", 0.2), ("bad", -0.2)) for k in metrics])
    rows = {r[0][0]: [c[0] for c in r[2:]] for r in _paper_rows(cells, pvals, bench, {})}
    assert rows["good"][0].endswith("*") and rows["good"][2].endswith("†")
    assert rows["bad"][0].endswith("†") and rows["bad"][2].endswith("*")
    assert not rows["sup"][0].endswith(("*", "†"))
