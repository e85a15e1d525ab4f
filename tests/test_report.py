"""Table wording: the budget header, singular budgets, the packages table.tex needs, and the note when the test
can never reach significance with so few test cases."""

import numpy as np
import pytest
from scipy.stats import wilcoxon

from sslseg.cli import main
from sslseg.report import wilcoxon_floor
from test_faults import _results


def test_wilcoxon_floor_is_the_exact_smallest_p():
    assert wilcoxon_floor(4, 1) == 0.125  # synth3d: 4 test cases
    assert wilcoxon_floor(6, 1) == 2 / 64 and wilcoxon_floor(6, 2) == 4 / 64
    assert wilcoxon_floor(2, 3) == 1.0
    for n in (4, 6, 8):  # all differences of one sign: the smallest p the exact test gives
        assert wilcoxon(np.arange(1, n + 1) * 0.1).pvalue == pytest.approx(wilcoxon_floor(n, 1))


def test_tables_read_cleanly_and_say_when_significance_is_impossible(tmp_path):
    args, results = _results(tmp_path)
    assert main(args) == 0
    md = (results / "table.md").read_text()
    assert md.startswith("| Method | Labelled patients | Dice (%) |")
    txt = (results / "summary.txt").read_text()
    assert "== supervised | 1 labelled patient | 1 seed(s) ==" in txt
    tex = (results / "table.tex").read_text()
    assert tex.splitlines()[0].startswith(r"% needs \usepackage{booktabs}")
    assert "Labelled patients" in tex.splitlines()[3]
    # 2 test cases, 1 comparison per metric: p >= 2 / 2^2 = 0.5
    note = "with 2 test cases and 1 comparison(s) per metric, the smallest Holm-corrected Wilcoxon p-value possible is 0.5"
    assert note in txt and note in md and note in tex


def test_the_workbook_is_formatted_for_reading(tmp_path):
    import openpyxl
    import pandas as pd

    args, results = _results(tmp_path)
    assert main(args) == 0
    wb = openpyxl.load_workbook(results / "tables.xlsx")
    assert wb.sheetnames == ["overall", "per_class", "per_seed", "pvalues", "wall_times", "protocol"]
    ws = wb["overall"]
    assert ws["A1"].value.startswith("b (synth2d): protocol ") and "Dice and Jaccard in %" in ws["A1"].value
    assert ws.freeze_panes == "A3"
    header = [c.value for c in ws[2]]
    dice = header.index("dice_mean (%)") + 1
    per_case = pd.read_csv(results / "per_case.csv")
    expected = per_case[per_case["method"] == "supervised"].groupby("class_name")["dice"].mean().mean() * 100
    assert ws.cell(row=3, column=dice).value == pytest.approx(expected)  # in %, not a fraction
    assert ws.cell(row=3, column=dice).number_format == "0.00"
    assert ws.column_dimensions[ws.cell(row=2, column=dice).column_letter].width >= len("dice_mean (%)")
    assert any(h.startswith("hd95_mean (") for h in header)
    p = [c.value for c in wb["pvalues"][2]].index("p_wilcoxon_holm") + 1
    assert wb["pvalues"].cell(row=3, column=p).number_format == "0.00E+00"


def _html_tables(page: str) -> list[list[list[str]]]:
    """The text of every table cell, table by table and row by row (the standard library's HTML parser)."""
    from html.parser import HTMLParser

    tables = []

    class Cells(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "table":
                tables.append([])
            elif tag == "tr":
                tables[-1].append([])
            elif tag in ("td", "th"):
                tables[-1][-1].append("")

        def handle_data(self, data):
            if tables and tables[-1] and tables[-1][-1]:
                tables[-1][-1][-1] += data

    Cells().feed(page)
    return tables


def test_the_html_tables_hold_every_view_with_the_numbers_of_the_workbook(tmp_path):
    import pandas as pd

    args, results = _results(tmp_path)
    assert main(args) == 0
    page = (results / "tables.html").read_text()
    tables = [pd.DataFrame(t[1:], columns=t[0]) for t in _html_tables(page)]  # overall, per class, tests, walls
    assert len(tables) == 4
    overall, per_class, tests, walls = tables
    assert list(overall.columns[:3]) == ["Method", "Labelled patients", "Dice (%)"]
    per_case = pd.read_csv(results / "per_case.csv")
    sup = per_case[per_case["method"] == "supervised"]
    expected = sup.groupby("class_name")["dice"].mean().mean() * 100
    assert overall.loc[overall["Method"] == "supervised", "Dice (%)"].iloc[0] == f"{expected:.2f}"  # one seed
    assert list(per_class.columns[2:]) == ["RV", "Myo", "LV", "tail", "overall"]
    rv = sup[sup["class_name"] == "RV"]["dice"].mean() * 100
    assert per_class.loc[per_class["Method"] == "supervised", "RV"].iloc[0] == f"{rv:.2f}"
    assert set(tests["Metric"]) == {"Dice (%)", "Jaccard (%)", "95HD", "ASD"} and set(walls["Method"]) == {
        "supervised", "mean_teacher"}
    assert "the smallest Holm-corrected Wilcoxon p-value possible is 0.5" in page  # the notes, too
