rule evaluate:
    input:
        unpack(prepared_files),
        pred="results/{bench}/{method}/l{labels}/seed{seed}/pred",
    output:
        "results/{bench}/{method}/l{labels}/seed{seed}/metrics.csv",
    params:
        prepared=prepared_dir,
        flags=evaluate_flags,
    conda:
        "../../envs/sslseg.yaml"
    log:
        "logs/evaluate/{bench}/{method}_l{labels}_seed{seed}.log",
    benchmark:
        "logs/benchmarks/evaluate/{bench}/{method}_l{labels}_seed{seed}.tsv"
    shell:
        "sslseg evaluate --pred {input.pred} --prepared {params.prepared} --out {output} {params.flags} > {log} 2>&1"
