# The resume state lives in {run}/.resume/ (undeclared), so a rerun after pre-emption continues from it.
rule train:
    input:
        unpack(prepared_files),
        unpack(warm_start_input),
    output:
        model="results/{bench}/{method}/l{labels}/seed{seed}/model.pt",
        log_csv="results/{bench}/{method}/l{labels}/seed{seed}/train_log.csv",
        provenance="results/{bench}/{method}/l{labels}/seed{seed}/provenance.json",
    params:
        prepared=prepared_dir,
        run="results/{bench}/{method}/l{labels}/seed{seed}",
        spec=run_spec,
        init=init_flag,
    conda:
        "../../envs/sslseg.yaml"
    log:
        "logs/train/{bench}/{method}_l{labels}_seed{seed}.log",
    benchmark:
        "logs/benchmarks/train/{bench}/{method}_l{labels}_seed{seed}.tsv"
    threads: 1
    resources:
        gpu=1,
    shell:
        "SSLSEG_THREADS={threads} sslseg train --spec {params.spec:q} --prepared {params.prepared} --out {params.run} {params.init} > {log} 2>&1"
