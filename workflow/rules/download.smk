rule download:
    output:
        "resources/raw/{dataset}/download.json",
    params:
        source=source_flags,
    conda:
        "../../envs/sslseg.yaml"
    log:
        "logs/download/{dataset}.log",
    benchmark:
        "logs/benchmarks/download/{dataset}.tsv"
    retries: 2
    shell:
        "sslseg download --dataset {wildcards.dataset} {params.source} --out resources/raw/{wildcards.dataset} > {log} 2>&1"
