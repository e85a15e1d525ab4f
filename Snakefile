# sslseg workflow: download -> preprocess -> train -> infer -> evaluate -> aggregate -> figures.
# `snakemake --cores 2` builds the tables and figures of config["targets"]; `results/{bench}/summary.txt` (tables)
# and `results/{bench}/figures` run one benchmark; `snakemake --report report.html` gathers them in one page.
from snakemake.utils import min_version

min_version("9.1")


# config.yaml, unless --configfile names another: that file is then the whole configuration (not merged into
# config.yaml, which may describe other benchmarks); --config key=value overrides apply on top of either.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"



report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    input:
        final_targets(),
    default_target: True
