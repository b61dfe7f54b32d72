#!/usr/bin/env bash
# FiSAO on InstructBLIP-Vicuna-13B, the paper's whole pipeline on 4×A100: layout check, calibration (5,000 COCO train2014
# images), PPO on the first 8k LLaVA-Instruct-150k prompts (fisao preset instructblip_13b: lr 4e-6), evaluation of the
# trained run and of the base model (CHAIR at 64/512 tokens on 500 val2014 images, POPE x3, captions,
# MME/SEED/MMBench/SQA/GQA where present), report.
#
#   bash "$(fisao preset paper_instructblip_13b.sh --path)" --dry-run   # print every command and the resolved config; run nothing
#   bash "$(fisao preset paper_instructblip_13b.sh --path)"             # run it (rerun to resume: finished stages are skipped, training uses --resume)
#
# The verifier is a separate CLIP ViT-L/14 (both towers): InstructBLIP's EVA-CLIP vision tower has no text tower
# (a documented choice, recorded in every result). Status: fisao calibrate, fisao train and the eval commands run on
# InstructBLIP (checked end to end on a tiny random InstructBLIP on CPU; not yet on the real 13B checkpoint).
#
# Settings are environment variables (defaults in brackets):
#   DATA [data]  MODELS [models]  RUN [runs/paper_instructblip_13b]  NPROC [4]  DRY_RUN [0]
#   MODEL [$MODELS/instructblip-vicuna-13b]  CLIP [$MODELS/clip-vit-large-patch14]  COCO [$DATA/coco]
#   LLAVA_INSTRUCT [$DATA/llava_instruct_150k.json]  POPE_DIR [$DATA/pope]  BENCH [$DATA/benchmarks]
#   CAL_IMAGES [5000]  EVAL_IMAGES [500]  CONFIG [the shipped instructblip_13b.yaml]  ACCEL_CONFIG [the shipped accelerate/4xa100.yaml]
#   CAL_ARGS, TRAIN_ARGS, EVAL_ARGS: extra flags of fisao calibrate / train / each eval
#   FISAO [fisao]  ACCELERATE [accelerate]  PYTHON [python3]: the commands
#
# Expected layout (README, "Paper run (4×A100)"):
#   $MODELS/instructblip-vicuna-13b/       Salesforce/instructblip-vicuna-13b (Hugging Face format)
#   $MODELS/clip-vit-large-patch14/        openai/clip-vit-large-patch14 (the verifier, both towers)
#   $DATA/llava_instruct_150k.json         LLaVA-Instruct-150K
#   $DATA/coco/{train2017,train2014,val2014}/ and $DATA/coco/annotations/{instances_train2014,instances_val2014,captions_val2014}.json
#   optional: $DATA/coco/annotations/instances_train2017.json, $DATA/pope/coco_pope_{random,popular,adversarial}.json,
#             $DATA/benchmarks/{MME_Benchmark_release_version,SEED-Bench,mmbench,scienceqa,gqa}/

PRESET=instructblip_13b
MODEL_NAME=instructblip-vicuna-13b
CLIP_NAME=clip-vit-large-patch14
MODEL_WHAT='the policy: Salesforce/instructblip-vicuna-13b in Hugging Face format'
CLIP_WHAT='the verifier: openai/clip-vit-large-patch14, both towers (EVA-CLIP has no text tower)'
source "$(dirname "${BASH_SOURCE[0]}")/paper_pipeline.sh"
