"""Issue 17, item 3: sequence GRPO and token-level GRPO as advantage estimators of our PPO loop.

- `group_advantages` / `token_group_advantages` agree with a plain float64 loop over groups, rows and tokens (ragged
  masks, G = 2, 3, 4, a group whose returns are all equal);
- the settings are validated (`ppo.advantage_estimator`, `ppo.group_size`, `rollout.batch` a multiple of it), the
  methods of `METHODS` set the estimator, and `--ppo.advantage-estimator` is a flag of `fisao train`;
- each process samples whole groups (the prompts are split by rank before they are repeated);
- one training step on the quick models runs with each group estimator: its rows come in groups, its advantages are the
  estimator's (not whitened), and the value head does not move while the LoRA does.
"""
import math

import numpy as np
import pytest
import torch

ESTIMATORS = ('grpo', 'token_grpo')


def group_reference(rewards, mask, G, token_level, eps=1e-6):
    """The definitions, in float64 loops over groups, rows and tokens (prefix masks). R_i = Σ_t r_{i,t};
    sequence: A_{i,t} = (R_i − mean_g R)/(std_g R + eps);
    token: A_{i,t} = (G_{i,t} − mean_{j≠i} G_{j,t})/(std_g R + eps), G_{j,t} the return-to-go of row j from t (0 once
    it has ended); a group whose returns are all equal: 0.
    Returns `(advantages, returns)`, returns the return-to-go on response tokens."""
    B, T = len(rewards), len(rewards[0])
    adv, ret = [[0.0] * T for _ in range(B)], [[0.0] * T for _ in range(B)]
    for g0 in range(0, B, G):
        rows = list(range(g0, g0 + G))
        rtg = {i: [sum(rewards[i][u] for u in range(t, T) if mask[i][u]) for t in range(T)] for i in rows}
        R = {i: sum(rewards[i][t] for t in range(T) if mask[i][t]) for i in rows}
        mean = sum(R.values()) / G
        std = math.sqrt(sum((R[i] - mean) ** 2 for i in rows) / (G - 1))
        for i in rows:
            for t in range(T):
                if not mask[i][t]: continue
                ret[i][t] = rtg[i][t]
                if max(R.values()) == min(R.values()): continue
                if token_level:
                    baseline = sum(rtg[j][t] for j in rows if j != i) / (G - 1)
                    adv[i][t] = (rtg[i][t] - baseline) / (std + eps)
                else:
                    adv[i][t] = (R[i] - mean) / (std + eps)
    return torch.tensor(adv, dtype=torch.float64), torch.tensor(ret, dtype=torch.float64)


def random_rewards(G, n_groups=5, T=9, seed=0):
    "Random rewards (NaN off the response), ragged prefix masks; group 0's rows identical (equal returns)."
    g = torch.Generator().manual_seed(seed)
    B = G * n_groups
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[1] = T                                                          # a row that runs to the budget
    mask = (torch.arange(T)[None] < lengths[:, None]).long()                # (B, T)
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    rewards[:G], mask[:G] = rewards[0], mask[0]                             # a group whose returns are all equal
    return rewards.masked_fill(mask == 0, float('nan')), mask


@pytest.mark.parametrize('estimator', ESTIMATORS)
@pytest.mark.parametrize('G', [2, 3, 4])
def test_group_estimators_match_a_python_loop(estimator, G):
    from fisao.ppo import GROUP_ESTIMATORS
    rewards, mask = random_rewards(G, seed=G)
    want_adv, want_ret = group_reference(rewards.tolist(), mask.tolist(), G, estimator == 'token_grpo')
    adv, ret = GROUP_ESTIMATORS[estimator](rewards, mask, G)
    torch.testing.assert_close(adv, want_adv, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ret, want_ret, rtol=1e-9, atol=1e-9)
    assert torch.isfinite(adv).all() and (adv[:G] == 0).all() and (adv[mask == 0] == 0).all()
    assert adv[G:].abs().max() > 0.1                                       # the comparison is not vacuous
    adv32, _ = GROUP_ESTIMATORS[estimator](rewards.float(), mask, G)
    torch.testing.assert_close(adv32.double(), want_adv, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('estimator', ESTIMATORS)
def test_group_estimators_refuse_a_batch_of_broken_groups(estimator):
    from fisao.core import ConfigError
    from fisao.ppo import GROUP_ESTIMATORS
    with pytest.raises(ConfigError, match=r'group_size \(4\) must be >= 2 and divide the rollout rows \(6\)'):
        GROUP_ESTIMATORS[estimator](torch.zeros(6, 3), torch.ones(6, 3), 4)


def test_group_estimator_settings_are_validated():
    from fisao.core import ConfigError
    from fisao.ppo import PPOConfig
    from fisao.trainconfig import config_from_flat, load_config, train_help
    with pytest.raises(ConfigError, match='ppo.advantage_estimator must be one of gae, grpo, token_grpo'):
        PPOConfig(advantage_estimator='rloo')
    with pytest.raises(ConfigError, match='ppo.group_size must be >= 2'):
        PPOConfig(advantage_estimator='grpo', group_size=1)
    PPOConfig(group_size=1)                                                 # GAE does not group
    with pytest.raises(ConfigError, match=r'rollout.batch \(12\) must be a multiple of ppo.group_size \(8\)'):
        config_from_flat({'ppo.advantage_estimator': 'token_grpo', 'ppo.group_size': 8, 'rollout.batch': 12,
                          'ppo.minibatch_size': 4})
    cfg = load_config(None, ['--ppo.advantage-estimator', 'token_grpo', '--ppo.group-size', '8'])
    assert (cfg.ppo.advantage_estimator, cfg.ppo.group_size) == ('token_grpo', 8)
    assert '--ppo.advantage-estimator' in train_help() and '--ppo.group-size' in train_help()


def test_methods_set_the_estimator():
    from fisao.trainconfig import METHODS, config_from_flat, method_overrides
    names = list(METHODS)
    assert names.index('oracle_token_grpo') < names.index('grpo') and names.index('oracle_sentence') < names.index(
        'fisao_token_grpo')                                                 # after the PPO rows, before trl's
    want = {'fisao_token_grpo': ('token_grpo', 'verifier', 'threshold'),
            'fisao_sentence_grpo': ('grpo', 'verifier', 'sentence'),
            'oracle_token_grpo': ('token_grpo', 'oracle', 'threshold'), 'fisao_token': ('gae', 'verifier', 'threshold')}
    for name, (estimator, source, reading) in want.items():
        o = method_overrides(name)
        assert (o['ppo.advantage_estimator'], o['reward.source'], o['reward.reading']) == (estimator, source, reading)
        assert METHODS[name].optimiser == 'ppo'
    for name in METHODS: config_from_flat(method_overrides(name))           # every method makes a valid config


def test_each_process_samples_whole_groups():
    from fisao.trainer import PromptSet
    ps = PromptSet(list(range(50)), ['x'] * 50)
    for step in (0, 3, 7):                                                  # 7: the permutation wraps around
        old = ps.rows_for_step(step, 16 * 2, seed=1)
        for rank in (0, 1):                                                 # G = 1: the strided shard as before
            np.testing.assert_array_equal(ps.rows_for_process(step, 16, rank, 2, seed=1), old[rank::2])
        shards = [ps.rows_for_process(step, 16, rank, 2, seed=1, group_size=4) for rank in (0, 1)]
        for rows in shards:
            assert len(rows) == 16
            groups = rows.reshape(-1, 4)
            assert (groups == groups[:, :1]).all()                          # each prompt G times, consecutively
        prompts = [set(s[::4].tolist()) for s in shards]
        assert not prompts[0] & prompts[1]                                  # whole groups: no prompt on both ranks
        assert sorted(prompts[0] | prompts[1]) == sorted(ps.rows_for_step(step, 16 * 2 // 4, seed=1).tolist())


def test_eval_split_is_the_dev_split():
    from fisao.trainconfig import EvalConfig
    assert EvalConfig().split == 'dev'


# ---- one training step on the quick models

@pytest.fixture(scope='module')
def calibration(quick_pretrained, tmp_path_factory):
    "A calibration of the quick policy, shared by the steps below (each trainer would otherwise calibrate again)."
    from fisao.workspace import run_calibration
    out = tmp_path_factory.mktemp('group_cal') / 'calibration.json'
    run_calibration(out, pretrained=quick_pretrained, quick=True, max_new_tokens=16, progress=False)
    return out


@pytest.mark.parametrize('estimator', ESTIMATORS)
def test_a_training_step_runs_with_each_group_estimator(estimator, quick_pretrained, calibration, tmp_path):
    from fisao.ppo import GROUP_ESTIMATORS
    from fisao.trainconfig import load_config
    from fisao.trainer import FiSAOTrainer
    torch.set_num_threads(1)
    cfg = load_config(None, ['--model.pretrained', str(quick_pretrained), '--model.quick', '--out', str(tmp_path / 'r'),
                             '--verifier.calibration', str(calibration), '--ppo.advantage-estimator', estimator,
                             '--ppo.group-size', '4', '--rollout.batch', '8', '--ppo.minibatch-size', '4',
                             '--ppo.epochs', '1', '--rollout.max-new-tokens', '16', '--optim.lr', '3e-3',
                             '--no-log.progress', '--log.report-to', 'none'])
    trainer = FiSAOTrainer(cfg)
    seen, update = [], trainer.update
    trainer.update = lambda rollout, step: (seen.append(rollout), update(rollout, step))[1]
    head = {k: v.clone() for k, v in trainer.unwrapped.value_head.state_dict().items()}
    lora = {n: p.detach().clone() for n, p in trainer.unwrapped.named_parameters() if 'lora_B' in n}
    m = trainer.rollout_step(0)
    ids = trainer._last_rollout[0]
    assert len(ids) == 8 and all(ids[k] == ids[k - k % 4] for k in range(8)) and ids[0] != ids[4], ids
    (ro,) = seen
    # token_grpo: the trainer's one σ for the rollout (the std of every row's return)
    kw = {'scale': float((ro.rewards * ro.response_mask).sum(-1).std())} if estimator == 'token_grpo' else {}
    adv, ret = GROUP_ESTIMATORS[estimator](ro.rewards, ro.response_mask, 4, **kw)
    torch.testing.assert_close(ro.advantages, adv)
    torch.testing.assert_close(ro.returns, ret)
    for k in ('policy/clipfrac', 'policy/approx_kl', 'loss/policy', 'loss/value', 'val/explained_variance',
              'policy/entropy', 'objective/kl'):
        assert k in m, k
    assert math.isfinite(m['loss/policy']) and math.isfinite(m['policy/approx_kl'])
    assert all(torch.equal(v, head[k]) for k, v in trainer.unwrapped.value_head.state_dict().items())
    assert any(not torch.equal(p, lora[n]) for n, p in trainer.unwrapped.named_parameters() if 'lora_B' in n)


def test_trainer_scales_token_grpo_by_the_rollouts_return_spread():
    """A group whose returns nearly agree (here: 10.3, 9.6, 9.8, 9.8 — the same mention rewards, KL apart) must not blow
    its token advantages up by dividing by its own tiny spread: the trainer divides every group by one σ, the std of
    all rows' returns. Before the fix the trainer gave |A| up to ~35 in that group (greatest difference 34.2)."""
    from types import SimpleNamespace

    from fisao.ppo import PPOConfig, Rollout, token_group_advantages
    from fisao.trainer import FiSAOTrainer
    T = 6
    rewards = torch.zeros(8, T)                                          # (B, T): two groups of 4
    rewards[:4, 1] = 10.0                                                # group 0: one +10 mention each …
    rewards[:4, 4] = torch.tensor([0.3, -0.4, -0.2, -0.2])              # … and a little KL at another token
    rewards[0, 1], rewards[0, 3] = 0.0, 10.0                             # the timing differs in one sample
    rewards[4:, 2] = torch.tensor([10.0, -10.0, 10.0, -10.0])            # group 1: a real disagreement
    mask = torch.ones(8, T)
    ro = Rollout(torch.zeros(8, T + 2, dtype=torch.long), torch.ones(8, T + 2), torch.zeros(8, 3, 4, 4), mask,
                 rewards=rewards)
    fake = SimpleNamespace(cfg=SimpleNamespace(ppo=PPOConfig(advantage_estimator='token_grpo', group_size=4)), acc=None)
    A = FiSAOTrainer.advantages(fake, ro).advantages                    # (B, T)
    sigma = float(rewards.sum(-1).std())
    torch.testing.assert_close(A, token_group_advantages(rewards, mask, 4, scale=sigma)[0])
    assert A[:4].abs().max() < 2 and A[4:].abs().max() < 2
    assert token_group_advantages(rewards, mask, 4)[0][:4].abs().max() > 20   # the group's own σ: the blow-up
