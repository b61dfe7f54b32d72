"""Our PPO step vs trl's GRPO with matched work, and the memory of a PPO step vs a plain LoRA SFT step, on ShapeWorld.

    python benchmarks/bench_peer.py [--pretrained /tmp/fisao_nb_verifier_models] [--quick] [--reps 3] [--batch 16]
                                    [--minibatch 8] [--length 24]

(1) Time. One `FiSAOTrainer.rollout_step` (rollout_batch completions, 4 PPO epochs over minibatches) against the trl
GRPO work it matches (`fisao.baselines.grpo_config`: generation_batch_size = rollout_batch completions, num_iterations
4, per_device_train_batch_size = minibatch, i.e. batch/minibatch x 4 optimizer steps), same tiny model, same reward
(the verifier, sentence-level for GRPO), same max_new_tokens with EOS suppressed in both, so every completion has
exactly that length. Measured alternately in one process: trl's `train()` runs and a callback runs one of our PPO steps
at every generation boundary, outside trl's timed window. The first step of each is a warm-up and is dropped; medians
are printed with the ratio ours / trl (goal <= 1.0).
(2) Memory. Peak RSS of a process that runs PPO steps vs one that runs plain LoRA SFT steps (cross-entropy on
`minibatch` prompt + caption rows) on the same model, each in its own subprocess (`--rss ppo|sft`), so neither inherits
the other's allocations; ratio PPO / SFT (goal <= 1.5). Run single-threaded: OMP_NUM_THREADS=1 MKL_NUM_THREADS=1."""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; the whole process, imports included


def _status_mb(key) -> float:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'): return int(line.split()[1]) / 1024
    return float('nan')


def reset_hwm() -> float:
    "Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0) and return the current RSS in MB."
    try: Path('/proc/self/clear_refs').write_text('5')
    except OSError: pass
    return _status_mb('VmRSS')


def ensure_models(pretrained, quick):
    from fisao.workspace import shapeworld_models
    shapeworld_models(pretrained, quick, progress=False)


def ppo_trainer(args, out, calibration=''):
    from fisao.trainconfig import load_config
    from fisao.trainer import FiSAOTrainer
    flags = ['--model.pretrained', args.pretrained, '--out', str(out), '--no-log.progress', '--log.report-to', 'none',
             '--eval.images', '10', '--optim.lr', '1e-5', '--rollout.batch', str(args.batch),
             '--ppo.minibatch-size', str(args.minibatch), '--ppo.epochs', '4',
             '--rollout.max-new-tokens', str(args.length), '--device', 'cpu', '--ppo.ent-coef', '0'] + \
        (['--model.quick'] if args.quick else []) + (['--verifier.calibration', calibration] if calibration else [])
    tr = FiSAOTrainer(load_config(None, flags))
    tr.suppress = list(tr.suppress) + [tr.tok.eos_token_id]  # every response runs to max_new_tokens
    return tr


def bench_time(args):
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from fisao.baselines import VerifierReward, _drop_printer, _quiet, grpo_config, grpo_dataset, setup_baseline
    from fisao.models import lora_config, suppress_token_ids
    from fisao.trainconfig import config_from_flat
    tmp = Path(tempfile.mkdtemp())
    G = args.generations
    cfg = config_from_flat({'out': str(tmp / 'grpo'), 'model.pretrained': args.pretrained, 'model.quick': args.quick,
                            'steps': args.reps + 1, 'rollout.batch': args.batch, 'ppo.minibatch_size': args.minibatch,
                            'ppo.epochs': 4, 'rollout.max_new_tokens': args.length, 'optim.lr': 1e-5,
                            'log.progress': False, 'log.report_to': 'none', 'device': 'cpu'})
    setup = setup_baseline(cfg)
    tr = ppo_trainer(args, tmp / 'ppo', calibration=str(tmp / 'grpo' / 'calibration.json'))
    gargs = grpo_config(cfg, G, beta=cfg.kl.coef)
    gargs.generation_kwargs = {'suppress_tokens': suppress_token_ids(setup.processor)
                               + [setup.processor.tokenizer.eos_token_id]}
    per_gen = args.batch // args.minibatch * 4  # trl optimizer steps per generation = one PPO step
    ours, trl_t, state = [], [], {'t0': None, 'step': 0}

    class Alternate(TrainerCallback):
        """At each trl generation boundary: close trl's timed window, run one PPO step of ours (timed), reopen the
        window."""
        def on_step_begin(self, a, st, control, **kw):
            if st.global_step % per_gen: return
            if state['t0'] is not None: trl_t.append(time.perf_counter() - state['t0'])
            t = time.perf_counter(); tr.rollout_step(state['step']); ours.append(time.perf_counter() - t)
            state['step'] += 1
            state['t0'] = time.perf_counter()

        def on_train_end(self, a, st, control, **kw):
            trl_t.append(time.perf_counter() - state['t0'])

    with _quiet():
        trainer = GRPOTrainer(model=setup.model, reward_funcs=VerifierReward(setup.rewarder, setup.processor.tokenizer),
                              args=gargs, train_dataset=grpo_dataset(setup, cfg.steps * args.batch // G),
                              processing_class=setup.processor,
                              peft_config=lora_config(setup.kind, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout),
                              callbacks=[Alternate()])
        _drop_printer(trainer, False)
        trainer.train()
    ours, trl_t = ours[1:], trl_t[1:]                                     # drop the warm-ups
    o, t = statistics.median(ours), statistics.median(trl_t)
    return {'calibration': str(tmp / 'grpo' / 'calibration.json'), 'ours_s': ours, 'trl_s': trl_t, 'ours_median_s': o,
            'trl_median_s': t, 'ratio': o / t,
            'work': {'completions': args.batch, 'max_new_tokens': args.length, 'minibatch': args.minibatch,
                     'epochs_iterations': 4, 'optimizer_steps': per_gen, 'num_generations': G, 'eos': 'suppressed'}}


def rss_child(args):
    "Run in a subprocess: two PPO steps or two LoRA SFT steps; print the peak RSS."
    torch.set_num_threads(1)
    if args.rss == 'ppo':
        out = Path(tempfile.mkdtemp())
        tr = ppo_trainer(args, out, calibration=args.calibration)
        loaded = reset_hwm()
        for s in range(2): tr.rollout_step(s)
    else:
        from peft import get_peft_model

        from fisao.core import read_json
        from fisao.models import build_inputs, format_prompt, load_vlm, lora_config
        from fisao.shapeworld import world_paths
        from fisao.trainer import PromptSet
        root = Path(args.pretrained)
        model, processor, kind = load_vlm(root / 'llava')
        model = get_peft_model(model, lora_config(kind, 32, 64, 0.0))     # TrainConfig's LoRA
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        caps = read_json(world_paths(root / 'world', 'train')['captions'])['annotations']
        ps = PromptSet.shapeworld(root / 'world', 'train', 'Describe the image.')
        loaded = reset_hwm()
        model.train()
        for s in range(2):
            rows = list(range(s * args.minibatch, (s + 1) * args.minibatch))
            images, ids, instr = ps.batch(rows)
            by_id = {c['image_id']: c['caption'] for c in caps}
            texts = [format_prompt(kind, i, processor) + ' ' + by_id[j] for i, j in zip(instr, ids)]
            batch = processor(images=images, text=texts, return_tensors='pt', padding='max_length', truncation=False,
                              max_length=build_inputs(processor, kind, images[:1], instr[:1])['input_ids'].shape[1]
                              + args.length)
            labels = batch['input_ids'].masked_fill(batch['attention_mask'] == 0, -100)  # (B, P + T)
            loss = model(**batch, labels=labels).loss
            loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    print(json.dumps({'mode': args.rss, 'peak_rss_mb': _status_mb('VmHWM'), 'after_load_mb': loaded,
                      'process_peak_mb': peak_rss_mb()}))


def bench_rss(args, calibration):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    res = {}
    for mode in ('sft', 'ppo'):
        cmd = [sys.executable, __file__, '--rss', mode, '--pretrained', args.pretrained, '--batch', str(args.batch),
               '--minibatch', str(args.minibatch), '--length', str(args.length), '--calibration', calibration] + \
            (['--quick'] if args.quick else [])
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        res[mode] = json.loads(p.stdout.strip().splitlines()[-1])
    res['ratio'] = res['ppo']['peak_rss_mb'] / res['sft']['peak_rss_mb']
    res['ratio_above_load'] = ((res['ppo']['peak_rss_mb'] - res['ppo']['after_load_mb'])
                               / max(1e-9, res['sft']['peak_rss_mb'] - res['sft']['after_load_mb']))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pretrained', default=str(Path(tempfile.gettempdir()) / 'fisao_nb_verifier_models'))
    ap.add_argument('--quick', action='store_true', default=True,
                    help='the quick tiny models (default; the cache notebooks use)')
    ap.add_argument('--full', dest='quick', action='store_false', help='the ShapeWorld preset models')
    ap.add_argument('--reps', type=int, default=3,
                    help='timed PPO steps / GRPO generation cycles each (after one warm-up)')
    ap.add_argument('--batch', type=int, default=16,
                    help='completions per step (rollout_batch = generation_batch_size)')
    ap.add_argument('--minibatch', type=int, default=8)
    ap.add_argument('--length', type=int, default=24,
                    help='max_new_tokens (EOS suppressed: every completion has this length)')
    ap.add_argument('--generations', type=int, default=4, help='GRPO num_generations')
    ap.add_argument('--rss', choices=('ppo', 'sft'), default=None, help=argparse.SUPPRESS)
    ap.add_argument('--calibration', default='', help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.rss: return rss_child(args)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error(); hf_logging.disable_progress_bar()
    import warnings
    warnings.filterwarnings('ignore', category=FutureWarning)
    ensure_models(args.pretrained, args.quick)  # holds the cache's lock while it builds or checks
    t = bench_time(args)
    print(f"time per optimisation step ({t['work']['completions']} completions x {args.length} tokens, "
          f"4 epochs/iterations of minibatch {args.minibatch}, "
          f"{t['work']['optimizer_steps']} optimizer steps; {args.reps} reps after a warm-up, alternated):")
    print(f"  ours (FiSAOTrainer.rollout_step): median {t['ours_median_s']:.3f}s  {[round(x, 3) for x in t['ours_s']]}")
    print(f"  trl GRPOTrainer (G={args.generations}):      median {t['trl_median_s']:.3f}s  "
          f"{[round(x, 3) for x in t['trl_s']]}")
    print(f"  ratio ours / trl = {t['ratio']:.2f}x  (goal <= 1.0)")
    r = bench_rss(args, t['calibration'])  # the same calibration: no recalibration inside the measured PPO process
    print(f"peak RSS during the steps (VmHWM reset after loading), separate processes: "
          f"PPO step {r['ppo']['peak_rss_mb']:.0f} MB (RSS after load {r['ppo']['after_load_mb']:.0f}, "
          f"process peak incl. imports {r['ppo']['process_peak_mb']:.0f}), "
          f"LoRA SFT step {r['sft']['peak_rss_mb']:.0f} MB (after load {r['sft']['after_load_mb']:.0f}, "
          f"process peak {r['sft']['process_peak_mb']:.0f})")
    print(f"  ratio PPO / SFT = {r['ratio']:.2f}x  (goal <= 1.5); "
          f"growth above the loaded models: {r['ratio_above_load']:.2f}x")
    print(json.dumps({'threads': torch.get_num_threads(), 'quick': args.quick, 'time': t, 'rss': r}))


if __name__ == '__main__':
    main()
