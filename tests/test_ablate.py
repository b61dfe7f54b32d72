"""`fisao ablate` end to end on the quick models: a grid over two KL budgets (β) evaluated on two splits (dev, test),
one results.jsonl row per run per split, the per-split tables, frontier tables and plots, β reaching PPO's KL penalty
and DPO's β, a YAML config read with flags on top, and a second invocation that reuses every finished run (resumable).
The ablation's result on the real tiny models is in benchmarks/RESULTS.md (quick models show no effect)."""
import json

import yaml
from cli_helper import fisao


def test_ablate_kl_budgets_splits_table_and_resume(quick_pretrained, tmp_path):
    out = tmp_path / 'ab'
    (tmp_path / 'ab.yaml').write_text("methods: fisao_token,dpo\nseeds: 0,1\nvariants: ''\nkl_coefs: 0.05,0.5\n"
                                      f'splits: dev,test\nout: {out}\n')
    args = ['ablate', '--config', tmp_path / 'ab.yaml', '--quick', '--pretrained', quick_pretrained, '--quiet']
    fisao(*args)
    rows = [json.loads(l) for l in (out / 'results.jsonl').read_text().splitlines()]
    runs = [(c, s) for c in ('fisao_token@b0.05', 'fisao_token@b0.5', 'dpo@b0.05', 'dpo@b0.5') for s in (0, 1)]
    assert [(x['cell'], x['seed'], x['split']) for x in rows] == [('sft', 0, 'dev'), ('sft', 0, 'test')] + [
        (c, s, split) for c, s in runs for split in ('dev', 'test')]
    for x in rows[2:]:
        assert x['kl_coef'] == float(x['cell'].split('@b')[1]) and x['method'] == x['cell'].split('@')[0]
        assert 0 <= x['chair_i'] <= 1 and 0 <= x['recall'] <= 1 and x['train_s'] > 0 and x['curve']
    # β is PPO's KL penalty and DPO's beta (the settings: the preset, TrainConfig())
    cfg = yaml.safe_load((out / 'runs' / 'fisao_token@b0.5' / 'seed0' / 'config.yaml').read_text())
    assert cfg['kl']['coef'] == 0.5 and cfg['reward']['reading'] == 'threshold' and cfg['ppo']['ent_coef'] == 0.01
    assert json.loads((out / 'runs' / 'dpo@b0.05' / 'seed1' / 'summary.json').read_text())['budget']['beta'] == 0.05
    for split in ('dev', 'test'):
        table = (out / f'table_{split}.md').read_text()
        assert '| fisao_token@b0.05 | 2 |' in table and '| dpo@b0.5 | 2 |' in table and ' ± ' in table
        front = (out / f'frontier_{split}.md').read_text()
        assert f'split {split}' in front and '| fisao_token | 0.05 | 2 |' in front and '| dpo | 0.5 | 2 |' in front
        assert (out / f'frontier_{split}.png').stat().st_size > 10_000
    assert len((out / 'table.csv').read_text().splitlines()) == 1 + len(rows)
    # resumable: every run is read back from its result_<split>.json, nothing retrains
    mtimes = {p: p.stat().st_mtime for p in out.glob('runs/*/seed*/result_*.json')}
    assert len(mtimes) == 16
    r2 = fisao(*args)
    assert {p: p.stat().st_mtime for p in out.glob('runs/*/seed*/result_*.json')} == mtimes
    assert r2.stdout.count('[') >= 8 and 'table_test.md' in r2.stdout


def test_ablate_bad_config_is_one_line(tmp_path):
    (tmp_path / 'ab.yaml').write_text('methods: fisao_token,rloo\n')
    r = fisao('ablate', '--config', tmp_path / 'ab.yaml', check=False)
    assert r.returncode == 2 and "ablate.methods: unknown method 'rloo'" in r.stderr and 'Traceback' not in r.stderr
    r = fisao('ablate', '--methods', 'ppo_token', check=False)  # the ablation's names before one method table
    assert r.returncode == 2 and 'fisao_token (verifier) or oracle_token (oracle)' in r.stderr
    r = fisao('ablate', '--variants', 'xi0.1', check=False)
    assert r.returncode == 2 and "unknown ablation variant 'xi0.1'" in r.stderr
    for flag, value, msg in (('--splits', 'dev,train', "ablate.splits: 'train' is not a held-out split"),
                             ('--kl-coefs', '0.1,x', "ablate.kl_coefs must be comma-separated numbers >= 0"),
                             ('--settings', 'tuned', "ablate.settings must be preset or legacy")):
        r = fisao('ablate', flag, value, check=False)
        assert r.returncode == 2 and msg in r.stderr and 'Traceback' not in r.stderr, (flag, r.stderr)
