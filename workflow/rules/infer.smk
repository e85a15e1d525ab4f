rule infer:
    input:
        unpack(prepared_files),
        model="results/{bench}/{method}/l{labels}/seed{seed}/model.pt",
    output:
        directory("results/{bench}/{method}/l{labels}/seed{seed}/pred"),
    params:
        cfg=CONFIGFILE,
        prepared=prepared_dir,
        config_hash=bench_hash,
    conda:
        "../../envs/sslseg.yaml"
    log:
        "logs/infer/{bench}/{method}_l{labels}_seed{seed}.log",
    benchmark:
        "logs/benchmarks/infer/{bench}/{method}_l{labels}_seed{seed}.tsv"
    resources:
        gpu=1,
    shell:
        "sslseg infer --config {params.cfg} --bench {wildcards.bench} --model {input.model} --prepared {params.prepared} --out {output} > {log} 2>&1"
