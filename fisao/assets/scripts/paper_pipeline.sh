# shellcheck shell=bash
# The FiSAO paper pipeline on 4×A100, shared by paper_llava15_7b.sh and paper_instructblip_13b.sh (this folder)
# (they set PRESET, MODEL_NAME, CLIP_NAME, MODEL_WHAT, CLIP_WHAT, then source this file). Not run on its own.
#
# Stages (each skipped when its output exists, so rerunning the script resumes it):
#   0. layout   check the models and data below; print every missing path and stop (a dry run reports and goes on)
#   1. calibrate  b_c, b_h of the verifier on the base policy's captions of 5,000 COCO train2014 images (one GPU), sampled
#                 like the rollouts (the config's rollout section), labelled like CHAIR: instances_train2014, with
#                 captions_train2014 when present
#   2. train      FiSAO PPO on the first 8k LLaVA-Instruct-150k prompts, 1 epoch (accelerate, NPROC GPUs; --resume)
#   3. eval       CHAIR (500 val2014 images, 64 and 512 tokens), POPE (3 splits), captions, the benchmarks present;
#                 the trained run (--run) and the base model (--model), each sharded over NPROC GPUs
#   4. report     fisao report RUN; then a base-vs-FiSAO table of every eval file (paper_compare.py, this folder)

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DRY_RUN=${DRY_RUN:-0}
for arg in "$@"; do
  case $arg in
    --dry-run|-n) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "$(basename "$0"): unknown argument $arg (options: --dry-run, --help; settings are environment variables)" >&2; exit 2 ;;
  esac
done
[[ $DRY_RUN == 0 || $DRY_RUN == 1 ]] || { echo "DRY_RUN must be 0 or 1, got $DRY_RUN" >&2; exit 2; }

# ---- settings (environment variables, with defaults)
DATA=${DATA:-data}
MODELS=${MODELS:-models}
RUN=${RUN:-runs/paper_$PRESET}
NPROC=${NPROC:-4}
MODEL=${MODEL:-$MODELS/$MODEL_NAME}
CLIP=${CLIP:-$MODELS/$CLIP_NAME}
COCO=${COCO:-$DATA/coco}
LLAVA_INSTRUCT=${LLAVA_INSTRUCT:-$DATA/llava_instruct_150k.json}
POPE_DIR=${POPE_DIR:-$DATA/pope}
BENCH=${BENCH:-$DATA/benchmarks}
CAL_IMAGES=${CAL_IMAGES:-5000}
EVAL_IMAGES=${EVAL_IMAGES:-500}
CONFIG=${CONFIG:-$ROOT/configs/$PRESET.yaml}
if (( NPROC > 1 )); then ACCEL_CONFIG=${ACCEL_CONFIG:-$ROOT/configs/accelerate/4xa100.yaml}; else ACCEL_CONFIG=${ACCEL_CONFIG:-$ROOT/configs/accelerate/1gpu.yaml}; fi
FISAO=${FISAO:-fisao}
ACCELERATE=${ACCELERATE:-accelerate}
PYTHON=${PYTHON:-python3}
read -r -a CAL_EXTRA <<< "${CAL_ARGS:-}"
read -r -a TRAIN_EXTRA <<< "${TRAIN_ARGS:-}"
read -r -a EVAL_EXTRA <<< "${EVAL_ARGS:-}"

INST_TRAIN=$COCO/annotations/instances_train2014.json
CAPS_TRAIN=$COCO/annotations/captions_train2014.json
INST_VAL=$COCO/annotations/instances_val2014.json
CAPS_VAL=$COCO/annotations/captions_val2014.json
INST_TRAIN2017=$COCO/annotations/instances_train2017.json
POPE_SPLITS=(random popular adversarial)
# benchmark -> its local copy under $BENCH (layouts: nbs/eval_protocols.md §5); MM-Vet is left out (it needs a GPT-4 judge)
BENCH_NAMES=(mme seed mmbench sqa gqa)
declare -A BENCH_DIR=([mme]=MME_Benchmark_release_version [seed]=SEED-Bench [mmbench]=mmbench [sqa]=scienceqa [gqa]=gqa)
declare -A BENCH_WHAT=([mme]='MME: <subtask>/ folders' [seed]='SEED-Bench.json + SEED-Bench-image/'
                       [mmbench]='one MMBench dev TSV' [sqa]='ScienceQA problems.json, pid_splits.json, images/test/'
                       [gqa]='testdev_balanced_questions.json + images/')

say() { printf '%s\n' "$*"; }
# run CMD...: print the command (shell-quoted), then run it unless this is a dry run
run() { printf '+'; printf ' %q' "$@"; printf '\n'; [[ $DRY_RUN == 1 ]] || "$@"; }
# stage NAME OUTPUT: 0 = run the stage; 1 = skip it (OUTPUT exists)
stage() {
  if [[ -e $2 ]]; then say "== [$1] skipped: $2 exists"; return 1; fi
  say "== [$1] → $2"
}

say "FiSAO paper pipeline: $PRESET$([[ $DRY_RUN == 1 ]] && printf ' (dry run: commands are printed, nothing runs)')"
say "  DATA=$DATA MODELS=$MODELS RUN=$RUN NPROC=$NPROC"
say "  config $CONFIG; accelerate $ACCEL_CONFIG"

# ---- 0. layout
missing=()
need() {  # need KIND PATH WHAT: a required file or dir
  if { [[ $1 == dir ]] && [[ -d $2 ]]; } || { [[ $1 == file ]] && [[ -f $2 ]]; }; then say "  ok        $2"
  else say "  MISSING   $2   ($3)"; missing+=("$2"); fi
}
optional() {  # optional KIND PATH WHAT IF-ABSENT
  if { [[ $1 == dir ]] && [[ -d $2 ]]; } || { [[ $1 == file ]] && [[ -f $2 ]]; }; then say "  ok        $2"
  else say "  absent    $2   ($3; optional: $4)"; fi
}
say "== [layout] checking the models and data"
need file "$MODEL/config.json" "$MODEL_WHAT"
need file "$CLIP/config.json" "$CLIP_WHAT"
need file "$CONFIG" "the training config (fisao.presets.write_preset('$PRESET'))"
need file "$ACCEL_CONFIG" "the accelerate config"
need file "$LLAVA_INSTRUCT" "LLaVA-Instruct-150k: llava_instruct_150k.json of liuhaotian/LLaVA-Instruct-150K"
need dir "$COCO/train2017" "COCO train2017 images: the images of the LLaVA-Instruct prompts"
need dir "$COCO/train2014" "COCO train2014 images: calibration"
need file "$INST_TRAIN" "COCO 2014 annotations: calibration ground truth"
optional file "$CAPS_TRAIN" "COCO 2014 annotations: calibration ground truth joins its reference captions, as CHAIR's" "else calibration labels against instances_train2014 only"
need dir "$COCO/val2014" "COCO val2014 images: CHAIR, POPE, captions"
need file "$INST_VAL" "COCO 2014 annotations: CHAIR and POPE ground truth"
need file "$CAPS_VAL" "COCO 2014 annotations: CHAIR ground truth, caption references"
optional file "$INST_TRAIN2017" "COCO 2017 annotations" "ground truth of the prompt images: rollout CHAIR in metrics.jsonl"
for s in "${POPE_SPLITS[@]}"; do
  optional file "$POPE_DIR/coco_pope_$s.json" "official POPE questions" "else fisao builds them from instances_val2014 (seed 0)"
done
for b in "${BENCH_NAMES[@]}"; do
  optional dir "$BENCH/${BENCH_DIR[$b]}" "${BENCH_WHAT[$b]}" "fisao eval $b is skipped"
done
if [[ $DRY_RUN == 0 ]]; then
  for c in "$FISAO" "$ACCELERATE" "$PYTHON"; do
    command -v "$c" > /dev/null || { say "  MISSING   command $c   (activate the venv: . .venv/bin/activate)"; missing+=("command $c"); }
  done
fi
if (( ${#missing[@]} )); then
  say "missing ${#missing[@]} required path(s):"
  printf '  %s\n' "${missing[@]}"
  if [[ $DRY_RUN == 0 ]]; then say "nothing was run. Put them in place (or point DATA, MODELS, MODEL, CLIP, COCO, LLAVA_INSTRUCT at them) and rerun."; exit 2; fi
  say "(dry run: going on)"
fi
[[ $DRY_RUN == 1 ]] || mkdir -p "$RUN"

# ---- 1. calibrate (one process: fisao calibrate is not sharded)
if stage calibrate "$RUN/calibration.json"; then
  CAL_LABELS=(); [[ -f $CAPS_TRAIN ]] && CAL_LABELS=(--captions "$CAPS_TRAIN")  # CHAIR's ground truth: instances ∪ captions
  # --config: the captions are decoded like the rollouts of the run (rollout.max_new_tokens, temperature, top_p)
  run "$FISAO" calibrate --model "$MODEL" --clip "$CLIP" --instances "$INST_TRAIN" "${CAL_LABELS[@]}" --images "$COCO/train2014" \
      --n-images "$CAL_IMAGES" --seed 0 --config "$CONFIG" --dtype bf16 --device cuda:0 --out "$RUN/calibration.json" "${CAL_EXTRA[@]}"
fi

# ---- 2. train
# one epoch over n_prompts at rollout_batch prompts per process and NPROC processes (125 steps on 4 GPUs)
cfg_value() { awk -F'[: ]+' -v k="$1" '{sub(/^ +/, "")} $1 == k {print $2; exit}' "$CONFIG" 2> /dev/null || true; }  # a leaf of the nested YAML
N_PROMPTS=$(cfg_value n_prompts); ROLLOUT_BATCH=$(cfg_value batch)
for (( i = 0; i + 1 < ${#TRAIN_EXTRA[@]}; i++ )); do  # TRAIN_ARGS may change them (a later --steps there still wins)
  case ${TRAIN_EXTRA[i]} in
    --data.n-prompts|--data.n_prompts) N_PROMPTS=${TRAIN_EXTRA[i+1]} ;;
    --rollout.batch) ROLLOUT_BATCH=${TRAIN_EXTRA[i+1]} ;;
  esac
done
STEPS=$(( ${N_PROMPTS:-8000} / (${ROLLOUT_BATCH:-16} * NPROC) )); (( STEPS >= 1 )) || STEPS=1
TRAIN_FLAGS=(--config "$CONFIG" --out "$RUN" --verifier.calibration "$RUN/calibration.json" --model.path "$MODEL" --model.clip "$CLIP"
             --data.prompts "$LLAVA_INSTRUCT" --data.image-dir "$COCO/train2017" --eval.instances "$INST_VAL"
             --eval.image-dir "$COCO/val2014" --steps "$STEPS")
[[ -f $INST_TRAIN2017 ]] && TRAIN_FLAGS+=(--data.instances "$INST_TRAIN2017")
TRAIN_FLAGS+=("${TRAIN_EXTRA[@]}")
LAUNCH=("$ACCELERATE" launch --config_file "$ACCEL_CONFIG" --num_processes "$NPROC" -m fisao)
if stage train "$RUN/summary.json"; then
  say "resolved config (the YAML with the flags on top; saved as $RUN/config.yaml by the run):"
  # harmless in a dry run too: it only reads the YAML
  printf '+'; printf ' %q' "$FISAO" train "${TRAIN_FLAGS[@]}" --print-config; printf '\n'
  "$FISAO" train "${TRAIN_FLAGS[@]}" --print-config | sed 's/^/    /' || { [[ $DRY_RUN == 1 ]] && say "    (could not resolve the config: is fisao installed?)" || exit 1; }
  say "prompts (the images of the evaluation files, by default $INST_VAL, are kept out of them):"
  printf '+'; printf ' %q' "$FISAO" train "${TRAIN_FLAGS[@]}" --check-prompts; printf '\n'
  "$FISAO" train "${TRAIN_FLAGS[@]}" --check-prompts | sed 's/^/    /' || { [[ $DRY_RUN == 1 ]] && say "    (could not read the prompts)" || exit 1; }
  run "${LAUNCH[@]}" train "${TRAIN_FLAGS[@]}" --resume
fi

# ---- 3. eval: the trained run and the base model, the same commands
pope_official=1
for s in "${POPE_SPLITS[@]}"; do [[ -f $POPE_DIR/coco_pope_$s.json ]] || pope_official=0; done
for target in fisao base; do
  if [[ $target == fisao ]]; then SRC=(--run "$RUN"); else SRC=(--model "$MODEL"); fi
  OUT=$RUN/eval/$target
  EV=("${SRC[@]}" --dtype bf16 "${EVAL_EXTRA[@]}")
  if stage "eval chair, $target" "$OUT/chair.json"; then
    run "${LAUNCH[@]}" eval chair "${EV[@]}" --instances "$INST_VAL" --captions "$CAPS_VAL" --images "$COCO/val2014" \
        --n-images "$EVAL_IMAGES" --seed 0 --max-new-tokens 64 512 --out "$OUT/chair.json"
  fi
  if [[ $pope_official == 1 ]]; then
    for s in "${POPE_SPLITS[@]}"; do
      if stage "eval pope $s (official questions), $target" "$OUT/pope_$s.json"; then
        run "${LAUNCH[@]}" eval pope "${EV[@]}" --questions "$POPE_DIR/coco_pope_$s.json" --images "$COCO/val2014" --out "$OUT/pope_$s.json"
      fi
    done
  elif stage "eval pope (built from instances_val2014), $target" "$OUT/pope.json"; then
    run "${LAUNCH[@]}" eval pope "${EV[@]}" --instances "$INST_VAL" --images "$COCO/val2014" --pope-splits "${POPE_SPLITS[@]}" \
        --n-images "$EVAL_IMAGES" --seed 0 --out "$OUT/pope.json"
  fi
  if stage "eval captions, $target" "$OUT/captions.json"; then
    run "${LAUNCH[@]}" eval captions "${EV[@]}" --captions "$CAPS_VAL" --images "$COCO/val2014" --n-images "$EVAL_IMAGES" --seed 0 \
        --out "$OUT/captions.json"
  fi
  for b in "${BENCH_NAMES[@]}"; do
    if [[ ! -d $BENCH/${BENCH_DIR[$b]} ]]; then say "== [eval $b, $target] skipped: no $BENCH/${BENCH_DIR[$b]}"; continue; fi
    if stage "eval $b, $target" "$OUT/$b.json"; then
      run "${LAUNCH[@]}" eval "$b" "${EV[@]}" --data "$BENCH/${BENCH_DIR[$b]}" --out "$OUT/$b.json"
    fi
  done
done

# ---- 4. report
if stage report "$RUN/report.html"; then
  run "$FISAO" report "$RUN"
fi
say "== [compare] base vs FiSAO (always rerun: it only reads the eval files)"
run "$PYTHON" "$ROOT/scripts/paper_compare.py" "$RUN/eval" --out "$RUN/eval/comparison.json"
say "done$([[ $DRY_RUN == 1 ]] && printf ' (dry run)'): $RUN"
