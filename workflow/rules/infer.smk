rule infer:
    input:
        unpack(prepared_files),
        model="results/{bench}/{method}/l{labels}/seed{seed}/model.pt",
    output:
        directory("results/{bench}/{method}/l{labels}/seed{seed}/pred"),
    params:
        prepared=prepared_dir,
        flags=infer_flags,
    conda:
        "../../envs/sslseg.yaml"
    log:
        "logs/infer/{bench}/{method}_l{labels}_seed{seed}.log",
    benchmark:
        "logs/benchmarks/infer/{bench}/{method}_l{labels}_seed{seed}.tsv"
    resources:
        gpu=1,
    shell:
        "sslseg infer --model {input.model} --prepared {params.prepared} --out {output} {params.flags} > {log} 2>&1"
