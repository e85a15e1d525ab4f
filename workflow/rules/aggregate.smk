rule aggregate:
    input:
        unpack(prepared_files),
        runs=run_files,
    output:
        summary="results/{bench}/summary.txt",
        json="results/{bench}/summary.json",
        per_case="results/{bench}/per_case.csv",
        pvalues="results/{bench}/pvalues.csv",
        xlsx=report("results/{bench}/tables.xlsx", caption="../report/workbook.rst", category="{bench}",
                    subcategory="Tables"),
        md="results/{bench}/table.md",
        tex=report("results/{bench}/table.tex", caption="../report/latex.rst", category="{bench}",
                   subcategory="Tables"),
        html=report("results/{bench}/tables.html", caption="../report/tables.rst", category="{bench}",
                    subcategory="Tables"),
        paper=directory("results/{bench}/paper"),
    params:
        prepared=prepared_dir,
        spec=report_spec,
    conda:
        "../../envs/sslseg.yaml"
    log:
        "logs/aggregate/{bench}.log",
    benchmark:
        "logs/benchmarks/aggregate/{bench}.tsv"
    shell:
        "sslseg aggregate --spec {params.spec:q} --results results/{wildcards.bench} --prepared {params.prepared} > {log} 2>&1"


# One caption per figure (sslseg.figures.captions: protocol, units, selection, test), shown by `snakemake --report`.
rule figures:
    input:
        unpack(prepared_files),
        per_case="results/{bench}/per_case.csv",
        summary="results/{bench}/summary.json",
        runs=figure_inputs,
    output:
        report(directory("results/{bench}/figures"), patterns=["{name}.png"], caption="../report/figure.rst",
               category="{bench}", subcategory="Figures"),
    params:
        prepared=prepared_dir,
        spec=report_spec,
        captions=figure_captions,
    conda:
        "../../envs/sslseg.yaml"
    log:
        "logs/figures/{bench}.log",
    benchmark:
        "logs/benchmarks/figures/{bench}.tsv"
    shell:
        "sslseg figures --spec {params.spec:q} --results results/{wildcards.bench} --prepared {params.prepared} --out {output} > {log} 2>&1"
