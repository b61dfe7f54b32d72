"""Issue 17's selection runs: train one config on ShapeWorld, evaluate on `dev` (never `test`).
usage: OMP_NUM_THREADS=1 python benchmarks/issue17/train_dev.py NAME WORLD SEED [section.field=value ...]
→ runs/x/WORLD/NAME/seedSEED/ (a fisao train run directory + exp.json). Models: runs/pretrain (default world) or
runs/dense/pretrain; calibration: runs/x/WORLD_calibration.json (`fisao calibrate --pretrained ... --out ...`)."""
import json
import sys
import time
from pathlib import Path

import torch

from fisao.trainconfig import config_from_flat
from fisao.trainer import FiSAOTrainer, read_metrics

torch.set_num_threads(1)

name, world, seed, *kv = sys.argv[1:]
pre = {'default': 'runs/pretrain', 'dense': 'runs/dense/pretrain'}[world]
out = Path(f'runs/x/{world}/{name}/seed{seed}')
if (out / 'summary.json').exists():
    print('done', out)
    sys.exit()
kw = {'out': str(out), 'model.pretrained': pre, 'verifier.calibration': f'runs/x/{world}_calibration.json',
      'seed': int(seed), 'eval.split': 'dev', 'eval.images': 500,
      'eval.every': 40, 'log.save_every': 1000, 'log.samples_every': 0, 'log.report_to': 'none',
      'log.progress': False}
for a in kv:
    k, v = a.split('=', 1)
    try:
        v = json.loads(v)
    except ValueError:
        pass
    kw[k] = v
cfg = config_from_flat(kw)
t0 = time.time()
s = FiSAOTrainer(cfg).train()
rows = read_metrics(out / 'metrics.jsonl')
tr = [r for r in rows if 'objective/kl' in r]
last = tr[-10:]
res = {'name': name, 'world': world, 'seed': int(seed), 'kv': kv, 'before': s['before'], 'after': s['after'],
       'kl_last10': sum(r['objective/kl'] for r in last) / len(last), 'time': time.time() - t0,
       'curve': [{k: r.get(k) for k in ('step', 'objective/kl', 'objective/scores', 'val/explained_variance',
                                        'policy/clipfrac_avg', 'policy/approxkl_avg', 'policy/entropy_avg',
                                        'rollout/len', 'rollout/chair_i', 'eval/chair_i', 'eval/recall')} for r in rows]}
(out / 'exp.json').write_text(json.dumps(res))
a, b = s['before'], s['after']
print(f"{world} {name} s{seed}: CHAIR_i {100*a['eval/chair_i']:.1f}->{100*b['eval/chair_i']:.1f} "
      f"recall {100*a['eval/recall']:.1f}->{100*b['eval/recall']:.1f} len {a['eval/len']:.1f}->{b['eval/len']:.1f} "
      f"dup {b['eval/dup_per_caption']:.2f} KL {res['kl_last10']:.2f} ({res['time']:.0f}s)", flush=True)
