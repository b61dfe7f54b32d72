"""Bad input gets an error naming the culprit (file, record, field) — or a counted, logged skip where a run should go on.

Each case runs through the public entry points (the `fisao` CLI in a subprocess, or the library loaders) and asserts the
message names what is wrong. The robustness issue extends this battery; these are the foundation's cases."""
import json

import pytest
from PIL import Image

from cli_helper import fisao as _fisao

from fisao.core import ConfigError, DataError, MissingPathError
from fisao.data import ImageLoadError, load_coco, load_image, load_images, load_llava_instruct
from fisao.shapeworld import WorldConfig


def fisao(*args):
    return _fisao(*args, check=False)  # these tests expect failures


def one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert 'Traceback' not in r.stderr and r.stderr.strip().count('\n') == 0, r.stderr
    for n in needles:
        assert str(n) in r.stderr, (n, r.stderr)


@pytest.fixture
def coco_files(tmp_path):
    inst = {'images': [{'id': 1, 'file_name': 'a.png'}, {'id': 2, 'file_name': 'b.png'}],
            'categories': [{'id': 1, 'name': 'dog'}, {'id': 2, 'name': 'person'}],
            'annotations': [{'id': 10, 'image_id': 1, 'category_id': 1}, {'id': 11, 'image_id': 2, 'category_id': 2}]}
    (tmp_path / 'inst.json').write_text(json.dumps(inst))
    (tmp_path / 'gen.jsonl').write_text('{"image_id": 1, "caption": "A dog."}\n{"image_id": 2, "caption": "A man."}\n')
    return tmp_path, inst


# ---- images -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name,content,needle', [
    ('missing.png', None, 'image not found'),
    ('zero.png', b'', 'is empty (0 bytes)'),
    ('junk.png', b'GIF89a not really', 'cannot be decoded'),
    ('text.jpg', b'hello world', 'cannot be decoded'),
])
def test_bad_image_named(tmp_path, name, content, needle):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises((ImageLoadError, MissingPathError)) as e:
        load_image(p)
    assert needle in str(e.value) and name in str(e.value)


def test_truncated_png_named(tmp_path):
    Image.new('RGB', (128, 128), 'blue').save(tmp_path / 'full.png')
    (tmp_path / 'trunc.png').write_bytes((tmp_path / 'full.png').read_bytes()[:100])
    with pytest.raises(ImageLoadError, match='trunc.png'):
        load_image(tmp_path / 'trunc.png')


def test_huge_image_refused_before_decoding(tmp_path):
    Image.new('L', (3000, 3000)).save(tmp_path / 'big.png')
    with pytest.raises(ImageLoadError, match=r'big.png is 3000x3000'):
        load_image(tmp_path / 'big.png', max_pixels=1_000_000)


@pytest.mark.parametrize('mode', ['L', 'CMYK', 'RGBA', 'P', 'I;16'])
def test_unusual_modes_become_rgb(tmp_path, mode):
    ext = 'jpg' if mode == 'CMYK' else 'png'
    Image.new(mode, (10, 7)).save(tmp_path / f'x.{ext}')
    im = load_image(tmp_path / f'x.{ext}')
    assert im.mode == 'RGB' and im.size == (10, 7)


def test_one_bad_image_in_many_is_a_counted_skip(tmp_path, caplog):
    paths = []
    for i in range(20):
        Image.new('RGB', (4, 4)).save(tmp_path / f'{i}.png')
        paths.append(tmp_path / f'{i}.png')
    (tmp_path / '7.png').write_bytes(b'corrupt')
    paths.append(tmp_path / 'gone.png')
    images, kept, skips = load_images(paths)
    assert len(images) == 19 and 7 not in kept and skips.total == 2
    assert skips.summary()['by_reason'] == {'unreadable': 1, 'missing': 1}
    assert '7.png' in caplog.text and 'gone.png' in caplog.text


# ---- COCO annotation files --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('text,needle', [
    ('', 'is not valid JSON'),
    ('{"images": [', 'is not valid JSON: Expecting value at line 1'),
    ('[]', 'expected a JSON object'),
    ('{"annotations": [], "categories": []}', "missing top-level field 'images'"),
    ('{"images": [{"file_name": "a.png"}], "annotations": [], "categories": []}', "images[0] has no integer 'id'"),
    ('{"images": [{"id": 1}], "annotations": [{"id": 3}], "categories": []}', "annotations[0] (id 3) has no 'image_id'"),
    ('{"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]}', "categories[0] needs an integer 'id' and a non-empty 'name'"),
])
def test_malformed_instances_named(tmp_path, text, needle):
    (tmp_path / 'instances_x.json').write_text(text)
    with pytest.raises(DataError) as e:
        load_coco(tmp_path / 'instances_x.json')
    assert needle in str(e.value) and 'instances_x.json' in str(e.value)


def test_not_utf8_named(tmp_path):
    (tmp_path / 'inst.json').write_bytes(b'\xff\xfe{"images": []}')
    with pytest.raises(DataError, match='inst.json is not'):
        load_coco(tmp_path / 'inst.json')


def test_annotation_to_unknown_image_errors_then_skips_when_asked(coco_files):
    d, inst = coco_files
    inst['annotations'].append({'id': 99, 'image_id': 12345, 'category_id': 1})
    (d / 'inst.json').write_text(json.dumps(inst))
    with pytest.raises(DataError, match=r'annotations\[2\] \(id 99\) points to image id 12345'):
        load_coco(d / 'inst.json')
    assert load_coco(d / 'inst.json', on_error='skip').skips.summary()['by_reason'] == {'unknown image': 1}


def test_annotation_to_unknown_category(coco_files):
    d, inst = coco_files
    inst['annotations'][0]['category_id'] = 77
    (d / 'inst.json').write_text(json.dumps(inst))
    with pytest.raises(DataError, match='category_id 77'):
        load_coco(d / 'inst.json')


def test_empty_and_whitespace_captions_are_counted_skips(tmp_path):
    caps = {'images': [{'id': 1, 'file_name': 'a.png'}], 'annotations': [
        {'id': 1, 'image_id': 1, 'caption': ''}, {'id': 2, 'image_id': 1, 'caption': ' \n\t'},
        {'id': 3, 'image_id': 1, 'caption': 'Ünïcödé dog ☃.'}, {'id': 4, 'image_id': 1, 'caption': 'a dog ' * 2000}]}
    (tmp_path / 'caps.json').write_text(json.dumps(caps))
    c = load_coco(tmp_path / 'caps.json', 'captions')
    assert len(c.getAnnIds()) == 2 and c.skips.summary()['by_reason'] == {'empty caption': 2}


# ---- the CLI: one clear line, exit 2 ---------------------------------------------------------------------------------
def test_cli_missing_generations(coco_files):
    d, _ = coco_files
    one_line_error(fisao('eval', 'chair', '--generations', d / 'nope.jsonl', '--instances', d / 'inst.json'), 'nope.jsonl', 'not found')


def test_cli_malformed_generations_line(coco_files):
    d, _ = coco_files
    (d / 'gen.jsonl').write_text('{"image_id": 1, "caption": "A dog."}\n{"image_id": 2, caption}\n')
    one_line_error(fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json'), 'gen.jsonl, line 2')


def test_cli_generation_missing_field(coco_files):
    d, _ = coco_files
    (d / 'gen.jsonl').write_text('{"image_id": 1}\n')
    one_line_error(fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json'), "record 1", "'caption'")


def test_cli_generation_for_unknown_image(coco_files):
    d, _ = coco_files
    (d / 'gen.jsonl').write_text('{"image_id": 5, "caption": "A dog."}\n')
    one_line_error(fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json'), 'image_id 5')


def test_cli_category_outside_vocabulary(coco_files):
    d, inst = coco_files
    inst['categories'][0]['name'] = 'unicorn'
    (d / 'inst.json').write_text(json.dumps(inst))
    one_line_error(fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json'), "'unicorn'", 'vocabulary')


def test_cli_empty_generations_file(coco_files):
    d, _ = coco_files
    (d / 'gen.jsonl').write_text('\n\n')
    one_line_error(fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json'), 'no captions to evaluate')


def test_cli_missing_vocab_file(coco_files):
    d, _ = coco_files
    one_line_error(fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json', '--vocab', d / 'v.txt'), 'v.txt')


@pytest.mark.parametrize('flag,value,needle', [
    ('--caption-noise', '1.5', 'world.caption_noise'),
    ('--n-train', '-3', 'world.n_train'),
    ('--max-objects', '9', 'world.max_objects'),
    ('--image-size', '8', 'world.image_size'),
    ('--object-size', '0.01', 'world.object_size'),
])
def test_cli_bad_world_values(tmp_path, flag, value, needle):
    one_line_error(fisao('world', '--out', tmp_path / 'w', flag, value, '--quiet'), needle)
    assert not (tmp_path / 'w').exists()  # refused before anything was written


def test_cli_wrong_type_is_argparse_error(tmp_path):
    r = fisao('world', '--out', tmp_path / 'w', '--n-train', 'many')
    assert r.returncode == 2 and "invalid int value: 'many'" in r.stderr


# ---- LLaVA-Instruct records ------------------------------------------------------------------------------------------
def test_llava_instruct_bad_records(tmp_path):
    recs = [{'id': 1, 'image': 'a.jpg', 'conversations': [{'from': 'human', 'value': '<image>\nDescribe.'}]},
            {'id': 2, 'conversations': [{'from': 'human', 'value': 'Hi'}]},
            {'id': 3, 'image': 'c.jpg'},
            {'id': 4, 'image': 'd.jpg', 'conversations': [{'from': 'gpt', 'value': 'x'}]},
            {'id': 5, 'image': 'e.jpg', 'conversations': [{'from': 'human', 'value': '<image>'}]},
            'not a record']
    (tmp_path / 'llava.json').write_text(json.dumps(recs))
    out, skips = load_llava_instruct(tmp_path / 'llava.json')
    assert [r['id'] for r in out] == [1]
    assert skips.summary()['by_reason'] == {'no image': 1, 'no conversations': 1, 'no human turn': 1, 'empty prompt': 1, 'not an object': 1}
    with pytest.raises(DataError, match=r"record 1 \(id 2\) has no 'image'"):
        load_llava_instruct(tmp_path / 'llava.json', on_error='raise')


def test_world_config_type_errors():
    with pytest.raises(ConfigError, match='world.n_val'):
        WorldConfig(n_val=2.5)
    with pytest.raises(ConfigError, match='world.colors'):
        WorldConfig(colors=('red', 'ultraviolet'))
