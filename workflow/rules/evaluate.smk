rule evaluate:
    input:
        unpack(prepared_files),
        pred="results/{bench}/{method}/l{labels}/seed{seed}/pred",
    output:
        "results/{bench}/{method}/l{labels}/seed{seed}/metrics.csv",
    params:
        cfg=CONFIGFILE,
        prepared=prepared_dir,
        config_hash=bench_hash,
    conda:
        "../../envs/sslseg.yaml"
    log:
        "logs/evaluate/{bench}/{method}_l{labels}_seed{seed}.log",
    benchmark:
        "logs/benchmarks/evaluate/{bench}/{method}_l{labels}_seed{seed}.tsv"
    shell:
        "sslseg evaluate --config {params.cfg} --bench {wildcards.bench} --pred {input.pred} --prepared {params.prepared} --out {output} > {log} 2>&1"
