"""Reward computation (parse + score + align) as a fraction of generation time for the same rollout batch, in one run.

    python benchmarks/bench_reward.py [--pretrained runs/pretrain] [--quick] [--batch 64] [--reps 3]

Uses ShapeWorld's tiny models (trained on first use, cached under --pretrained). Per repetition: sample a batch of
responses from the SFT policy (timed), then compute FineGrainedReward on it (timed, a fresh rollout: image embeddings
are recomputed, phrase embeddings stay cached for the run as in training). Prints medians and the ratio; the goal is
reward <= 5 % of generation (and <= 2 % of a full PPO step, see bench_ppo.py once it exists)."""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from fisao.chair import Chair, ChairVocab, ground_truth
from fisao.data import load_coco
from fisao.models import build_inputs, suppress_token_ids
from fisao.pretrain import _to_pil, load_pretrained, load_world_split
from fisao.rewards import FineGrainedReward, RewardConfig
from fisao.shapeworld import world_paths
from fisao.verifier import FineGrainedVerifier, calibrate
from fisao.workspace import shapeworld_models


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pretrained', type=Path, default=Path('runs/pretrain'))
    ap.add_argument('--quick', action='store_true', help='quick tiny models (smoke test)')
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--max-new-tokens', type=int, default=40)
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0 = torch default)')
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    shapeworld_models(args.pretrained, args.quick, progress=False)
    llava, processor, _, _ = load_pretrained(args.pretrained)
    verifier = FineGrainedVerifier.from_policy(llava, args.pretrained / 'clip')
    world = args.pretrained / 'world'
    chair = Chair(ChairVocab.from_file(world_paths(world, 'calib')['vocab']))
    cs = load_world_split(world, 'calib', 200)
    cal = calibrate(llava, processor, verifier, _to_pil(cs.images), cs.ids,
                    ground_truth(chair, load_coco(world_paths(world, 'calib')['instances'])),
                    chair, 'Describe the image.')
    vs = load_world_split(world, 'val')
    gt = ground_truth(chair, load_coco(world_paths(world, 'val')['instances']))
    rewarder = FineGrainedReward(verifier, chair, cal, RewardConfig(), processor.tokenizer, gt=gt)
    tok, gen_t, rew_t, phases, first = processor.tokenizer, [], [], [], []
    torch.manual_seed(0)
    for rep in range(args.reps + 1):  # repetition 0 warms up (and fills the phrase cache, as the first PPO step does)
        sl = slice(rep * args.batch % len(vs.ids), rep * args.batch % len(vs.ids) + args.batch)
        ids, images = vs.ids[sl], _to_pil(vs.images[sl])
        enc = build_inputs(processor, 'llava', images, ['Describe the image.'] * len(ids))
        t0 = time.perf_counter()
        with torch.no_grad():
            out = llava.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=True, top_k=0, top_p=1.0,
                                 suppress_tokens=suppress_token_ids(processor), pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
        t_gen = time.perf_counter() - t0
        resp = out[:, enc.input_ids.shape[1]:]                                          # (B, T)
        is_eos = (resp == tok.eos_token_id).long()
        mask = ((is_eos.cumsum(-1) - is_eos) == 0).long()                               # (B, T) up to the first eos
        verifier.new_rollout()
        t0 = time.perf_counter()
        ro = rewarder(images, ids, resp, mask, ~is_eos.bool().any(-1))
        t_rew = time.perf_counter() - t0
        if rep == 0: continue
        first += [r for recs in ro.records for r in recs if r['skip'] is None and not r['repeat']]
        gen_t.append(t_gen); rew_t.append(t_rew)
        phases.append({k: ro.stats[f'time_{k}'] for k in ('parse', 'score', 'align')})
    g, r = statistics.median(gen_t), statistics.median(rew_t)
    ph = {k: statistics.median(p[k] for p in phases) for k in phases[0]}
    res = {'batch': args.batch, 'max_new_tokens': args.max_new_tokens, 'generate_s': g, 'reward_s': r,
           'reward_over_generate': r / g, 'phases_s': ph, 'mentions_per_caption': ro.stats['mentions_per_caption'],
           'threads': torch.get_num_threads(), 'quick': args.quick}
    print(f"generate {g * 1000:.0f} ms, reward {r * 1000:.0f} ms "
          f"(parse {ph['parse'] * 1000:.0f}, score {ph['score'] * 1000:.0f}, "
          f"align {ph['align'] * 1000:.0f}) per batch of {args.batch}: reward / generation = {r / g:.1%} (goal <= 5 %)")
    pos = [r['reward'] > 0 for r in first if r['label'] == 'correct']
    neg = [r['reward'] < 0 for r in first if r['label'] == 'hallucinated']
    res['sign'] = {'correct_positive': sum(pos) / max(1, len(pos)),
                   'hallucinated_negative': sum(neg) / max(1, len(neg)),
                   'overall': (sum(pos) + sum(neg)) / max(1, len(pos) + len(neg)), 'n_correct': len(pos),
                   'n_hallucinated': len(neg), 'calibration_auroc': cal['auroc']}
    print(f"held-out (val) sampled first mentions, default reading: "
          f"correct -> positive {res['sign']['correct_positive']:.1%} of {len(pos)}, "
          f"hallucinated -> negative {res['sign']['hallucinated_negative']:.1%} of {len(neg)}, "
          f"overall {res['sign']['overall']:.1%}")
    print(json.dumps(res))


if __name__ == '__main__':
    main()
