"""`fisao score`: the verifier audited mention by mention (issue 16), on the quick ShapeWorld models.

The JSON contract (keys and mention fields), a repeated mention of a present object (coreference) never punished, the
policy's tower matching CLIP's in bf16 too, the readable table, the heatmap, the audit, and the real-model path (local
directories, an image file and a COCO instances file)."""
import json

import pytest
from cli_helper import fisao

KEYS = {'image_id', 'objects_present', 'caption', 'reading', 'vision_weights_match', 'vision_max_abs_diff', 'mentions'}
MENTION = {'word', 'object', 'start', 'end', 'score', 'normalized', 'reward', 'repeat', 'label'}


@pytest.fixture(scope='module')
def cal(quick_pretrained, tmp_path_factory):
    "A calibration of the quick models, shared by this module's commands."
    out = tmp_path_factory.mktemp('score') / 'calibration.json'
    fisao('calibrate', '--pretrained', quick_pretrained, '--quick', '--out', out, '--quiet')
    return out


def _score(qp, cal, *args):
    return fisao('score', '--pretrained', qp, '--quick', '--calibration', cal, *args)


def test_json_contract_and_a_repeat_of_a_present_object(quick_pretrained, cal):
    own = json.loads(_score(quick_pretrained, cal, '--index', '3', '--json').stdout)
    assert set(own) == KEYS and own['caption'] and own['reading'] == 'threshold'
    assert all(set(m) == MENTION for m in own['mentions'])
    x = own['objects_present'][0]
    res = json.loads(_score(quick_pretrained, cal, '--index', '3', '--caption', f'a {x} . the {x} .', '--json').stdout)
    first, second = res['mentions']
    assert (first['object'], second['object'], second['repeat'], second['label']) == (x, x, True, 'correct')
    assert second['start'] == len(f'a {x} . the ') and second['reward'] >= 0, res
    assert res['vision_weights_match'] is True and res['vision_max_abs_diff'] == 0.0


def test_bf16_policy_still_matches_its_verifier_tower(quick_pretrained, cal):
    res = json.loads(_score(quick_pretrained, cal, '--index', '1', '--dtype', 'bf16', '--json').stdout)
    # compared in the tower's dtype: CLIP's fp32 weights cast to bf16 are the bf16 tower's weights exactly
    assert res['vision_weights_match'] is True and res['vision_max_abs_diff'] == 0.0, res


def test_table_heatmap_and_audit(quick_pretrained, cal, tmp_path):
    r = _score(quick_pretrained, cal, '--index', '2', '--png', tmp_path / 'h.png')
    assert 'caption:' in r.stdout and 'N(s)' in r.stdout and (tmp_path / 'h.png').stat().st_size > 2000
    import numpy as np
    from PIL import Image
    png = np.asarray(Image.open(tmp_path / 'h.png').convert('L'), dtype=float)
    h, w = png.shape
    # the image beside its caption: ShapeWorld's shapes on black fill the heatmap's left edge (blank paper: ~240)
    assert png[h // 4: 3 * h // 4, : w // 12].mean() < 120, png[h // 4: 3 * h // 4, : w // 12].mean()
    a = _score(quick_pretrained, cal, '--audit', '--n', '24', '--out', tmp_path / 'audit')
    assert 'verifier audit:' in a.stdout and a.stdout.count('\n') > 3
    res = json.loads((tmp_path / 'audit' / 'audit.json').read_text())
    assert res['n_images'] == 24 and res['table'][-1]['object'] == 'all'
    assert res['table'][-1]['mentions'] == res['n_mentions'] == len(res['mentions'])
    assert (tmp_path / 'audit' / 'reliability.png').stat().st_size > 5000


def test_real_model_path(quick_pretrained, cal):
    "`--model/--clip/--image/--instances`: the path a LLaVA-1.5 checkpoint takes, on the quick model's files."
    world = quick_pretrained / 'world'
    inst = json.loads((world / 'annotations' / 'instances_val.json').read_text())
    im = inst['images'][0]
    r = fisao('score', '--model', quick_pretrained / 'llava', '--clip', quick_pretrained / 'clip', '--calibration', cal,
              '--image', world / 'images' / 'val' / im['file_name'], '--vocab', world / 'vocab.txt',
              '--instances', world / 'annotations' / 'instances_val.json', '--json')
    res = json.loads(r.stdout)
    assert res['image_id'] == im['id'] and res['objects_present'] and set(res) == KEYS
    bad = fisao('score', '--model', quick_pretrained / 'llava', '--clip', quick_pretrained / 'clip', check=False)
    assert bad.returncode == 2 and '--calibration' in bad.stderr
