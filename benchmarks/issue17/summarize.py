"""usage: python benchmarks/issue17/summarize.py WORLD dev|test NAME ...
Markdown rows: mean ± 95 % t half-width over seeds, per config, from exp.json (dev) or eval_<split>.json."""
import json
import sys
from pathlib import Path

from fisao.ablate import t_half

world, split, *names = sys.argv[1:]
def iv(xs, scale=100, fmt='.1f'):
    xs = [x * scale for x in xs]
    m = sum(xs) / len(xs)
    return f"{m:{fmt}} ± {t_half(xs):{fmt}}" if len(xs) > 1 else f"{m:{fmt}}"
for name in names:
    rows = []
    for d in sorted(Path(f'runs/x/{world}/{name}').glob('seed*')):
        if split == 'dev':
            e = json.loads((d / 'exp.json').read_text()); a = e['after']
            rows.append({'chair_i': a['eval/chair_i'], 'recall': a['eval/recall'], 'len': a['eval/len'],
                         'dup': a['eval/dup_per_caption'], 'chair_s': a['eval/chair_s'], 'kl': e['kl_last10'],
                         'seed': e['seed']})
        else:
            f = d / f'eval_{split}.json'
            if not f.exists(): continue
            e = json.loads(f.read_text())
            rows.append({'chair_i': e['chair_i'], 'recall': e['recall'], 'len': e['len'], 'dup': e['dup_per_caption'],
                         'chair_s': e['chair_s'], 'kl': e['kl'], 'seed': int(d.name[4:])})
    if not rows: continue
    def col(k, rows=rows): return [r[k] for r in rows]
    print(f"| {name} | {','.join(str(r['seed']) for r in rows)} | {iv(col('chair_s'))} | {iv(col('chair_i'))} | "
          f"{iv(col('recall'))} | {iv(col('len'), 1)} | {iv(col('dup'), 1, '.2f')} | {iv(col('kl'), 1, '.2f')} |  "
          f"{' / '.join(f'{100*x:.1f}' for x in col('chair_i'))}")
