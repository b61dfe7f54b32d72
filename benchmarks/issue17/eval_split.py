"""Evaluate runs (or the SFT policy) on a ShapeWorld split: CHAIR (greedy, 40 tokens, all images) + held-out KL.
usage: OMP_NUM_THREADS=1 python benchmarks/issue17/eval_split.py SPLIT WORLD RUN_DIR|sft ...
→ RUN_DIR/eval_<split>.json, one line printed per run"""
import json
import sys
from pathlib import Path

import torch

from fisao.ablate import kl_to_reference
from fisao.chair import Chair, ChairVocab
from fisao.data import load_coco, load_image
from fisao.eval import chair_image_ids, chair_run
from fisao.models import load_policy
from fisao.shapeworld import world_paths
from fisao.trainer import list_checkpoints

torch.set_num_threads(1)

split, world, *runs = sys.argv[1:]
pre = Path({'default': 'runs/pretrain', 'dense': 'runs/dense/pretrain'}[world])
P = world_paths(pre / 'world', split)
chair = Chair(ChairVocab.from_file(P['vocab']))
coco = load_coco(P['instances'])
kl_imgs = [load_image(Path(P['images']) / coco.imgs[i]['file_name'])
           for i in chair_image_ids(coco.getImgIds(), 64, seed=1)]
for run in runs:
    out = Path(f'runs/x/{world}/sft_eval_{split}.json') if run == 'sft' else Path(run) / f'eval_{split}.json'
    if out.exists():
        res = json.loads(out.read_text())
    else:
        adapter = None if run == 'sft' else list_checkpoints(run)[-1] / 'adapter'
        model, processor, kind = load_policy(pre / 'llava', adapter)
        r, _ = chair_run(model, processor, kind, P['instances'], P['images'], chair, n_images=None, seed=0,
                         prompt='Describe the image.', max_new_tokens=40, batch_size=100, progress=False)
        kl = kl_to_reference(model, processor, kind, kl_imgs, 'Describe the image.', 40, seed=0) if adapter else 0.0
        res = {k: r[k] for k in ('chair_s', 'chair_i', 'recall', 'len', 'dup_per_caption', 'n_captions')}
        res.update(kl=kl, split=split, run=run)
        out.write_text(json.dumps(res))
    print(f"{split} {run}: CHAIR_i {100*res['chair_i']:.1f} recall {100*res['recall']:.1f} len {res['len']:.1f} "
          f"dup {res['dup_per_caption']:.2f} KL {res['kl']:.2f} n {res['n_captions']}", flush=True)
