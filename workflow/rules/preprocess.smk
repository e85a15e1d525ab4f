rule preprocess:
    input:
        "resources/raw/{dataset}/download.json",
    output:
        cases="resources/prepared/{dataset}/cases.csv",
        meta="resources/prepared/{dataset}/dataset.json",
    params:
        format=FORMAT,
    conda:
        "../../envs/sslseg.yaml"
    log:
        "logs/preprocess/{dataset}.log",
    benchmark:
        "logs/benchmarks/preprocess/{dataset}.tsv"
    shell:
        "sslseg preprocess --dataset {wildcards.dataset} --raw resources/raw/{wildcards.dataset} --out resources/prepared/{wildcards.dataset} > {log} 2>&1"
