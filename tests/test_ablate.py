"""`fisao ablate` end to end on the quick models: the grid runs, the table has mean ± std over seeds, the plot and CSV
are written, a YAML config is read (flags on top), and a second invocation reuses every finished run (resumable).
The ablation's result on the real tiny models is in benchmarks/RESULTS.md (quick models show no effect)."""
import json

from cli_helper import fisao


def test_ablate_grid_table_and_resume(quick_pretrained, tmp_path):
    out = tmp_path / 'ab'
    (tmp_path / 'ab.yaml').write_text('methods: fisao_token,dpo\nseeds: 0,1\nvariants: threshold\n'
                                      f'out: {out}\n')
    args = ['ablate', '--config', tmp_path / 'ab.yaml', '--quick', '--pretrained', quick_pretrained, '--quiet']
    fisao(*args)
    rows = [json.loads(l) for l in (out / 'results.jsonl').read_text().splitlines()]
    assert [(x['cell'], x['seed']) for x in rows] == [
        ('sft', 0), ('fisao_token', 0), ('fisao_token', 1), ('dpo', 0), ('dpo', 1),
        ('fisao_token-threshold', 0), ('fisao_token-threshold', 1)]
    table = (out / 'table.md').read_text()
    assert '| fisao_token | 2 |' in table and '| dpo | 2 |' in table and ' ± ' in table
    assert (out / 'ablation.png').stat().st_size > 10_000 and len((out / 'table.csv').read_text().splitlines()) == 8
    for x in rows[1:]:
        assert 0 <= x['chair_i'] <= 1 and 0 <= x['recall'] <= 1 and x['train_s'] > 0 and x['curve']
    # resumable: every run is read back from its result.json, nothing retrains
    mtimes = {p: p.stat().st_mtime for p in out.glob('runs/*/seed*/result.json')}
    r2 = fisao(*args)
    assert {p: p.stat().st_mtime for p in out.glob('runs/*/seed*/result.json')} == mtimes
    assert r2.stdout.count('[') >= 6 and 'table.md' in r2.stdout


def test_ablate_bad_config_is_one_line(tmp_path):
    (tmp_path / 'ab.yaml').write_text('methods: fisao_token,rloo\n')
    r = fisao('ablate', '--config', tmp_path / 'ab.yaml', check=False)
    assert r.returncode == 2 and "ablate.methods: unknown method 'rloo'" in r.stderr and 'Traceback' not in r.stderr
    r = fisao('ablate', '--methods', 'ppo_token', check=False)  # the ablation's names before one method table
    assert r.returncode == 2 and 'fisao_token (verifier) or oracle_token (oracle)' in r.stderr
    r = fisao('ablate', '--variants', 'xi0.1', check=False)
    assert r.returncode == 2 and "unknown ablation variant 'xi0.1'" in r.stderr
