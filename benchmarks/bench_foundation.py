"""Foundation throughput: ShapeWorld generation and CHAIR scoring, measured side by side in one run.

    python benchmarks/bench_foundation.py [--n 4000]

Prints images/s for world generation, captions/s for CHAIR with a cold and a warm singularizer cache (and their ratio),
and the share of CHAIR time spent in tokenization vs singularization vs matching."""
import argparse
import json
import tempfile
import time
from pathlib import Path

from fisao.chair import Chair, ChairVocab, _noun_lemma, evaluate, ground_truth, tokenize_with_spans
from fisao.data import load_coco
from fisao.shapeworld import WorldConfig, build_world, world_paths


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=4000, help='training images (each has 3 captions)')
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    build_world(out, WorldConfig(n_train=args.n, n_calib=0, n_val=0, n_val_prior=0), progress=False)
    t_world = time.perf_counter() - t0
    print(f'world: {args.n} images in {t_world:.2f}s = {args.n / t_world:.0f} images/s')

    P = world_paths(out, 'train')
    chair = Chair(ChairVocab.from_file(P['vocab']))
    gt = ground_truth(chair, load_coco(P['instances']))
    caps = json.loads(P['captions'].read_text())['annotations']
    _noun_lemma.cache_clear()
    t0 = time.perf_counter(); evaluate(chair, caps, gt); cold = time.perf_counter() - t0
    t0 = time.perf_counter(); evaluate(chair, caps, gt); warm = time.perf_counter() - t0
    print(f'chair: {len(caps)} captions cold cache {len(caps) / cold:.0f}/s, warm cache {len(caps) / warm:.0f}/s, '
          f'warm/cold speed ratio {cold / warm:.2f}x')
    t0 = time.perf_counter()
    for c in caps: tokenize_with_spans(c['caption'])
    t_tok = time.perf_counter() - t0
    print(f'chair: tokenization is {t_tok / warm:.0%} of a warm evaluate()')


if __name__ == '__main__':
    main()
