"""``sslseg figures``: the figures of a benchmark, drawn with matplotlib from its runs and from per_case.csv and
summary.json of ``sslseg aggregate``.

* ``curves.png``: training loss (running mean) and validation Dice per run, the seeds of a method overlaid, the
  selected iteration of each seed dashed.
* ``cases.png``: per test case, Dice and HD95 (class mean averaged over seeds, as the paired tests use them) per
  method and label budget, box and points, with the tables' significance marks.
* ``budget.png``: overall Dice and HD95 against the label budget per method (mean over seeds, std bars, seeds as
  dots).
* ``classes.png``: Dice per class per method (mean over seeds, std bars), tail classes shaded.
* ``overlays_l{budget}.png``: image, reference and each method's prediction (first seed) on one slice of the best,
  median and worst test case of the reference method, class colours in a legend.

``captions`` words each figure's caption (the workflow's report shows them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from sslseg import SslsegError
from sslseg.data import DatasetInfo, load_prepared
from sslseg.io import atomic_path, read_case, read_nifti
from sslseg.protocols import PROTOCOLS
from sslseg.report import ALPHA, mark, metric_scale
from sslseg.stats import case_means

__all__ = ["draw", "figures", "captions"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
                         "figure.dpi": 110, "savefig.dpi": 110})
    return plt


def _method_colours(methods: list[str]) -> dict[str, tuple]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def _save(fig, path: Path) -> None:
    plt = _plt()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


def _units(unit: str) -> dict[str, str]:
    return {"dice": "Dice (%)", "hd95": f"HD95 ({unit})"}


def _run_dir(results: Path, method: str, budget: int, seed: int) -> Path:
    return results / method / f"l{budget}" / f"seed{seed}"


def _read_log(path: Path) -> pd.DataFrame:
    try:
        log = pd.read_csv(path)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise SslsegError(f"{path}: unreadable training log ({str(e).splitlines()[0]})") from None
    if not {"iteration", "loss"} <= set(log.columns):
        raise SslsegError(f"{path}: not a training log of `sslseg train` (needs columns iteration, loss)")
    return log


def plot_curves(bench: dict, results: Path):
    """Two rows per budget (loss, validation Dice), one column per method, seeds overlaid."""
    plt = _plt()
    methods, budgets, seeds = bench["methods"], bench["labels"], bench["seeds"]
    fig, axes = plt.subplots(2 * len(budgets), len(methods), figsize=(2.3 * len(methods), 3.6 * len(budgets)),
                             squeeze=False)
    seed_colour = dict(zip(seeds, plt.get_cmap("tab10").colors))
    for b, budget in enumerate(budgets):
        for j, method in enumerate(methods):
            ax_loss, ax_val = axes[2 * b, j], axes[2 * b + 1, j]
            for seed in seeds:
                run = _run_dir(results, method, budget, seed)
                log = _read_log(run / "train_log.csv")
                k = max(1, len(log) // 50)
                ax_loss.plot(log["iteration"], log["loss"].rolling(k, min_periods=1).mean(), lw=0.8,
                             color=seed_colour[seed], label=f"seed {seed}")
                if "val_dice" in log and log["val_dice"].notna().any():
                    val = log.dropna(subset=["val_dice"])
                    ax_val.plot(val["iteration"], val["val_dice"] * 100, marker="o", ms=2.5, lw=0.8,
                                color=seed_colour[seed])
                prov = run / "provenance.json"
                if prov.is_file():
                    selected = json.loads(prov.read_text(encoding="utf-8")).get("selected_iteration")
                    if selected:
                        ax_val.axvline(selected, color=seed_colour[seed], ls="--", lw=0.7)
            ax_loss.set_title(f"{method}, {budget} labelled")
            ax_val.set_xlabel("iteration")
            ax_val.set_ylim(0, 100)
            if j == 0:
                ax_loss.set_ylabel("training loss\n(running mean)")
                ax_val.set_ylabel("validation Dice (%)")
            if not ax_val.lines:
                ax_val.text(0.5, 0.5, "no validation", ha="center", va="center", transform=ax_val.transAxes)
    axes[0, 0].legend(loc="upper right", frameon=False)
    fig.suptitle(f"{bench['name']}: training curves (dashed: selected iteration per seed)", y=1.0)
    fig.tight_layout()
    return fig


def _marks(pvals: pd.DataFrame, metric: str) -> dict[tuple[str, int], str]:
    """(method, budget) -> '*' (significantly better than the reference) or '†' (worse), as in the tables."""
    if pvals.empty:  # the reference alone
        return {}
    return {(r.method, r.budget): mark(r.p_wilcoxon_holm, r.mean_diff, metric)
            for r in pvals[pvals["metric"] == metric].itertuples()}


def plot_cases(bench: dict, cases: pd.DataFrame, pvals: pd.DataFrame, unit: str):
    """Rows: Dice, HD95; columns: budgets; per method a box (no outliers drawn) and the cases as points."""
    plt = _plt()
    methods, budgets = bench["methods"], bench["labels"]
    colours = _method_colours(methods)
    labels = _units(unit)
    fig, axes = plt.subplots(2, len(budgets), figsize=(max(4.0, 0.6 * len(methods) + 1.5) * len(budgets), 6.0),
                             squeeze=False)
    rng = np.random.default_rng(0)
    for i, metric in enumerate(("dice", "hd95")):
        marks = _marks(pvals, metric)
        for b, budget in enumerate(budgets):
            ax = axes[i, b]
            data = [cases[(cases["method"] == m) & (cases["budget"] == budget)][metric].dropna().to_numpy()
                    * metric_scale(metric) for m in methods]
            box = ax.boxplot(data, showfliers=False, widths=0.6, patch_artist=True, medianprops={"color": "k"})
            for patch, m in zip(box["boxes"], methods):
                patch.set_facecolor((*colours[m][:3], 0.35))
            for x, (m, values) in enumerate(zip(methods, data), start=1):
                ax.scatter(x + rng.uniform(-0.15, 0.15, len(values)), values, s=6, color=colours[m], zorder=3)
                if marks.get((m, budget)):
                    top = max(values) if len(values) else 0
                    ax.annotate(marks[(m, budget)], (x, top), ha="center", va="bottom", fontsize=11)
            ax.set_xticks(range(1, len(methods) + 1),
                          [m + (" (ref)" if m == bench["reference"] else "") for m in methods], rotation=35,
                          ha="right")
            ax.set_ylabel(labels[metric])
            ax.set_title(f"{budget} labelled: {labels[metric]} per test case")
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{bench['name']}: per test case, class mean averaged over seeds; * / † Holm-corrected Wilcoxon "
                 f"p < {ALPHA} vs {bench['reference']} (better / worse)", y=1.0)
    fig.tight_layout()
    return fig


def plot_budget(bench: dict, per_seed: pd.DataFrame, unit: str):
    """Overall Dice and HD95 against the label budget: mean over seeds, std bars, seeds as dots."""
    plt = _plt()
    methods, budgets = bench["methods"], sorted(bench["labels"])
    overall = per_seed[per_seed["group"] == "overall"]
    colours = _method_colours(methods)
    labels = _units(unit)
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.8))
    offsets = np.linspace(-0.08, 0.08, len(methods)) if len(methods) > 1 else [0.0]
    for ax, metric in zip(axes, ("dice", "hd95")):
        for off, method in zip(offsets, methods):
            sub = overall[overall["method"] == method]
            g = sub.groupby("budget")[metric]
            mean = g.mean().reindex(budgets) * metric_scale(metric)
            std = g.std(ddof=1).reindex(budgets).fillna(0) * metric_scale(metric)
            x = np.arange(len(budgets)) + off
            ax.errorbar(x, mean, yerr=std, marker="o", ms=4, capsize=3, lw=1.2, color=colours[method],
                        label=method)
            pos = {bud: i for i, bud in enumerate(budgets)}
            ax.scatter(sub["budget"].map(pos) + off, sub[metric] * metric_scale(metric), s=8, color=colours[method],
                       alpha=0.5, zorder=3)
        ax.set_xticks(range(len(budgets)), [str(b) for b in budgets])
        ax.set_xlim(-0.5, len(budgets) - 0.5)
        ax.set_xlabel(f"label budget ({bench.get('budget_unit', 'labelled')})")
        ax.set_ylabel(f"overall {labels[metric]}")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", frameon=False, ncol=2 if len(methods) > 6 else 1)
    fig.suptitle(f"{bench['name']}: overall metric against label budget (mean ± std over seeds; dots: seeds)")
    fig.tight_layout()
    return fig


def plot_classes(bench: dict, cells: pd.DataFrame, meta: DatasetInfo):
    """Per budget: Dice per scored structure (and overall), one bar per method, tail structures shaded."""
    plt = _plt()
    methods, budgets = bench["methods"], bench["labels"]
    names = [n for n, _ in meta.groups.values()]
    tail = {meta.groups[t][0] for t in meta.tail}
    groups = names + ["overall"]
    colours = _method_colours(methods)
    width = 0.8 / len(methods)
    fig, axes = plt.subplots(len(budgets), 1, figsize=(max(6.0, 0.16 * len(groups) * len(methods) + 2), 3.2
                                                       * len(budgets)), squeeze=False)
    for ax, budget in zip(axes[:, 0], budgets):
        sub = cells[cells["budget"] == budget].set_index(["method", "group"])
        for k, g in enumerate(groups):
            if g in tail:
                ax.axvspan(k - 0.45, k + 0.45, color="0.9", zorder=0)
        for i, method in enumerate(methods):
            mean = [sub["dice_mean"].get((method, g), np.nan) * 100 for g in groups]
            std = [sub["dice_std"].get((method, g), np.nan) * 100 for g in groups]
            ax.bar(np.arange(len(groups)) - 0.4 + (i + 0.5) * width, mean, width, yerr=np.nan_to_num(std),
                   color=colours[method], label=method, capsize=1.5, error_kw={"lw": 0.6})
        ax.set_xticks(range(len(groups)), [g + (" (tail)" if g in tail else "") for g in groups], rotation=30,
                      ha="right")
        ax.set_ylabel("Dice (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{budget} labelled")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle(f"{bench['name']}: Dice per class (mean ± std over seeds)"
                 + ("; tail classes shaded" if tail else ""))
    fig.tight_layout()
    return fig


def _display_image(image: np.ndarray, meta: DatasetInfo) -> np.ndarray:
    """(channels, H, W) -> grey (H, W) or RGB (H, W, 3) in 0..1, the grey one windowed to its 0.5-99.5 %."""
    if image.shape[0] == 3 and "rgb" in f"{meta.modality} {meta.intensity}".lower():
        x = np.moveaxis(image, 0, -1)
    else:
        x = image[0]
    lo, hi = np.percentile(x, [0.5, 99.5])
    return np.clip((x - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def _on_prepared_grid(pred: np.ndarray, case) -> np.ndarray:
    """A prediction on the source grid, cropped and resized (nearest) to the prepared grid of ``case``."""
    if case.source is None:
        return pred
    from scipy.ndimage import zoom

    crop = pred[case.source.box]
    return zoom(crop, [t / s for t, s in zip(case.label.shape, crop.shape)], order=0)


def _slice(volume: np.ndarray, k: int | None) -> np.ndarray:
    return volume if k is None else volume[k]


def plot_overlays(bench: dict, per_case: pd.DataFrame, cases: pd.DataFrame, results: Path, prepared: Path,
                  meta: DatasetInfo) -> dict:
    """Per budget: rows best / median / worst test case of the reference (per-case class-mean Dice over seeds),
    columns image, reference and each method's prediction of the first seed, on the slice of the case with the most
    reference foreground."""
    import matplotlib
    from matplotlib.patches import Patch

    plt = _plt()
    methods, seed = bench["methods"], bench["seeds"][0]
    seed_cases = case_means(per_case[per_case["seed"] == seed])
    n_lab = max(meta.classes) + 1
    cmap = matplotlib.colormaps["tab10" if n_lab <= 11 else "tab20"]
    colour = {c: cmap((c - 1) % cmap.N) for c in meta.classes}
    figs = {}
    for budget in bench["labels"]:
        ref = cases[(cases["method"] == bench["reference"]) & (cases["budget"] == budget)].dropna(subset=["dice"])
        ranked = ref.sort_values(["dice", "case"], ascending=[False, True])["case"].tolist()
        picks = [("best", ranked[0]), ("median", ranked[len(ranked) // 2]), ("worst", ranked[-1])]
        cols = ["image", "reference"] + methods
        fig, axes = plt.subplots(len(picks), len(cols), figsize=(1.7 * len(cols), 1.9 * len(picks) + 0.6),
                                 squeeze=False)
        for r, (what, cid) in enumerate(picks):
            case = read_case(prepared / "cases" / f"{cid}.h5", n_classes=meta.n_classes)
            k = None
            if case.label.ndim == 3:
                area = (case.label > 0).reshape(case.label.shape[0], -1).sum(axis=1)
                k = int(area.argmax()) if area.max() > 0 else case.label.shape[0] // 2
            image = _display_image(case.image if k is None else case.image[:, k], meta)
            spacing = case.geom.spacing_zyx[-2:]
            aspect = spacing[0] / spacing[1] if meta.spacing_known else 1.0
            panels = [("image", None), ("reference", _slice(case.label, k))]
            for m in methods:
                pred, _ = read_nifti(_run_dir(results, m, budget, seed) / "pred" / f"{cid}.nii.gz")
                panels.append((m, _slice(_on_prepared_grid(pred.astype(np.int64), case), k)))
            for c, (name, lab) in enumerate(panels):
                ax = axes[r, c]
                ax.imshow(image, cmap=None if image.ndim == 3 else "gray", aspect=aspect, interpolation="nearest")
                if lab is not None:
                    rgba = np.zeros(lab.shape + (4,))
                    for cls, col in colour.items():
                        rgba[lab == cls] = (*col[:3], 0.5)
                    ax.imshow(rgba, aspect=aspect, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if name in methods:
                    d = seed_cases[(seed_cases["method"] == name) & (seed_cases["budget"] == budget)
                                   & (seed_cases["case"] == cid)]["dice"]
                    ax.set_title(f"{name}\nDice {d.iloc[0] * 100:.1f}" if len(d) and pd.notna(d.iloc[0])
                                 else name)
                elif r == 0 or name == "reference":
                    ax.set_title(name)
            where = f"\nslice {k}" if k is not None else ""
            axes[r, 0].set_ylabel(f"{what}:\n{cid}{where}", fontsize=7)
        fig.legend(handles=[Patch(color=colour[c][:3], label=n) for c, n in meta.classes.items()],
                   loc="lower center", ncol=min(len(meta.classes), 8), frameon=False)
        fig.suptitle(f"{bench['name']}, {budget} labelled: best, median and worst test case of {bench['reference']}"
                     f" (class-mean Dice over seeds); predictions of seed {seed}, Dice of that seed", y=1.0)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        figs[f"overlays_l{budget}"] = fig
    return figs


def _frame(records: list[dict]) -> pd.DataFrame:
    """A table of summary.json, its nulls (a std of one seed, an untestable pair) as NaN."""
    df = pd.DataFrame(records)
    for c in df.columns:
        if df[c].isna().any() and df[c].map(lambda v: v is None or isinstance(v, (int, float))).all():
            df[c] = df[c].astype(float)
    return df


def draw(bench: dict, results: Path, prepared: Path, tables: Path | None = None) -> dict:
    """Figure name -> matplotlib Figure of benchmark ``bench`` (``sslseg.config.report_spec``), from the runs
    under ``results`` and the aggregate outputs (per_case.csv, summary.json) in ``tables`` (default ``results``)."""
    results, prepared = Path(results), Path(prepared)
    tables = Path(tables or results)
    meta, _ = load_prepared(prepared)
    paths = {}
    for name in ("per_case.csv", "summary.json"):
        paths[name] = tables / name
        if not paths[name].is_file():
            raise SslsegError(f"{paths[name]}: missing; run `sslseg aggregate` first")
    per_case = pd.read_csv(paths["per_case.csv"])
    summary = json.loads(paths["summary.json"].read_text(encoding="utf-8"))
    per_case = per_case[per_case["method"].isin(bench["methods"]) & per_case["budget"].isin(bench["labels"])]
    missing = {(m, b) for m in bench["methods"] for b in bench["labels"]} - set(
        zip(per_case["method"], per_case["budget"]))
    if missing:
        raise SslsegError(f"{paths['per_case.csv']}: no rows for {sorted(missing)[0]}; rerun `sslseg aggregate`")
    unit = summary["unit"]
    bench = dict(bench, budget_unit=meta.budget_unit)
    cases = case_means(per_case)  # per case: class mean averaged over seeds, as the tests compare them
    return {"curves": plot_curves(bench, results),
            "cases": plot_cases(bench, cases, _frame(summary["pvalues"]), unit),
            "budget": plot_budget(bench, _frame(summary["per_seed"]), unit),
            "classes": plot_classes(bench, _frame(summary["cells"]), meta),
            **plot_overlays(bench, per_case, cases, results, prepared, meta)}


def figures(bench: dict, results: Path, prepared: Path, out: Path | None = None,
            tables: Path | None = None) -> list[Path]:
    """``draw`` every figure and write it as ``{name}.png`` into ``out`` (default ``results/figures``)."""
    out = Path(out or Path(results) / "figures")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in draw(bench, results, prepared, tables).items():
        paths.append(out / f"{name}.png")
        _save(fig, paths[-1])
    return paths


def captions(bench: dict) -> dict[str, str]:
    """Figure name -> caption (protocol, units, selection, test), as the workflow's report shows them."""
    proto = PROTOCOLS[bench["protocol"]]
    sel = ("the iteration of best mean validation Dice" if bench["selection"] == "val" else "the final iteration")
    context = (f"Protocol {proto.name} ({proto.summary}); empty masks: policy {bench['empty_policy']}; models "
               f"selected at {sel} (never on the test split). Dice in %, distances in the protocol's unit "
               "(see the tables).")
    test = (f"* / † mark a Holm-corrected Wilcoxon signed-rank p < {ALPHA} against {bench['reference']} "
            "(better / worse) on per-case class means averaged over seeds.")
    text = {
        "curves": "Training loss (running mean over 1/50 of the run) and validation Dice per run, one colour per "
                  "seed; the dashed line is the selected iteration.",
        "cases": f"Per test case: the class mean of Dice and HD95, averaged over seeds, per method and label budget "
                 f"(box: quartiles, whiskers 1.5 IQR; dots: cases). {test}",
        "budget": "Overall Dice and HD95 against the label budget: mean over seeds with std bars, each seed a dot.",
        "classes": "Dice per class and overall: mean over seeds with std bars; tail classes shaded.",
    }
    for budget in bench["labels"]:
        text[f"overlays_l{budget}"] = (
            f"{budget} labelled: the best, median and worst test case of {bench['reference']} (per-case class-mean "
            f"Dice averaged over seeds), on the slice with the most reference foreground; image, reference and each "
            f"method's prediction of seed {bench['seeds'][0]} with its Dice.")
    return {name: f"{bench['name']}: {t} {context}" for name, t in text.items()}
