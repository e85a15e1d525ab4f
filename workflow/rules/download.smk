rule download:
    output:
        "resources/raw/{dataset}/download.json",
    params:
        cfg=CONFIGFILE,
        source=source_hash,
    conda:
        "../../envs/sslseg.yaml"
    log:
        "logs/download/{dataset}.log",
    benchmark:
        "logs/benchmarks/download/{dataset}.tsv"
    retries: 2
    shell:
        "sslseg download --dataset {wildcards.dataset} --config {params.cfg} --out resources/raw/{wildcards.dataset} > {log} 2>&1"
