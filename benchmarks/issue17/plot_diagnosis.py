"""Training diagnostics of runs side by side: python benchmarks/issue17/plot_diagnosis.py OUT.png LABEL=metrics.jsonl ..."""
import json
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

keys = [('objective/kl', 'KL to the reference (nats / caption)'), ('val/explained_variance', 'critic explained variance'),
        ('policy/clipfrac', 'policy clip fraction'), ('policy/approx_kl', 'approx KL per PPO update'),
        ('policy/entropy', 'entropy (nats / token)'), ('rollout/mentions_per_caption', 'objects named / caption (train)'),
        ('rollout/chair_i', 'rollout CHAIR_i (train prompts, sampled)'), ('eval/chair_i', 'dev CHAIR_i (greedy)')]
fig, axs = plt.subplots(2, 4, figsize=(16, 6.5))
for arg in sys.argv[2:]:
    label, run = arg.split('=', 1)
    rows = [json.loads(l) for l in open(run)]
    for ax, (k, t) in zip(axs.flat, keys):
        pts = [(r['step'], r[k]) for r in rows if k in r]
        if not pts: continue
        xs, ys = zip(*pts)
        ax.plot(xs, ys, label=label, lw=1, marker='o' if k.startswith('eval') else None, ms=3)
        ax.set_title(t, fontsize=9); ax.set_xlabel('PPO step', fontsize=8)
axs.flat[-1].legend(fontsize=7)
fig.suptitle(sys.argv[1].rsplit('/', 1)[-1].split('.')[0], fontsize=10)
fig.tight_layout(); fig.savefig(sys.argv[1], dpi=80)
