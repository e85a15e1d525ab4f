"""Evaluation protocols: named, frozen descriptions of how a benchmark is predicted, scored and averaged.

A benchmark names one (``protocol:``); inference, evaluation, aggregation and the tables read its fields, so a
paper family's conventions live here and nowhere else. Adding one is one ``Protocol`` and one registry call.

Fields:
* ``resize_2d``: how 2D benchmarks bring a slice to the training size and back -- ``nearest`` (scipy zoom with
  order 0 on the image, and on the label map back; SSL4MIS/BCP) or ``bilinear`` (image bilinear down, class
  probabilities bilinear back, then argmax).
* ``overlap``, ``mode``: default 3D sliding-window settings (the benchmark's ``inference:`` may override them).
* ``stride``: windows every ``stride`` voxels per axis (array order), the last one moved back to end at the edge,
  as UA-MT's ``test_single_case`` places them; None = ``overlap``'s evenly spread windows (nnU-Net).
* ``largest_component``: keep only the largest 26-connected component of each foreground class of a 3D prediction
  (BCP's ``--nms 1``, there for its one class).
* ``spacing``: distances in mm from the stored spacing (True) or in voxels (False).
* ``empty_policy``: default empty-mask policy (see ``sslseg.metrics.EMPTY_POLICIES``); a benchmark may override it.
* ``asd``: ``surface`` (medpy's average surface distance, prediction to reference) or ``average_hausdorff``
  (SimpleITK's average Hausdorff distance over every voxel of both masks; DuoMod-Net's "ASD").
* ``layout``: the paper's own summary files that ``sslseg aggregate`` writes besides the tables
  (``sslseg.paper_layouts``), or None.
* ``aggregation``: ``cases-then-classes`` (per class the mean over cases, then the mean over classes; SSL4MIS,
  BCP) or ``classes-then-cases`` (per case the mean over classes, then the mean over cases).
* ``saliency``: 2D only, also the polyp toolbox's S-measure, mean E-measure, weighted F-measure and MAE of each
  case and class (``sslseg.metrics.saliency_metrics``; columns sm, em, wfm, mae of metrics.csv).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sslseg.registry import Registry

__all__ = ["Protocol", "PROTOCOLS"]


@dataclass(frozen=True)
class Protocol:
    name: str
    summary: str  # one line for the tables' footers
    resize_2d: Literal["nearest", "bilinear"]
    spacing: bool
    empty_policy: str
    aggregation: Literal["cases-then-classes", "classes-then-cases"] = "cases-then-classes"
    overlap: float = 0.5
    mode: Literal["gaussian", "constant"] = "gaussian"
    stride: tuple[int, ...] | None = None
    largest_component: bool = False
    asd: Literal["surface", "average_hausdorff"] = "surface"
    layout: str | None = None  # a paper's own summary files (sslseg.paper_layouts), in results/{bench}/paper/
    saliency: bool = False

    def unit(self, spacing_known: bool) -> str:
        """Unit of HD95/ASD under this protocol for a dataset whose spacing is (not) known."""
        if not self.spacing:
            return "voxel"
        return "mm" if spacing_known else "voxel (source has no spacing)"


PROTOCOLS: Registry[Protocol] = Registry("protocol")

for _p in (
    Protocol("strict", "metrics in mm from the stored spacing; 2D slices resized bilinearly (probabilities back)",
             resize_2d="bilinear", spacing=True, empty_policy="penalty"),
    Protocol("ssl4mis-2d", "the SSL4MIS/BCP 2D test loop: slices zoomed to the training size and back with order 0, "
             "medpy without spacing (voxel units)", resize_2d="nearest", spacing=False, empty_policy="zero"),
    # UA-MT's test_3D (BCP, DTC, MC-Net and Hsu & Hua repeat it): windows of the training patch (LA 112 x 112 x 80,
    # Pancreas 96^3) every stride_xy / stride_z voxels, softmax averaged uniformly, argmax, medpy in voxels; an
    # empty prediction scores 0 (BCP's test_3D). BCP's own Pancreas test (CoraNet split) steps 16 / 4: bcp-pancreas.
    Protocol("uamt-la", "the UA-MT/BCP 3D test loop on LA: patch windows every 18 / 18 / 4 voxels (x / y / z), "
             "softmax averaged, medpy without spacing (voxel units)", resize_2d="nearest", spacing=False,
             empty_policy="zero", mode="constant", stride=(4, 18, 18)),
    Protocol("bcp-la", "the BCP 3D test loop on LA: uamt-la, then the largest connected component (26-connected) "
             "of the prediction kept (`--nms 1`)", resize_2d="nearest", spacing=False, empty_policy="zero",
             mode="constant", stride=(4, 18, 18), largest_component=True),
    Protocol("mcnet-pancreas", "the MC-Net 3D test loop on Pancreas (UA-MT's, 96^3 windows every 16 voxels on "
             "every axis), softmax averaged, medpy without spacing (voxel units)", resize_2d="nearest",
             spacing=False, empty_policy="zero", mode="constant", stride=(16, 16, 16)),
    Protocol("bcp-pancreas", "the BCP / CoraNet 3D test loop on Pancreas (`test_model`): 96^3 windows every 16 / 16 "
             "/ 4 voxels (x / y / z), softmax averaged, no component filter, medpy without spacing (voxel units)",
             resize_2d="nearest", spacing=False, empty_policy="zero", mode="constant", stride=(4, 16, 16)),
    # DuoMod-Net's test_amos.py + eval_amos_ready.py: windows overlapping by half, averaged uniformly; Dice 1 when
    # both masks are empty, 0 when one is; "ASD" = SimpleITK's average Hausdorff distance in mm, NaN for a missed
    # organ (the reference then drops it by a nan-mean; here it is counted as missed in the tables); averages
    # over classes per case first
    Protocol("duomod", "DuoMod-Net's evaluation: windows overlapping by half, averaged uniformly; Dice (1 when both "
             "masks are empty), ASD = SimpleITK's average Hausdorff distance in mm; a missed organ has no ASD and "
             "is counted", resize_2d="bilinear", spacing=True, empty_policy="duomod", mode="constant",
             asd="average_hausdorff", layout="duomod", aggregation="classes-then-cases"),
    # DEC-Seg's MyTest.py: the image zoomed to the training size with order 0, out3's argmax zoomed back with order
    # 0; per image medpy's Dice, 0 when the prediction or the reference is empty; the polyp tables (S-measure,
    # E-measure, weighted F, MAE) from PraNet's toolbox, here through pysodmetrics; per test set (paper layout)
    Protocol("decseg", "DEC-Seg's test: images zoomed to the training size and back with order 0, per-image Dice "
             "and IoU (0 when either mask is empty), the polyp toolbox's S-measure, mean E-measure, weighted "
             "F-measure and MAE (pysodmetrics), per test set", resize_2d="nearest", spacing=False,
             empty_policy="decseg", layout="decseg", saliency=True),
):
    PROTOCOLS.register(_p.name)(_p)
