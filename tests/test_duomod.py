"""DuoMod-Net: DAW's class weights, AFR's disagreement and gamma, the weighted losses -- by hand on tiny tensors;
the class distribution's update per iteration and the two reference behaviours behind options."""

import math

import numpy as np
import pytest
import torch

from conftest import build_method
from sslseg.methods import method_params
from sslseg.methods.duomod import Disagreement, class_ranks, daw_weights, js_divergence, weighted_dice_ce
from sslseg.models import build_model


def test_daw_weights_by_hand():
    # foreground shares 0.2, 0.09, 0.01: torch's linear quantiles q05 = 0.01 + 0.1 x 0.08 = 0.018,
    # q95 = 0.09 + 0.9 x 0.11 = 0.189; clipped, the log level is 1, ln 5 / ln 10.5 = 0.684467 and 0
    # w = 0.2 + 0.8 (1 - level) = 0.2, 0.452427, 1.0; background = their median 0.452427 (the cap, 8 x median,
    # does not bind); divided by the mean 0.526213
    w_ce, w_dc = daw_weights(torch.tensor([0.7, 0.2, 0.09, 0.01]))
    assert w_ce.tolist() == pytest.approx([0.859778, 0.380074, 0.859778, 1.900370], abs=2e-6)
    assert w_dc.tolist() == pytest.approx([0.927242, 0.616501, 0.927242, 1.378539], abs=2e-6)
    # a low floor lets the cap bind: foreground 0.3, 0.3, 0.3, 0.001 -> q05 = 0.04585, q95 = 0.3 -> w = 0.05 x 3
    # and 1.0; median 0.05 (torch's lower middle of four), cap 0.4; background 0.05; mean 0.12
    w_ce, w_dc = daw_weights(torch.tensor([0.5, 0.3, 0.3, 0.3, 0.001]), floor=0.05)
    assert w_ce.tolist() == pytest.approx([0.05 / 0.12] * 4 + [0.4 / 0.12], rel=1e-5)
    assert w_dc.tolist() == pytest.approx([math.sqrt(0.05 / 0.12)] * 4 + [math.sqrt(0.4 / 0.12)], rel=1e-5)
    # the Dice weights are capped at 2: a rare class weighing more than 4 in CE
    w_ce, w_dc = daw_weights(torch.tensor([0.9] + [0.01] * 9 + [1e-6]), floor=0.05)  # 0.4 / (0.9 / 11) = 4.89
    assert w_ce[-1] > 4 and w_dc[-1] == 2.0
    # fewer than two foreground classes present: no reweighting
    assert daw_weights(torch.tensor([0.9, 0.1, 0.0]))[0].tolist() == [1.0, 1.0, 1.0]


def test_js_divergence_by_hand():
    a = torch.tensor([[0.0, 0.0]]).view(1, 2, 1)  # p = (0.5, 0.5)
    b = torch.tensor([[math.log(9), 0.0]]).view(1, 2, 1)  # p = (0.9, 0.1); m = (0.7, 0.3)
    # KL(a|m) = 0.5 ln(5/7) + 0.5 ln(5/3) = 0.087177; KL(b|m) = 0.9 ln(9/7) + 0.1 ln(1/3) = 0.116321
    assert js_divergence(a, b).item() == pytest.approx((0.0871771 + 0.1163213) / 2, abs=1e-6)
    assert js_divergence(a, a).item() == pytest.approx(0.0, abs=1e-7)
    far = js_divergence(torch.tensor([[20.0, -20.0]]).view(1, 2, 1), torch.tensor([[-20.0, 20.0]]).view(1, 2, 1))
    assert far.item() == pytest.approx(math.log(2), abs=1e-6)


def test_afr_gamma_by_hand():
    ranks = class_ranks(torch.tensor([0.6, 0.1, 0.3]))
    assert ranks.tolist() == [0, 2, 1]  # 0 = the most frequent
    afr = Disagreement(3)
    d = torch.tensor([[0.1, 0.3, 0.2, 0.6, 0.4]])
    y = torch.tensor([[0, 0, 1, 1, 2]])
    # first observation sets each class's range: class 0 [0.1, 0.3], class 1 [0.2, 0.6], class 2 [0.4, 0.4]
    # (empty: d = 0.5); d = 0, 1, 0, 1, 0.5; tail rule t = rank / 2 = 0 (class 0), 1 (class 1), 0.5 (class 2)
    g = afr.gamma(d, y, ranks, 1.0, "tail")
    assert g[0].tolist() == pytest.approx([1.0, 1.0, 1.0, 2.0, 1.25], abs=1e-6)
    assert afr.low.tolist() == pytest.approx([0.1, 0.2, 0.4]) and afr.high.tolist() == pytest.approx([0.3, 0.6, 0.4])
    # then an EMA (0.99): class 0 sees 0.5 only -> [0.104, 0.302]; d = (0.5 - 0.104) / 0.198 = 2 (not clipped)
    # the reference's rule t = 1 - rank / 2 boosts class 0, the most frequent: gamma = 1 + 2 x 1 = 3
    g = afr.gamma(torch.tensor([[0.5, 0.5]]), torch.tensor([[0, 0]]), ranks, 1.0, "reference")
    assert afr.low[0].item() == pytest.approx(0.104) and afr.high[0].item() == pytest.approx(0.302)
    assert g[0].tolist() == pytest.approx([3.0, 3.0], rel=1e-5)


def test_weighted_dice_and_ce_by_hand():
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, 0.0]]])  # (B=1, C=2, 2 voxels): p1 = (0.5, 0.25)
    target = torch.tensor([[0, 1]])
    # Dice per class with batch sums: class 0: p = (0.5, 0.75), 2 x 0.5 / (1.25 + 1) = 0.444444;
    # class 1: p = (0.5, 0.25), 2 x 0.25 / (0.75 + 1) = 0.285714
    # weighted mean over classes (w_dc 1, 2): (0.555556 + 2 x 0.714286) / 2 = 0.992064
    # weighted CE (w_ce 1, 3): (1 x -ln 0.5 + 3 x -ln 0.25) / (1 + 3) = 1.213008
    loss = weighted_dice_ce(logits, target, torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0]))
    assert loss.item() == pytest.approx(0.992064 + 1.213008, abs=2e-6)


def _method(**hp):
    def make():
        return build_model({"name": "unet", "channels": [4, 8], "dropout": [0.0, 0.0]}, 3, 1, 3)

    torch.manual_seed(0)
    return build_method("duomod", make, method_params("duomod", hp), 10, 3)


@pytest.mark.parametrize("updates", ["once", "twice"])
def test_class_distribution_follows_the_unlabelled_mass(updates):
    m = _method(daw_updates=updates, afr_start=0.5)
    m.init_label_counts([6, 3, 1])
    assert m.dist.pi.tolist() == pytest.approx([0.6, 0.3, 0.1])
    batch = {"x_l": torch.rand(1, 1, 8, 8, 8), "y_l": torch.randint(0, 3, (1, 8, 8, 8)),
             "x_u": torch.rand(1, 1, 8, 8, 8)}
    with torch.no_grad():  # both halves pass together (batch-norm statistics); the unlabelled one's mass
        x = torch.cat([batch["x_l"], batch["x_u"]])
        qa, qb = (net(x)[1:].softmax(1).mean((0, 2, 3, 4)) for net in (m.student, m.second))
    _, logs = m.training_step(batch, 0)
    pi0 = torch.tensor([0.6, 0.3, 0.1])
    want = (0.99 * pi0 + 0.01 * (qa + qb) / 2 if updates == "once"
            else 0.99 * (0.99 * pi0 + 0.01 * qa) + 0.01 * qb)
    assert m.dist.pi.tolist() == pytest.approx(want.tolist(), abs=1e-6)
    assert logs["afr"] == 0.0 and m.training_step(batch, 5)[1]["afr"] == 1.0  # AFR from half the run here
    assert bool(m.afr["a"].seen.any()) and "dist" in m.modules()


def test_duomod_protocol_scores_by_hand():
    """DuoMod-Net's "ASD" is SimpleITK's average Hausdorff distance: the mean of the two directed means over every
    voxel; its empty rules: both empty -> Dice 1, ASD 0 (scored); one empty -> Dice 0, no ASD (counted)."""
    from sslseg.metrics import average_hausdorff, case_metrics
    from sslseg.protocols import PROTOCOLS

    pred, ref = np.zeros((4, 4, 10), int), np.zeros((4, 4, 10), int)
    pred[0, 0, 0:2] = 1  # voxels at x = 0, 1
    ref[0, 0, 3:6] = 1  # x = 3, 4, 5: pred -> ref 3, 2 (mean 2.5); ref -> pred 2, 3, 4 (mean 3)
    assert average_hausdorff(pred == 1, ref == 1) == pytest.approx(2.75)
    assert average_hausdorff(pred == 1, ref == 1, (1.0, 1.0, 2.0)) == pytest.approx(5.5)  # x spacing 2 mm
    ref[2, 2, 2] = 2
    rows = {r["cls"]: r for r in case_metrics(pred, ref, [1, 2, 3], (1.0, 1.0, 2.0), "duomod",
                                              asd_kind="average_hausdorff")}
    assert rows[1]["dice"] == 0.0 and rows[1]["asd"] == pytest.approx(5.5) and rows[1]["status"] == "ok"
    assert rows[2]["status"] == "pred_empty" and rows[2]["dice"] == 0.0 and math.isnan(rows[2]["asd"])
    assert rows[3]["status"] == "both_empty" and (rows[3]["dice"], rows[3]["asd"]) == (1.0, 0.0)
    p = PROTOCOLS["duomod"]
    assert (p.asd, p.empty_policy, p.spacing, p.mode, p.overlap) == ("average_hausdorff", "duomod", True,
                                                                     "constant", 0.5)


def test_duomod_paper_layout_by_hand(tmp_path):
    """DuoMod-Net's aggregation: per class the seeds' case means, mean +- std (ddof 0); FG / tail averages of each
    case's class mean; the per-case CSV averaged over seeds; missed organs counted."""
    import pandas as pd

    from sslseg.data import DatasetInfo
    from sslseg.paper_layouts import write_layout

    nan = float("nan")
    values = {  # (seed, case): [(dice, asd, status) for classes 1, 2, 3]
        (0, "A"): [(0.8, 1, "ok"), (0.4, 3, "ok"), (1.0, 0, "both_empty")],
        (0, "B"): [(0.6, 2, "ok"), (0.0, nan, "pred_empty"), (0.9, 1, "ok")],
        (1, "A"): [(0.7, 1, "ok"), (0.5, 2, "ok"), (1.0, 0, "both_empty")],
        (1, "B"): [(0.5, 3, "ok"), (0.2, 4, "ok"), (0.8, 2, "ok")]}
    rows = [dict(method="duomod", budget=4, seed=s, case=c, cls=k + 1, dice=d, asd=a, status=st)
            for (s, c), v in values.items() for k, (d, a, st) in enumerate(v)]
    meta = DatasetInfo("t", {1: "one", 2: "two", 3: "three"}, 3, "CT", "-", "volumes", tail=(2,))
    write_layout("duomod", pd.DataFrame(rows), meta, tmp_path)
    text = (tmp_path / "duomod_l4_summary_results.txt").read_text().splitlines()
    line = {ln.split()[0] if not ln.startswith("Average") else " ".join(ln.split()[:2]): ln.split() for ln in text[2:]}
    # class one: seeds 0.7 and 0.6 -> 65.00 +- 5.00; ASD 1.5 and 2.0 -> 1.750 +- 0.250
    assert line["one"][1:7] == ["65.00", "+-", "5.00", "1.750", "+-", "0.250"]
    # class two: 0.2 and 0.35 -> 27.50 +- 7.50; ASD 3 (the missed case has none) and 3; one organ missed
    assert line["two"][1:9] == ["27.50", "+-", "7.50", "3.000", "+-", "0.000", "1", "0"]
    # FG: each seed's case means 0.7333 and 0.5 -> 61.67 +- 0.00; ASD 1.4167 and 2 -> 1.708 +- 0.292
    assert line["Average (FG)"][2:8] == ["61.67", "+-", "0.00", "1.708", "+-", "0.292"]
    assert line["Average (tail)"][2:5] == ["27.50", "+-", "7.50"]
    csv = pd.read_csv(tmp_path / "duomod_l4_aggregated_metrics.csv").set_index("Filename")
    assert csv.loc["A"].tolist() == pytest.approx([0.733333, 1.166667, 0.45, 2.5], abs=1e-6)
    assert csv.loc["B"].tolist() == pytest.approx([0.5, 2.25, 0.1, 4.0], abs=1e-6)
    write_layout(None, pd.DataFrame(rows), meta, tmp_path / "none")
    assert "no paper layout" in (tmp_path / "none" / "README.txt").read_text()
