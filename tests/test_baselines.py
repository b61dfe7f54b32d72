"""The trl baselines (`fisao.baselines`, nbs/14_baselines.ipynb) end to end on the quick ShapeWorld models:
one GRPO step and a two-step-budget DPO run, each writing a peft adapter that `fisao.eval.load_policy` loads,
and a summary with held-out CHAIR before/after."""
import json
from pathlib import Path

SUMMARY_KEYS = {'method', 'steps', 'train_time_s', 'adapter', 'model', 'reward', 'calibration', 'before', 'after',
                'budget', 'train'}
EVAL_KEYS = {'eval/chair_s', 'eval/chair_i', 'eval/recall', 'eval/len', 'eval/dup_per_caption'}


def _cfg(out, pretrained, **kw):
    from fisao.trainconfig import config_from_flat
    base = {'out': str(out), 'model.pretrained': str(pretrained), 'model.quick': True, 'steps': 1, 'rollout.batch': 8,
            'ppo.minibatch_size': 4, 'ppo.epochs': 4, 'rollout.max_new_tokens': 12, 'eval.images': 10,
            'log.progress': False, 'log.report_to': 'none', 'device': 'cpu'}
    return config_from_flat({**base, **kw})


def _check(summary, out, method):
    assert SUMMARY_KEYS <= set(summary), SUMMARY_KEYS - set(summary)
    assert summary['method'] == method
    assert set(summary['before']) == EVAL_KEYS and set(summary['after']) == EVAL_KEYS
    adapter = Path(summary['adapter'])
    assert adapter == out / 'adapter'
    assert (adapter / 'adapter_config.json').is_file() and (adapter / 'adapter_model.safetensors').is_file()
    assert json.loads((out / 'summary.json').read_text())['method'] == method
    from fisao.models import load_policy
    model, _, kind = load_policy(summary['model'], adapter)  # what `fisao eval` does with an adapter directory
    assert kind == 'llava' and any('lora_' in n for n, _ in model.named_parameters())


def test_grpo_and_dpo_quick(quick_pretrained, tmp_path):
    import torch
    torch.set_num_threads(1)
    from fisao.baselines import run_dpo, run_grpo
    grpo_out = tmp_path / 'grpo'
    s = run_grpo(_cfg(grpo_out, quick_pretrained), num_generations=4, beta=0.1)
    _check(s, grpo_out, 'grpo')
    assert s['budget']['optimizer_steps'] == 8 and s['budget']['completions'] == 8  # 8/4 minibatches x 4 iterations
    dpo_out = tmp_path / 'dpo'
    s = run_dpo(_cfg(dpo_out, quick_pretrained, steps=2, calibration=str(grpo_out / 'calibration.json')), n_samples=4)
    _check(s, dpo_out, 'dpo')
    assert s['budget']['completions'] == 16 and 1 <= s['budget']['pairs'] <= 4
