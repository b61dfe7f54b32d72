#!/usr/bin/env python3
"""Base model vs FiSAO: one table of every eval file the paper scripts wrote (standard library only, no model).

    python "$(fisao preset paper_compare.py --path)" RUN/eval [--out RUN/eval/comparison.json]

Reads `EVAL_DIR/base/*.json` and `EVAL_DIR/fisao/*.json` (the `--out` files of `fisao eval ...`) and prints, for every
file present on either side, its headline numbers side by side with the difference: CHAIR per length budget, POPE (mean
and per split), caption metrics, and each benchmark's top-level scores. Fractions stay fractions (as in the files)."""
import argparse
import json
import math
import sys
from pathlib import Path

SIDES = ('base', 'fisao')
SKIP = {'seed', 'n_images', 'n_mentions', 'n_questions', 'n_missing', 'n_skipped', 'n_other', 'n', 'n_yes',
        'n_unparsed', 'step', 'tp', 'fp', 'tn', 'fn'}


def numbers(d: dict, prefix: str = '') -> dict:
    "Top-level finite numbers of a result (booleans and counts left out), CHAIR per length budget, POPE per split."
    out = {}
    for k, v in d.items():
        if isinstance(v, bool) or k in SKIP: continue
        if isinstance(v, (int, float)) and math.isfinite(v): out[prefix + k] = v
    for L, r in (d.get('by_max_new_tokens') or {}).items():  # fisao eval chair
        out.update(numbers(r, f'L{L}/'))
    for s, r in (d.get('splits') or {}).items():  # fisao eval pope, built splits
        if isinstance(r, dict): out.update(numbers(r, f'{s}/'))
    if d.get('by_max_new_tokens'):  # the top level repeats the first budget
        out = {k: v for k, v in out.items() if k.startswith('L')}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('eval_dir', type=Path)
    ap.add_argument('--out', type=Path, help='also write the table as JSON here')
    args = ap.parse_args(argv)
    files = sorted({p.name for s in SIDES for p in (args.eval_dir / s).glob('*.json')} - {'comparison.json'})
    if not files:
        print(f'no eval files under {args.eval_dir}/{{base,fisao}}/ yet')
        return 0
    table = {}
    for name in files:
        sides = {}
        for s in SIDES:
            p = args.eval_dir / s / name
            if not p.is_file(): continue
            try: sides[s] = numbers(json.loads(p.read_text()))
            except (json.JSONDecodeError, AttributeError) as e:
                print(f'{p}: not a result file ({e})', file=sys.stderr)
        for k in sorted({k for v in sides.values() for k in v}):
            b, f = (sides.get(s, {}).get(k) for s in SIDES)
            table[f'{Path(name).stem}:{k}'] = {'base': b, 'fisao': f,
                                               'delta': None if b is None or f is None else f - b}
    fmt = lambda v: f'{v:12.4f}' if v is not None else f"{'-':>12}"
    width = max(map(len, table)) + 2
    print(f"{'metric':<{width}}{'base':>12}{'fisao':>12}{'delta':>12}")
    for k, r in table.items(): print(f'{k:<{width}}' + ''.join(fmt(r[s]) for s in ('base', 'fisao', 'delta')))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f'.{args.out.name}.tmp')
        tmp.write_text(json.dumps(table, indent=1) + '\n'); tmp.replace(args.out)
        print(f'comparison → {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
