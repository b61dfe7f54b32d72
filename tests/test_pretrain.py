"""`fisao demo --quick` end to end, and `fisao pretrain`'s contract: files, cache reuse, loading through the real path.

One quick demo run (small world, short schedules: a smoke test of the code path, not of the targets) is shared by the
tests of this module. The default configuration's targets are measured in nbs/06_pretrain.ipynb and
benchmarks/RESULTS.md."""
import json
import shutil
import time

import pytest
from cli_helper import fisao


@pytest.fixture(scope='module')
def demo(tmp_path_factory, quick_pretrained):
    "`fisao demo --quick` with the session's quick models copied in (so the demo's pretrain stage is a cache hit)."
    out = tmp_path_factory.mktemp('demo')
    shutil.copytree(quick_pretrained, out / 'pretrain')
    r = fisao('demo', '--quick', '--quiet', '--out', out)
    return out, r


def test_demo_quick_writes_results(demo):
    out, r = demo
    res = json.loads((out / 'results.json').read_text())
    assert res['quick'] is True and set(res['methods']) == {'sft', 'fisao_token', 'fisao_sentence', 'oracle_token'}
    for m in res['methods'].values():
        for k in ('chair_s', 'chair_i', 'recall', 'pope_f1'): assert 0 <= m[k] <= 1, k
        assert m['len'] > 0 and m['dup_per_caption'] >= 0 and set(m['pope']) == {'random', 'popular', 'adversarial'}
    for m in ('fisao_token', 'fisao_sentence', 'oracle_token'):
        assert (out / 'runs' / m / 'summary.json').exists() and list((out / 'runs' / m / 'checkpoints').glob('step-*'))
    assert (out / 'report.html').stat().st_size > 10_000 and (out / 'calibration.json').exists()
    rows = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    assert {'sft', 'fisao_token', 'fisao_sentence', 'oracle_token'} <= set(rows), r.stdout  # the table's method rows
    for line in ('[1/5 pretrain]', '[5/5 report]', 'fisao_token: FiSAO, token-level', 'timings:'):
        assert line in r.stdout, line
    # a second run reuses every stage's output
    again = fisao('demo', '--quick', '--quiet', '--out', out)
    assert again.stdout.count('(reused)') == 3 and 'reused from the cache' in again.stdout


def test_pretrain_json_contract(demo):
    out, _ = demo
    meta = json.loads((out / 'pretrain' / 'pretrain.json').read_text())
    for k in ('verifier_auroc_mentions', 'verifier_auroc_present_absent', 'sft_val_chair_i', 'sft_val_recall',
              'sft_traindist_chair_i', 'timings', 'peak_rss_mb', 'cache_key'):
        assert k in meta, k
    assert meta['timings']['pretrain_s'] > 0
    # what the quick models reach (build 5f97726e7804: AUROC 0.79 / 0.85, recall 0.50, CHAIR_i 0.35), with margin; a
    # verifier that ranks at random (AUROC 0.5) or an SFT policy that names nothing present fails here
    assert meta['verifier_auroc_mentions'] > 0.65 and meta['verifier_auroc_present_absent'] > 0.75, meta
    assert meta['sft_val_recall'] > 0.35 and meta['sft_val_chair_i'] < 0.5 and meta['n_correct_mentions'] > 50, meta


def test_pretrain_reuses_cache_and_force_is_needed_to_retrain(demo):
    out, _ = demo
    t0 = time.perf_counter()
    r = fisao('pretrain', '--quick', '--out', out / 'pretrain', '--quiet')
    assert 'reused from cache' in r.stdout and time.perf_counter() - t0 < 30
    # a different config is a different key: it must not reuse
    meta = json.loads((out / 'pretrain' / 'pretrain.json').read_text())
    from fisao.pretrain import PretrainConfig, cache_key, quick_pretrain_config, quick_world_config
    assert cache_key(quick_pretrain_config(), quick_world_config()) == meta['cache_key']
    assert cache_key(PretrainConfig(), quick_world_config()) != meta['cache_key']


def test_saved_models_load_through_the_real_path(demo):
    out, _ = demo
    import torch

    from fisao.models import format_prompt, load_vlm
    from fisao.pretrain import _to_pil, load_pretrained, load_world_split
    llava, processor, clip, clip_processor = load_pretrained(out / 'pretrain')
    model2, processor2, kind = load_vlm(out / 'pretrain' / 'llava')
    assert kind == 'llava' and not any(p.requires_grad for p in model2.parameters())
    ws = load_world_split(out / 'pretrain' / 'world', 'val', 2)
    enc = processor(images=_to_pil(ws.images), text=[format_prompt('llava', 'Describe the image.', processor)] * 2,
                    return_tensors='pt', padding=True)
    with torch.no_grad():
        torch.testing.assert_close(llava(**enc).logits, model2(**enc).logits)
    # the verifier's vision half is the policy's vision tower, weight for weight
    for k, v in clip.vision_model.state_dict().items():
        torch.testing.assert_close(v, llava.model.vision_tower.state_dict()[k])


def test_missing_pretrained_dir_is_named(tmp_path):
    from fisao.core import MissingPathError
    from fisao.pretrain import load_pretrained
    with pytest.raises(MissingPathError, match='pretrained ShapeWorld models directory not found'):
        load_pretrained(tmp_path / 'nothing')


def test_calibrate_cli_on_shapeworld(demo):
    out, _ = demo
    r = fisao('calibrate', '--quick', '--pretrained', out / 'pretrain', '--out', out / 'cal' / 'calibration.json',
              '--quiet')
    cal = json.loads((out / 'cal' / 'calibration.json').read_text())
    for k in ('b_c', 'b_h', 'auroc', 'n_correct', 'n_hallucinated', 'template', 'scores', 'calibration_image_ids',
              'vision_weights_match', 'model', 'data'):
        assert k in cal, k
    assert (len(cal['scores']['correct']) == cal['n_correct'] > 0
            and len(cal['scores']['hallucinated']) == cal['n_hallucinated'] > 0)
    assert (cal['template'] == 'a photo of a {}' and cal['vision_weights_match'] is True
            and cal['data'] == 'shapeworld:calib')
    assert (out / 'cal' / 'calibration.png').stat().st_size > 5000 and 'AUROC' in r.stdout


def test_calibrate_cli_argument_errors(tmp_path):
    r = fisao('calibrate', '--model', tmp_path / 'nope', '--out', tmp_path / 'c.json', check=False)
    assert r.returncode == 2 and '--model needs --clip' in r.stderr
    r = fisao('calibrate', '--clip', tmp_path / 'clip', '--out', tmp_path / 'c.json', check=False)
    assert r.returncode == 2 and 'need --model' in r.stderr
    r = fisao('calibrate', '--model', tmp_path / 'nope', '--clip', tmp_path, '--instances', tmp_path / 'i.json',
              '--images', tmp_path, '--out', tmp_path / 'c.json', check=False)
    assert r.returncode == 2 and 'i.json' in r.stderr
