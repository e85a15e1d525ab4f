rule aggregate:
    input:
        unpack(prepared_files),
        runs=run_files,
    output:
        summary="results/{bench}/summary.txt",
        json="results/{bench}/summary.json",
        per_case="results/{bench}/per_case.csv",
        pvalues="results/{bench}/pvalues.csv",
        xlsx="results/{bench}/tables.xlsx",
        md="results/{bench}/table.md",
        tex="results/{bench}/table.tex",
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
