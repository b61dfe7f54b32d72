#!/usr/bin/env bash
# FiSAO on LLaVA-1.5-7B, the paper's whole pipeline on 4×A100: layout check, calibration (5,000 COCO train2014 images),
# PPO on the first 8k LLaVA-Instruct-150k prompts (fisao preset llava15_7b), evaluation of the trained run and of the base
# model (CHAIR at 64/512 tokens on 500 val2014 images, POPE x3, captions, MME/SEED/MMBench/SQA/GQA where present), report.
#
#   bash "$(fisao preset paper_llava15_7b.sh --path)" --dry-run     # print every command and the resolved config; run nothing
#   bash "$(fisao preset paper_llava15_7b.sh --path)"               # run it (rerun to resume: finished stages are skipped, training uses --resume)
#
# Settings are environment variables (defaults in brackets):
#   DATA [data]  MODELS [models]  RUN [runs/paper_llava15_7b]  NPROC [4]  DRY_RUN [0]
#   MODEL [$MODELS/llava-1.5-7b-hf]  CLIP [$MODELS/clip-vit-large-patch14-336]  COCO [$DATA/coco]
#   LLAVA_INSTRUCT [$DATA/llava_instruct_150k.json]  POPE_DIR [$DATA/pope]  BENCH [$DATA/benchmarks]
#   CAL_IMAGES [5000]  EVAL_IMAGES [500]  CONFIG [the shipped llava15_7b.yaml]  ACCEL_CONFIG [the shipped accelerate/4xa100.yaml]
#   CAL_ARGS, TRAIN_ARGS, EVAL_ARGS: extra flags of fisao calibrate / train / each eval (e.g. TRAIN_ARGS="--reward.source oracle")
#   FISAO [fisao]  ACCELERATE [accelerate]  PYTHON [python3]: the commands
#
# Expected layout (README, "Paper run (4×A100)"):
#   $MODELS/llava-1.5-7b-hf/               llava-hf/llava-1.5-7b-hf (Hugging Face format)
#   $MODELS/clip-vit-large-patch14-336/    openai/clip-vit-large-patch14-336 (the verifier's text tower)
#   $DATA/llava_instruct_150k.json         LLaVA-Instruct-150K
#   $DATA/coco/{train2017,train2014,val2014}/ and $DATA/coco/annotations/{instances_train2014,instances_val2014,captions_val2014}.json
#   optional: $DATA/coco/annotations/instances_train2017.json, $DATA/pope/coco_pope_{random,popular,adversarial}.json,
#             $DATA/benchmarks/{MME_Benchmark_release_version,SEED-Bench,mmbench,scienceqa,gqa}/

PRESET=llava15_7b
MODEL_NAME=llava-1.5-7b-hf
CLIP_NAME=clip-vit-large-patch14-336
MODEL_WHAT='the policy: llava-hf/llava-1.5-7b-hf in Hugging Face format'
CLIP_WHAT="the verifier's text tower: openai/clip-vit-large-patch14-336, whose vision tower is LLaVA-1.5's"
source "$(dirname "${BASH_SOURCE[0]}")/paper_pipeline.sh"
