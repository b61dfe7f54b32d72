"""PPO step time on ShapeWorld: the phase split of the preset, and step time vs batch size and response length.

    python benchmarks/bench_ppo.py [--pretrained runs/pretrain] [--quick] [--steps 3]

All settings are measured in one process, one after another, with the same models: (1) the ShapeWorld preset as trained
(responses end at EOS): median time per phase — generate / reward / score (old + reference log-probs and values) /
update — and the reward share of the step; (2) batch sizes 16/32/64 at a fixed response length and lengths 16/32/64
at a fixed batch, EOS suppressed so every response has exactly the set length: the step time should grow about
linearly. Times are medians over --steps steps after one warm-up step."""
import argparse
import json
import statistics
import tempfile

import torch

from fisao.trainconfig import load_config
from fisao.trainer import FiSAOTrainer

PHASES = ('time/generate', 'time/reward', 'time/score', 'time/update', 'time/step')


def measure(tr, steps, start):
    rows = [tr.rollout_step(start + k) for k in range(steps + 1)][1:]  # the first step warms up
    return {k: statistics.median(r[k] for r in rows) for k in PHASES}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pretrained', default='runs/pretrain')
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--steps', type=int, default=3)
    ap.add_argument('--sizes', default='16,32,64')
    ap.add_argument('--lengths', default='16,32,64')
    ap.add_argument('--fixed-length', type=int, default=32)
    ap.add_argument('--fixed-batch', type=int, default=32)
    args = ap.parse_args()
    out = tempfile.mkdtemp()
    flags = ['--model.pretrained', args.pretrained, '--out', out, '--no-log.progress', '--log.report-to', 'none',
             '--eval.images', '10', '--optim.lr', '1e-5'] + (['--model.quick'] if args.quick else [])
    tr = FiSAOTrainer(load_config(None, flags))
    res, step = {'threads': torch.get_num_threads(), 'quick': args.quick}, 0
    res['preset'] = measure(tr, args.steps, step); step += args.steps + 1
    p = res['preset']
    print(f"preset (batch {tr.cfg.rollout.batch}, responses end at EOS, ≤ {tr.cfg.rollout.max_new_tokens} tokens): " +
          ', '.join(f"{k.split('/')[1]} {p[k]:.3f}s" for k in PHASES) +
          f"; reward = {p['time/reward'] / p['time/step']:.1%} of the step")
    eos = tr.tok.eos_token_id
    base_suppress = list(tr.suppress)
    tr.suppress = base_suppress + [eos]  # every response runs to max_new_tokens
    for name, values, fixed in (('batch', args.sizes, args.fixed_length), ('length', args.lengths, args.fixed_batch)):
        res[name] = {}
        for v in map(int, values.split(',')):
            tr.cfg.rollout.batch, tr.cfg.rollout.max_new_tokens = (v, fixed) if name == 'batch' else (fixed, v)
            tr.cfg.ppo.minibatch_size = tr.cfg.rollout.batch // 2
            res[name][v] = measure(tr, args.steps, step); step += args.steps + 1
        vs = sorted(res[name])
        t0 = res[name][vs[0]]['time/step']
        print(f"{name} sweep ({'length ' + str(fixed) if name == 'batch' else 'batch ' + str(fixed)}): " +
              ', '.join(f"{v}: {res[name][v]['time/step']:.2f}s "
                        f"(×{res[name][v]['time/step'] / t0:.2f}, ideal ×{v / vs[0]:.0f})" for v in vs))
    print(json.dumps(res))


if __name__ == '__main__':
    main()
