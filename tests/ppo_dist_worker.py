"""Worker for `tests/test_ppo_distributed.py`: `ppo_update` on one fixed 8-row rollout of a tiny random LLaVA.

    python tests/ppo_dist_worker.py single OUT
        # builds the policy + rollout, saves them, runs the 1-process references
    accelerate launch --cpu --num_processes 2 tests/ppo_dist_worker.py dist OUT
        # the same updates on 2 processes (DDP)

Two settings (see "Minibatches across processes" in nbs/09_ppo.ipynb):
- `plain`: `shuffle=False`. Process r holds rows r, r+W, ... (strided shard), `minibatch_size` 2 per process; the
  reference is one process over all 8 rows with `minibatch_size` 4 — the same global minibatches.
- `shuffled`: `shuffle=True`, `grad_accum=2` (DDP `no_sync` on the first micro-batch). Each process permutes its own
  rows with `Generator().manual_seed(seed + epoch)`; the reference emulates that scheme in one process: one
  `ppo_update` call per epoch (`seed + epoch`, `PPOConfig(epochs=1)`) on the rows re-ordered into the global
  minibatches.
SGD, not Adam: the comparison measures the gradient arithmetic; Adam would blow round-off in near-zero gradients up to
full `lr`-sized steps. Outputs: `OUT/{single,dist}_{setting}.pt` = {'params': trainable parameters, 'stats': ...}.
"""
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
warnings.filterwarnings('ignore')

# The imports below come after the settings above: the Hub reads HF_HUB_OFFLINE when transformers is imported.
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import LlavaForConditionalGeneration  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from fisao.models import (  # noqa: E402
    PolicyWithValue,
    build_inputs,
    build_llava_processor,
    build_word_tokenizer,
    lora_config,
    suppress_token_ids,
    tiny_llava_config,
)
from fisao.ppo import (  # noqa: E402
    PPOConfig,
    Rollout,
    compute_advantages,
    compute_rewards,
    minibatch_indices,
    ppo_update,
    score_rollout,
)

torch.set_num_threads(1)
hf_logging.set_verbosity_error()

SEED, N_ROWS, WORLD, T, EPOCHS, LR = 0, 8, 2, 6, 3, 0.5
SETTINGS = {'plain': dict(shuffle=False, grad_accum=1), 'shuffled': dict(shuffle=True, grad_accum=2)}
PPO_KW = dict(epochs=EPOCHS, clip_eps=0.2, clip_range_value=0.2, vf_coef=0.1, ent_coef=0.01, max_grad_norm=1.0,
              norm_adv=True)
WORDS = ['describe the image', 'what is in the picture', 'a red circle and a blue square', 'green triangle']


def build_policy():
    "A tiny random LLaVA + LoRA policy; LoRA B and the value head perturbed so every trainable weight gets a gradient."
    tok = build_word_tokenizer(WORDS)
    torch.manual_seed(SEED)
    cfg = tiny_llava_config(len(tok))
    cfg.text_config.initializer_range = 0.1
    policy = PolicyWithValue.from_base(LlavaForConditionalGeneration(cfg).eval(), 'llava',
                                       lora_config('llava', r=4, alpha=8, dropout=0.0))
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if 'lora_B' in n or n.startswith('value_head.'): p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return tok, policy


def build_rollout(tok, policy):
    """8 prompts with fixed random responses (ragged EOS, two truncated rows that bootstrap from V(s_T)), scored under
    the suppressed ids' support, rewarded and GAE'd."""
    processor = build_llava_processor(tok, image_size=32, patch_size=8)
    rng = np.random.default_rng(SEED)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(N_ROWS)]
    instructions = ['describe the image', 'what is in the picture', 'a red circle', 'describe the green triangle'] * 2
    inputs = build_inputs(processor, 'llava', images, instructions)
    g = torch.Generator().manual_seed(SEED + 2)
    response = torch.randint(5, len(tok), (N_ROWS, T), generator=g)            # (B, T) no special tokens
    lengths = torch.tensor([1, 3, 6, 2, 6, 4, 5, 3])                          # rows with length T and no EOS: truncated
    truncated = torch.tensor([False, False, True, False, True, False, False, False])
    response_mask = (torch.arange(T)[None] < lengths[:, None]).long()         # (B, T)
    eos_at = (torch.arange(T)[None] == lengths[:, None] - 1) & ~truncated[:, None]
    response = response.masked_fill(eos_at, tok.eos_token_id).masked_fill(response_mask == 0, tok.pad_token_id)
    rollout = Rollout(torch.cat([inputs['input_ids'], response], 1),
                      torch.cat([inputs['attention_mask'], response_mask], 1),
                      inputs['pixel_values'], response_mask, truncated, suppress_tokens=suppress_token_ids(processor))
    score_rollout(policy, rollout, batch_size=4)
    rollout.scores = torch.randn(N_ROWS, T, generator=g) * response_mask
    rollout.rewards, _ = compute_rewards(rollout.scores, rollout.logprobs, rollout.ref_logprobs, response_mask,
                                         kl_coef=0.05, missing_eos_penalty=1.0, truncated=truncated)
    rollout.advantages, rollout.returns = compute_advantages(rollout.values, rollout.rewards, response_mask,
                                                             last_values=rollout.last_values, truncated=truncated)
    return rollout


def trainable(policy) -> dict:
    return {n: p.detach().cpu().clone() for n, p in policy.named_parameters() if p.requires_grad}


def load_start(out: Path):
    "The saved starting policy and rollout (identical in every process)."
    tok, policy = build_policy()
    policy.load_state_dict(torch.load(out / 'start_policy.pt', weights_only=True))
    rollout = Rollout(**torch.load(out / 'rollout.pt', weights_only=True))
    return policy, rollout


def single(out: Path):
    tok, policy = build_policy()
    rollout = build_rollout(tok, policy)
    torch.save(policy.state_dict(), out / 'start_policy.pt')
    torch.save({f: getattr(rollout, f) for f in ('input_ids', 'attention_mask', 'pixel_values', 'response_mask',
                                                  'truncated', 'logprobs', 'ref_logprobs', 'values', 'scores',
                                                  'rewards', 'advantages', 'returns', 'last_values',
                                                  'suppress_tokens')},
               out / 'rollout.pt')
    # plain: the global minibatches of WORLD strided shards without shuffling = this process's minibatches of 4 rows
    policy, rollout = load_start(out)
    opt = torch.optim.SGD(policy.trainable_parameters(), lr=LR)
    stats = ppo_update(policy, opt, rollout, PPOConfig(minibatch_size=2 * WORLD, **PPO_KW), shuffle=False, seed=SEED)
    torch.save({'params': trainable(policy), 'stats': stats}, out / 'single_plain.pt')
    # shuffled: one epoch per call, rows re-ordered into the global minibatches of the distributed scheme
    policy, rollout = load_start(out)
    opt = torch.optim.SGD(policy.trainable_parameters(), lr=LR)
    n_local = N_ROWS // WORLD
    for epoch in range(EPOCHS):
        local_mbs = minibatch_indices(n_local, 2, epoch, SEED, shuffle=True)  # the same on every process
        order = torch.cat([torch.stack([WORLD * mb + r for r in range(WORLD)], 1).flatten() for mb in local_mbs])
        cfg = PPOConfig(minibatch_size=2 * WORLD, **{**PPO_KW, 'epochs': 1})
        ppo_update(policy, opt, rollout.index(order), cfg, shuffle=False, seed=SEED + epoch)
    torch.save({'params': trainable(policy), 'stats': {}}, out / 'single_shuffled.pt')


def dist(out: Path):
    from accelerate import Accelerator
    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == WORLD, accelerator.num_processes
    rank = accelerator.process_index
    for name, setting in SETTINGS.items():
        policy, rollout = load_start(out)
        shard = rollout.index(slice(rank, None, WORLD)).to(accelerator.device)  # rows rank, rank + W, ...
        opt = torch.optim.SGD(policy.trainable_parameters(), lr=LR)
        policy, opt = accelerator.prepare(policy, opt)
        cfg = PPOConfig(minibatch_size=2, grad_accum=setting['grad_accum'], **PPO_KW)
        stats = ppo_update(policy, opt, shard, cfg, accelerator=accelerator, shuffle=setting['shuffle'], seed=SEED)
        if accelerator.is_main_process:
            torch.save({'params': trainable(accelerator.unwrap_model(policy)), 'stats': stats}, out / f'dist_{name}.pt')
        accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == '__main__':
    mode, out = sys.argv[1], Path(sys.argv[2])
    {'single': single, 'dist': dist}[mode](out)
    # Seen once under heavy CPU load: a rank finished (outputs written, process group destroyed) but hung in interpreter
    # shutdown with a gloo thread alive, and torchrun waited forever. Everything is on disk by now: leave at once.
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)
