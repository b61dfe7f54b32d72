"""`fisao demo --quick --world dense`: the dense world's quick models are built in the demo directory (3–6 objects per
image), POPE asks 4 questions per image, and the table is the `test` split's, said in results.json and in the printed
header. A smoke test of the code path (quick models, 2 PPO steps), not of the effect."""
import json

from cli_helper import fisao


def test_demo_quick_dense_world(tmp_path):
    out = tmp_path / 'demo_dense'
    r = fisao('demo', '--quick', '--world', 'dense', '--quiet', '--out', out, '--methods', 'fisao_token')
    world = json.loads((out / 'pretrain' / 'world' / 'world.json').read_text())
    assert (world['config']['min_objects'], world['config']['max_objects']) == (3, 6)
    assert 'test' in world['splits']
    res = json.loads((out / 'results.json').read_text())
    assert (res['world'], res['split']) == ('dense', 'test') and set(res['methods']) == {'sft', 'fisao_token'}
    assert 'ShapeWorld test' in res['protocol']['chair'] and '4 questions' in res['protocol']['pope']
    for m in res['methods'].values():
        for s in ('random', 'popular', 'adversarial'):  # 10 quick POPE images × 4 questions
            assert sum(m['pope'][s][k] for k in ('tp', 'fp', 'tn', 'fn')) == 40
    assert 'dense world, split test' in r.stdout and (out / 'report.html').is_file()
