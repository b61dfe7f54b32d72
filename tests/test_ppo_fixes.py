"""Issue 16 (items 3, 4, 6, 7, 8): each test fails on the code before its fix.

- 3: DeepSpeed is refused (preflight, the trainer, `ppo_update`): accelerate's DeepSpeed wrapper steps the engine inside
  `accelerator.backward`, so `ppo.grad_accum`, the separate actor/critic clipping and the non-finite skip cannot hold.
- 4: the value clip scales with the returns: with returns of order 10 the critic moves more than 0.2 in one update.
- 6: a truncated row (no EOS) bootstraps from V(s_T), the value of the state after its last token.
- 7: one support (pad/bos/<image> at -inf) for sampling, log-probs, entropy and reference log-probs; the ratio is
  exactly 1 on the first minibatch, in float32 and under bf16 autocast; no update inside one enclosing autocast.
- 8: `whiten_rewards` scales the mention scores only; a non-mention token's score stays 0.
"""
import dataclasses
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

warnings.filterwarnings('ignore', message='.*is_gradient_checkpointing.*')

WORDS = ['describe the image', 'what is in the picture', 'a red circle and a blue square', 'green triangle']
N_ROWS, T = 8, 6


@pytest.fixture(scope='module')
def tiny():
    "A word tokenizer, its LLaVA processor, the prompts of 8 random images and the suppressed ids."
    from PIL import Image
    from transformers.utils import logging as hf_logging

    from fisao.models import build_inputs, build_llava_processor, build_word_tokenizer, suppress_token_ids
    hf_logging.set_verbosity_error()
    tok = build_word_tokenizer(WORDS)
    processor = build_llava_processor(tok, image_size=32, patch_size=8)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(N_ROWS)]
    inputs = build_inputs(processor, 'llava', images, ['describe the image', 'what is in the picture'] * 4)
    return SimpleNamespace(tok=tok, processor=processor, inputs=inputs, suppress=suppress_token_ids(processor))


def tiny_policy(tok, perturb=True):
    "A tiny random LLaVA + LoRA (r=4); LoRA B perturbed so that policy and reference differ."
    from transformers import LlavaForConditionalGeneration

    from fisao.models import PolicyWithValue, lora_config, tiny_llava_config
    torch.manual_seed(0)
    cfg = tiny_llava_config(len(tok))
    cfg.text_config.initializer_range = 0.1
    policy = PolicyWithValue.from_base(LlavaForConditionalGeneration(cfg).eval(), 'llava',
                                       lora_config('llava', r=4, alpha=8, dropout=0.0))
    if perturb:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for n, p in policy.named_parameters():
                if 'lora_B' in n: p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return policy


def autocast_forward(policy, enabled=True):
    """Run every forward of `policy` under bf16 autocast, one context per call, as accelerate's `mixed_precision` does
    (autocast keeps its casts of the weights until the context exits: one context around a whole update would run every
    minibatch on the weights it started with)."""
    if not enabled: return policy
    forward = policy.forward

    def bf16_forward(**inputs):
        with torch.autocast('cpu', dtype=torch.bfloat16): return forward(**inputs)
    policy.forward = bf16_forward
    return policy


def fixed_rollout(t, **kw):
    "8 prompts with fixed responses (ids >= 5: nothing suppressed; ragged EOS; rows 2 and 4 truncated)."
    from fisao.ppo import Rollout
    g = torch.Generator().manual_seed(2)
    response = torch.randint(5, len(t.tok), (N_ROWS, T), generator=g)          # (B, T)
    lengths = torch.tensor([1, 3, 6, 2, 6, 4, 5, 3])
    truncated = torch.tensor([False, False, True, False, True, False, False, False])
    response_mask = (torch.arange(T)[None] < lengths[:, None]).long()          # (B, T)
    eos_at = (torch.arange(T)[None] == lengths[:, None] - 1) & ~truncated[:, None]
    response = response.masked_fill(eos_at, t.tok.eos_token_id).masked_fill(response_mask == 0, t.tok.pad_token_id)
    return Rollout(torch.cat([t.inputs['input_ids'], response], 1),
                   torch.cat([t.inputs['attention_mask'], response_mask], 1),
                   t.inputs['pixel_values'], response_mask, truncated, **kw)


# ---- item 3: DeepSpeed

def _fake_accelerator(distributed_type, num_processes=4):
    return SimpleNamespace(distributed_type=distributed_type, num_processes=num_processes, process_index=0,
                           is_main_process=True, gradient_accumulation_steps=1, device=torch.device('cpu'))


def test_preflight_refuses_deepspeed(tmp_path):
    from accelerate.utils import DistributedType

    from fisao.core import ConfigError
    from fisao.rundir import preflight
    from fisao.trainconfig import config_from_flat
    cfg = config_from_flat({'out': str(tmp_path / 'run'), 'ppo.grad_accum': 2, 'ppo.minibatch_size': 4})
    with pytest.raises(ConfigError) as e:
        preflight(cfg, distributed_type=DistributedType.DEEPSPEED)
    msg = str(e.value)
    assert 'DEEPSPEED' in msg and 'ppo.grad_accum' in msg and 'ppo.max_grad_norm' in msg, msg
    assert 'accelerate/4xa100' in msg, msg
    for ok in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU, None):
        preflight(cfg, distributed_type=ok)                                    # DDP and one process: accepted


def test_trainer_refuses_deepspeed_before_loading_models(tmp_path):
    "The instructblip_13b preset (ppo.grad_accum 2) under a DeepSpeed accelerator: refused before any path or model."
    from accelerate.utils import DistributedType

    from fisao.core import ConfigError
    from fisao.presets import instructblip_13b
    from fisao.trainer import FiSAOTrainer
    cfg = instructblip_13b({'out': str(tmp_path / 'run')})
    with pytest.raises(ConfigError, match='DEEPSPEED') as e:
        FiSAOTrainer(cfg, accelerator=_fake_accelerator(DistributedType.DEEPSPEED))
    assert 'ppo.grad_accum (2)' in str(e.value)


def test_ppo_update_refuses_deepspeed(tiny):
    from accelerate.utils import DistributedType

    from fisao.core import ConfigError
    from fisao.ppo import PPOConfig, compute_advantages, ppo_update, score_rollout
    policy = tiny_policy(tiny.tok)
    ro = score_rollout(policy, fixed_rollout(tiny))
    ro.advantages, ro.returns = compute_advantages(ro.values, ro.response_mask.float(), ro.response_mask)
    with pytest.raises(ConfigError, match='DEEPSPEED'):
        ppo_update(policy, torch.optim.SGD(policy.trainable_parameters(), lr=0.1), ro, PPOConfig(minibatch_size=4),
                   accelerator=_fake_accelerator(DistributedType.DEEPSPEED, num_processes=1))


# ---- item 4: the value clip

def test_value_clip_lets_the_critic_move_with_returns_of_scale_10(tiny):
    """Returns of order 10 against a zero-initialised head: one update of the default `PPOConfig` (value clip on) moves
    the values by more than 0.2. SGD on the value head only (LoRA lr 0), many small steps: with an absolute clip of 0.2
    the value loss has no gradient once a value is 0.2 away from the rollout's."""
    from fisao.ppo import PPOConfig, ppo_update, score_rollout
    policy = tiny_policy(tiny.tok)
    ro = score_rollout(policy, fixed_rollout(tiny))
    assert ro.values.abs().max() == 0                                          # zero-initialised head
    g = torch.Generator().manual_seed(3)
    mask = ro.response_mask
    ro.returns = (10.0 + torch.randn(mask.shape, generator=g)) * mask          # (B, T) returns of scale λ = 10
    ro.advantages = (ro.returns - ro.values) * mask
    actor, critic = policy.actor_critic_parameters()
    opt = torch.optim.SGD([{'params': actor, 'lr': 0.0}, {'params': critic, 'lr': 0.02}])
    cfg = PPOConfig(epochs=40, minibatch_size=N_ROWS)
    assert cfg.clip_vloss and cfg.clip_range_value == 0.2                      # the defaults
    ppo_update(policy, opt, ro, cfg, seed=0)
    new = score_rollout(policy, dataclasses.replace(ro))
    moved = ((new.values - ro.values) * mask).sum() / mask.sum()
    assert moved > 1.0, f'the critic moved {moved:.3f} toward returns of 10 in 40 small steps'


# ---- item 6: bootstrapping truncated rows

def _gae_loop(values, rewards, lengths, bootstrap, gamma, lam):
    "Plain Python GAE per row: after the last token, V = bootstrap[b]."
    adv = [[0.0] * len(values[0]) for _ in values]
    for b in range(len(values)):
        last = 0.0
        for t in reversed(range(lengths[b])):
            next_v = values[b][t + 1] if t + 1 < lengths[b] else bootstrap[b]
            last = rewards[b][t] + gamma * next_v - values[b][t] + gamma * lam * last
            adv[b][t] = last
    return torch.tensor(adv)


def test_compute_advantages_bootstraps_truncated_rows():
    from fisao.ppo import compute_advantages
    values = torch.tensor([[1.0, 2.0, 3.0], [0.5, 1.5, 0.0], [2.0, -1.0, 4.0]])
    rewards = torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1]])
    truncated = torch.tensor([True, False, False])                             # row 0 cut at max_new_tokens
    last_values = torch.tensor([5.0, 7.0, 9.0])                                # V(s_T); only row 0 uses it
    adv, ret = compute_advantages(values, rewards, mask, gamma=0.9, lam=0.8, last_values=last_values,
                                  truncated=truncated)
    ref = _gae_loop(values.tolist(), rewards.tolist(), [3, 2, 3], [5.0, 0.0, 0.0], 0.9, 0.8)
    torch.testing.assert_close(adv, ref)
    torch.testing.assert_close(ret, (ref + values) * mask)
    # by hand, row 0's last token: δ = −1 + 0.9·5 − 3 = 0.5
    assert abs(adv[0, 2].item() - 0.5) < 1e-6


def test_score_rollout_gives_the_value_after_the_last_token(tiny):
    from fisao.ppo import score_rollout
    policy = tiny_policy(tiny.tok)
    with torch.no_grad():
        policy.value_head.summary.weight.normal_(0, 0.1)
    ro = score_rollout(policy, fixed_rollout(tiny), batch_size=3)
    with torch.no_grad():
        _, full_values = policy(**ro.model_inputs())                           # (B, P+T)
    lengths = ro.response_mask.sum(1)
    expected = full_values[torch.arange(N_ROWS), ro.prompt_len - 1 + lengths]  # the column of each row's last token
    torch.testing.assert_close(ro.last_values, expected, rtol=1e-5, atol=1e-6)


def test_trainer_advantages_bootstrap_truncated_rows():
    "The trainer hands the truncated flags and V(s_T) to GAE."
    from fisao.ppo import Rollout
    from fisao.trainconfig import config_from_flat
    from fisao.trainer import FiSAOTrainer
    cfg = config_from_flat({'ppo.gamma': 1.0, 'ppo.gae_lambda': 0.9})
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    ro = Rollout(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long), torch.zeros(2, 3, 4, 4),
                 mask, torch.tensor([True, False]), values=torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 0.0]]),
                 rewards=torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), last_values=torch.tensor([4.0, 6.0]))
    out = FiSAOTrainer.advantages(SimpleNamespace(cfg=cfg), ro)
    ref = _gae_loop(ro.values.tolist(), ro.rewards.tolist(), [3, 2], [4.0, 0.0], 1.0, 0.9)
    torch.testing.assert_close(out.advantages, ref)


# ---- item 7: one support for sampling, log-probs, entropy and the reference

def _sampler_logprobs(logits, input_ids, P, temperature, suppress):
    "Log-probs (B, T) of the response tokens under transformers' own sampling processors, from full logits."
    from transformers import LogitsProcessorList, SuppressTokensLogitsProcessor, TemperatureLogitsWarper
    procs = LogitsProcessorList([SuppressTokensLogitsProcessor(suppress, device='cpu'),
                                 TemperatureLogitsWarper(temperature)])
    T_ = input_ids.shape[1] - P
    out, ent = [], []
    for t in range(T_):
        scores = procs(input_ids[:, :P + t], logits[:, P - 1 + t].float())      # (B, V)
        logp = torch.log_softmax(scores, -1)
        out.append(logp.gather(1, input_ids[:, P + t, None])[:, 0])
        p = logp.exp()
        ent.append(-(p * logp.masked_fill(p == 0, 0.0)).sum(-1))
    return torch.stack(out, 1), torch.stack(ent, 1)


@pytest.mark.parametrize('autocast', [False, True], ids=['fp32', 'bf16-autocast'])
def test_logprobs_ref_logprobs_and_entropy_use_the_sampling_support(tiny, autocast):
    from fisao.ppo import forward_response, score_rollout
    policy, tau = autocast_forward(tiny_policy(tiny.tok), autocast), 0.7
    ro = fixed_rollout(tiny, suppress_tokens=tiny.suppress)
    mask = ro.response_mask.bool()
    with torch.no_grad():
        score_rollout(policy, ro, temperature=tau, batch_size=N_ROWS)
        logits, _ = policy(**ro.model_inputs())
        with policy.reference():
            ref_logits, _ = policy(**ro.model_inputs())
        _, _, entropy = forward_response(policy, ro, tau, suppress_tokens=tiny.suppress)
    lp, ent = _sampler_logprobs(logits, ro.input_ids, ro.prompt_len, tau, tiny.suppress)
    ref_lp, _ = _sampler_logprobs(ref_logits, ro.input_ids, ro.prompt_len, tau, tiny.suppress)
    torch.testing.assert_close(ro.logprobs[mask], lp[mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(ro.ref_logprobs[mask], ref_lp[mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(entropy[mask], ent[mask], rtol=0, atol=1e-4)


@pytest.mark.parametrize('autocast', [False, True], ids=['fp32', 'bf16-autocast'])
def test_ratio_is_exactly_one_on_the_first_minibatch(tiny, autocast, monkeypatch):
    "Sampled responses, scored, then `ppo_update`: π/π_old on the first minibatch of the first epoch is exactly 1."
    import fisao.ppo as ppo
    policy, tau = autocast_forward(tiny_policy(tiny.tok), autocast), 0.7
    seen = []
    real = ppo.policy_loss

    def spy(logprobs, old_logprobs, advantages, response_mask, *a, **kw):
        seen.append(((logprobs - old_logprobs).detach(), response_mask.bool()))
        return real(logprobs, old_logprobs, advantages, response_mask, *a, **kw)
    monkeypatch.setattr(ppo, 'policy_loss', spy)
    torch.manual_seed(5)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):                 # sampling in bf16 too
        ids, am, rm, trunc = ppo.generate_responses(policy, tiny.inputs, max_new_tokens=T, temperature=tau,
                                                    suppress_tokens=tiny.suppress, eos_token_id=tiny.tok.eos_token_id,
                                                    pad_token_id=tiny.tok.pad_token_id)
    ro = ppo.score_rollout(policy, ppo.Rollout(ids, am, tiny.inputs['pixel_values'], rm, trunc,
                                               suppress_tokens=tiny.suppress), tau, batch_size=4)
    assert not torch.isin(ro.response_ids[rm.bool()], torch.tensor(tiny.suppress)).any()
    ro.rewards = torch.randn(rm.shape, generator=torch.Generator().manual_seed(6)) * rm
    ro.advantages, ro.returns = ppo.compute_advantages(ro.values, ro.rewards, rm, last_values=ro.last_values,
                                                       truncated=ro.truncated)
    ppo.ppo_update(policy, torch.optim.SGD(policy.trainable_parameters(), lr=0.5), ro,
                   ppo.PPOConfig(epochs=2, minibatch_size=4), temperature=tau, seed=0)
    log_ratio, m = seen[0]
    assert m.any() and torch.equal(log_ratio[m], torch.zeros_like(log_ratio[m])), log_ratio[m].abs().max()
    assert any(lr[mm].abs().max() > 0 for lr, mm in seen[1:])                   # later minibatches did move


def test_ppo_update_refuses_an_enclosing_autocast(tiny):
    """Found while testing item 7 under bf16: inside one `torch.autocast` context the weights' bf16 casts are cached
    until it exits, so every minibatch of an update ran the weights the update started with (ratio ≡ 1 throughout, the
    clip never acting). `ppo_update` refuses such a context; a cache-free autocast, or accelerate's per-forward one,
    is fine."""
    from fisao.core import ConfigError
    from fisao.ppo import PPOConfig, compute_advantages, ppo_update, score_rollout
    policy = tiny_policy(tiny.tok)
    ro = score_rollout(policy, fixed_rollout(tiny, suppress_tokens=tiny.suppress))
    ro.advantages, ro.returns = compute_advantages(ro.values, ro.response_mask.float(), ro.response_mask)
    opt = torch.optim.SGD(policy.trainable_parameters(), lr=0.5)
    with torch.autocast('cpu', dtype=torch.bfloat16), pytest.raises(ConfigError, match='autocast'):
        ppo_update(policy, opt, ro, PPOConfig(minibatch_size=4, epochs=1))
    with torch.autocast('cpu', dtype=torch.bfloat16, cache_enabled=False):
        stats = ppo_update(policy, opt, ro, PPOConfig(minibatch_size=4, epochs=2))
    assert stats['policy/approx_kl'] > 0                                       # the later minibatches saw the steps


def test_trainer_scores_under_the_sampling_support(tiny):
    "The trainer's scoring pass records the suppressed ids on the rollout and scores under them."
    from fisao.trainer import FiSAOTrainer
    policy, tau = tiny_policy(tiny.tok), 0.7
    ro = fixed_rollout(tiny)
    P = tiny.inputs['input_ids'].shape[1]
    me = SimpleNamespace(acc=SimpleNamespace(device=torch.device('cpu')), suppress=tiny.suppress, policy=policy,
                         cfg=SimpleNamespace(rollout=SimpleNamespace(temperature=tau),
                                             ppo=SimpleNamespace(minibatch_size=4)))
    batch = {'inputs': tiny.inputs, 'input_ids': ro.input_ids, 'attention_mask': ro.attention_mask,
             'response_mask': ro.response_mask, 'truncated': ro.truncated}
    out = FiSAOTrainer.score_policy(me, batch, SimpleNamespace(scores=torch.zeros(ro.response_mask.shape)))
    with torch.no_grad():
        logits, _ = policy(**out.model_inputs())
    lp, _ = _sampler_logprobs(logits, out.input_ids, P, tau, tiny.suppress)
    mask = out.response_mask.bool()
    torch.testing.assert_close(out.logprobs[mask], lp[mask], rtol=0, atol=1e-5)


# ---- item 8: whitening sparse scores

def test_whiten_rewards_keeps_non_mention_scores_zero():
    from fisao.ppo import compute_rewards
    scores = torch.tensor([[0.0, 8.0, 0.0, -2.0, 0.0], [0.0, 0.0, 6.0, 0.0, 0.0]])   # mentions on 3 tokens
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    zeros = torch.zeros_like(scores)
    rewards, _ = compute_rewards(scores, zeros, zeros, mask, kl_coef=0.0, whiten_scores=True)
    assert (rewards[scores == 0] == 0).all(), rewards                         # non-mention tokens stay 0
    rms = math.sqrt((64 + 4 + 36) / 3)
    torch.testing.assert_close(rewards[scores != 0], scores[scores != 0] / rms)  # mentions: scaled, signs kept
