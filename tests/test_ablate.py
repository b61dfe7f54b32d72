"""`fisao ablate` end to end on the quick models: the grid runs, the table has mean ± std over seeds, the plot and CSV
are written, a YAML config is read (flags on top), and a second invocation reuses every finished run (resumable).
The ablation's result on the real tiny models is in benchmarks/RESULTS.md (quick models show no effect)."""
import json

from cli_helper import fisao


def test_ablate_grid_table_and_resume(quick_pretrained, tmp_path):
    out = tmp_path / 'ab'
    (tmp_path / 'ab.yaml').write_text('methods: ppo_token,dpo\nrewards: verifier\nseeds: 0,1\nvariants: threshold\n'
                                      f'out: {out}\n')
    args = ['ablate', '--config', tmp_path / 'ab.yaml', '--quick', '--pretrained', quick_pretrained, '--quiet']
    fisao(*args)
    rows = [json.loads(l) for l in (out / 'results.jsonl').read_text().splitlines()]
    assert [(x['cell'], x['seed']) for x in rows] == [
        ('sft', 0), ('ppo_token-verifier', 0), ('ppo_token-verifier', 1), ('dpo-verifier', 0), ('dpo-verifier', 1),
        ('ppo_token-verifier-threshold', 0), ('ppo_token-verifier-threshold', 1)]
    table = (out / 'table.md').read_text()
    assert '| ppo_token-verifier | 2 |' in table and '| dpo-verifier | 2 |' in table and ' ± ' in table
    assert (out / 'ablation.png').stat().st_size > 10_000 and len((out / 'table.csv').read_text().splitlines()) == 8
    for x in rows[1:]:
        assert 0 <= x['chair_i'] <= 1 and 0 <= x['recall'] <= 1 and x['train_s'] > 0 and x['curve']
    # resumable: every run is read back from its result.json, nothing retrains
    mtimes = {p: p.stat().st_mtime for p in out.glob('runs/*/seed*/result.json')}
    r2 = fisao(*args)
    assert {p: p.stat().st_mtime for p in out.glob('runs/*/seed*/result.json')} == mtimes
    assert r2.stdout.count('[') >= 6 and 'table.md' in r2.stdout


def test_ablate_bad_config_is_one_line(tmp_path):
    (tmp_path / 'ab.yaml').write_text('methods: ppo_token,rloo\n')
    r = fisao('ablate', '--config', tmp_path / 'ab.yaml', check=False)
    assert r.returncode == 2 and "unknown ['rloo']" in r.stderr and 'Traceback' not in r.stderr
    r = fisao('ablate', '--variants', 'xi0.1', check=False)
    assert r.returncode == 2 and "unknown ablation variant 'xi0.1'" in r.stderr
