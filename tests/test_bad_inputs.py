"""Bad input gets an error naming the culprit (file, record, field) — or a counted, logged skip where a run
should go on.

Each case runs through the public entry points (the `fisao` CLI in a subprocess, or the library loaders) and asserts the
message names what is wrong. The robustness issue extends this battery; these are the foundation's cases."""
import json

import pytest
from cli_helper import fisao as _fisao
from PIL import Image

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


# ---- images ----------------------------------------------------------------------------------------------------------
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


# ---- COCO annotation files -------------------------------------------------------------------------------------------
@pytest.mark.parametrize('text,needle', [
    ('', 'is not valid JSON'),
    ('{"images": [', 'is not valid JSON: Expecting value at line 1'),
    ('[]', 'expected a JSON object'),
    ('{"annotations": [], "categories": []}', "missing top-level field 'images'"),
    ('{"images": [{"file_name": "a.png"}], "annotations": [], "categories": []}', "images[0] has no integer 'id'"),
    ('{"images": [{"id": 1}], "annotations": [{"id": 3}], "categories": []}',
     "annotations[0] (id 3) has no 'image_id'"),
    ('{"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]}',
     "categories[0] needs an integer 'id' and a non-empty 'name'"),
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
        {'id': 3, 'image_id': 1, 'caption': 'Ünïcödé dog ☃.'},
        {'id': 4, 'image_id': 1, 'caption': 'a dog ' * 2000}]}
    (tmp_path / 'caps.json').write_text(json.dumps(caps))
    c = load_coco(tmp_path / 'caps.json', 'captions')
    assert len(c.getAnnIds()) == 2 and c.skips.summary()['by_reason'] == {'empty caption': 2}


# ---- the CLI: one clear line, exit 2 ---------------------------------------------------------------------------------
def test_cli_missing_generations(coco_files):
    d, _ = coco_files
    one_line_error(fisao('eval', 'chair', '--generations', d / 'nope.jsonl', '--instances', d / 'inst.json'),
                   'nope.jsonl', 'not found')


def test_cli_malformed_generations_line(coco_files):
    d, _ = coco_files
    (d / 'gen.jsonl').write_text('{"image_id": 1, "caption": "A dog."}\n{"image_id": 2, caption}\n')
    one_line_error(fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json'),
                   'gen.jsonl, line 2')


def test_cli_generation_missing_field(coco_files):
    d, _ = coco_files
    (d / 'gen.jsonl').write_text('{"image_id": 1}\n')
    one_line_error(fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json'),
                   "record 1", "'caption'")


def test_cli_generation_for_unknown_image(coco_files):
    d, _ = coco_files
    (d / 'gen.jsonl').write_text('{"image_id": 5, "caption": "A dog."}\n')
    one_line_error(fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json'),
                   'image_id 5')


def test_cli_category_outside_vocabulary(coco_files):
    d, inst = coco_files
    inst['categories'][0]['name'] = 'unicorn'
    (d / 'inst.json').write_text(json.dumps(inst))
    one_line_error(fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json'),
                   "'unicorn'", 'vocabulary')


def test_cli_empty_generations_file(coco_files):
    d, _ = coco_files
    (d / 'gen.jsonl').write_text('\n\n')
    one_line_error(fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json'),
                   'no captions to evaluate')


def test_cli_missing_vocab_file(coco_files):
    d, _ = coco_files
    one_line_error(fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json',
                         '--vocab', d / 'v.txt'), 'v.txt')


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
    assert skips.summary()['by_reason'] == {'no image': 1, 'no conversations': 1, 'no human turn': 1,
                                            'empty prompt': 1, 'not an object': 1}
    with pytest.raises(DataError, match=r"record 1 \(id 2\) has no 'image'"):
        load_llava_instruct(tmp_path / 'llava.json', on_error='raise')


def test_world_config_type_errors():
    with pytest.raises(ConfigError, match='world.n_val'):
        WorldConfig(n_val=2.5)
    with pytest.raises(ConfigError, match='world.colors'):
        WorldConfig(colors=('red', 'ultraviolet'))


# ---- captions that are odd but valid are scored, not refused ---------------------------------------------------------
def test_cli_non_ascii_and_very_long_captions_are_scored(coco_files):
    d, _ = coco_files
    long = 'A dog. ' + 'There is a dog on the grass. ' * 350  # ~10k characters
    (d / 'gen.jsonl').write_text(json.dumps({'image_id': 1, 'caption': long}) + '\n' +
                                 json.dumps({'image_id': 2, 'caption': 'Ünïcödé: a man 👋 next to a dog.'},
                                            ensure_ascii=False) + '\n', encoding='utf-8')
    r = fisao('eval', 'chair', '--generations', d / 'gen.jsonl', '--instances', d / 'inst.json',
              '--out', d / 'res.json')
    assert r.returncode == 0, r.stderr
    res = json.loads((d / 'res.json').read_text())
    assert len(long) > 10_000 and res['n_captions'] == 2
    # 351 dogs in the long one; man + a hallucinated dog in the other
    assert res['n_mentions'] == 353 and res['n_hallucinated'] == 1
    per = [json.loads(l) for l in (d / 'res.per_caption.jsonl').read_text(encoding='utf-8').splitlines()]
    assert per[1]['caption'].startswith('Ünïcödé') and per[1]['hallucinated'] == ['dog']


# ---- training configs: refused at load time, naming the field --------------------------------------------------------
@pytest.mark.parametrize('yaml_text,flags,needle', [
    ('stpes: 3\n', [], "unknown field 'stpes'"),
    ('steps: ten\n', [], 'steps must be int'),
    ('rollout:\n  batch: [16]\n', [], 'rollout.batch must be int'),
    ('reward:\n  repetition_guard: maybe\n', [], 'reward.repetition_guard must be true or false'),
    ('reward:\n  xi: .nan\n', [], 'xi'),
    ('', ['--optim.lr', 'inf'], 'lr must be a finite number'),
    ('', ['--optim.lr', 'nan'], 'lr must be a finite number'),
    ('', ['--rollout.batch', '0'], 'rollout.batch must be >= 1'),
    ('', ['--rollout.max-new-tokens', '-5'], 'max_new_tokens must be >= 1'),
    ('', ['--eval.images', '-1'], 'eval.images must be >= 0'),
    ('', ['--rollout.batch', '48', '--ppo.minibatch-size', '32'], 'minibatch_size (32) must divide rollout.batch (48)'),
    ('', ['--rollout.temperature', '0'], 'temperature must be a finite number in (0'),
    ('', ['--rollout.top-p', '1.5'], 'top_p must be a finite number in (0, 1]'),
    ('', ['--ppo.gamma', '2'], 'gamma must be a finite number in [0, 1]'),
    ('', ['--mixed-precision', 'fp8'], 'mixed_precision must be no, fp16 or bf16'),
    ('- 1\n- 2\n', [], 'must be a mapping of TrainConfig fields'),
    ('steps: [1\n', [], 'is not valid YAML'),
])
def test_train_config_refused(tmp_path, capsys, yaml_text, flags, needle):
    # in process: these fail before anything heavy, so a subprocess each would only add start-up time
    from fisao.cli import main
    cfg = tmp_path / 'c.yaml'
    cfg.write_text(yaml_text)
    rc = main(['train', '--config', str(cfg), *flags, '--print-config'])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().count('\n') == 0 and needle in err, (rc, err)
    # file-level problems name the file; value ranges name the field
    if yaml_text and 'xi' not in needle: assert 'c.yaml' in err


def test_train_config_file_missing(tmp_path):
    one_line_error(fisao('train', '--config', tmp_path / 'nope.yaml'), 'nope.yaml', 'not found')


# ---- models, CLIP, calibration, adapters, checkpoints: refused before any model loads --------------------------------
def before_models_load(r, *needles):
    one_line_error(r, *needles)
    assert 'Loading weights' not in r.stderr, 'the error came after a model was loaded'


def _real_run(tmp_path, model, clip, calibration=None, *extra):
    (tmp_path / 'p.json').write_text('[]')
    cal = calibration or tmp_path / 'cal.json'
    if calibration is None: cal.write_text(json.dumps({'b_c': 0.3, 'b_h': 0.1, 'template': 'a photo of a {}'}))
    return fisao('train', '--model.path', model, '--model.clip', clip, '--verifier.calibration', cal,
                 '--data.prompts', tmp_path / 'p.json', '--data.image-dir', tmp_path, '--out', tmp_path / 'run', *extra)


def test_model_path_is_a_file(quick_pretrained, tmp_path):
    (tmp_path / 'model.safetensors').write_bytes(b'')
    before_models_load(_real_run(tmp_path, tmp_path / 'model.safetensors', quick_pretrained / 'clip'),
                       'model.safetensors', 'it is a file')


def test_model_path_is_an_empty_directory(quick_pretrained, tmp_path):
    (tmp_path / 'empty').mkdir()
    before_models_load(_real_run(tmp_path, tmp_path / 'empty', quick_pretrained / 'clip'), 'empty', 'no config.json')


def test_model_of_the_wrong_architecture(quick_pretrained, tmp_path):
    # a CLIP checkpoint given as the policy
    before_models_load(_real_run(tmp_path, quick_pretrained / 'clip', quick_pretrained / 'clip'),
                       "unsupported model_type 'clip'", 'config.json')


def test_pickle_only_model_directory_is_refused(quick_pretrained, tmp_path):
    m = tmp_path / 'llava_bin'
    m.mkdir()
    (m / 'config.json').write_text((quick_pretrained / 'llava' / 'config.json').read_text())
    (m / 'pytorch_model.bin').write_bytes(b'not loaded')
    before_models_load(_real_run(tmp_path, m, quick_pretrained / 'clip'),
                       'llava_bin', 'only pickle weights (pytorch_model.bin)')


def test_pickle_only_clip_is_refused(quick_pretrained, tmp_path):
    c = tmp_path / 'clip_bin'
    c.mkdir()
    (c / 'config.json').write_text((quick_pretrained / 'clip' / 'config.json').read_text())
    (c / 'pytorch_model.bin').write_bytes(b'not loaded')
    before_models_load(_real_run(tmp_path, quick_pretrained / 'llava', c),
                       'CLIP checkpoint', 'clip_bin', 'only pickle weights')


@pytest.mark.parametrize('cal,needle', [
    ({'b_c': 0.1, 'b_h': 0.2, 'template': 'a photo of a {}'}, 'b_c=0.1000 <= b_h=0.2000'),
    ({'b_c': 0.2, 'template': 'a photo of a {}'}, "has no 'b_h'"),
])
def test_calibration_refused(quick_pretrained, tmp_path, cal, needle):
    (tmp_path / 'bad_cal.json').write_text(json.dumps(cal))
    before_models_load(fisao('train', '--model.pretrained', quick_pretrained,
                             '--verifier.calibration', tmp_path / 'bad_cal.json', '--out', tmp_path / 'run'),
                       'bad_cal.json', needle)


def test_real_run_missing_prompt_file(quick_pretrained, tmp_path):
    r = _real_run(tmp_path, quick_pretrained / 'llava', quick_pretrained / 'clip', None,
                  '--data.prompts', tmp_path / 'instruct.json')
    before_models_load(r, 'instruct.json', 'not found')


def test_clip_whose_vision_tower_differs_is_flagged(quick_pretrained, tmp_path):
    import torch
    from transformers import CLIPModel

    from fisao.models import load_policy
    from fisao.verifier import FineGrainedVerifier
    clip = CLIPModel.from_pretrained(quick_pretrained / 'clip')
    with torch.no_grad(): clip.vision_model.post_layernorm.weight.add_(0.5)
    clip.save_pretrained(tmp_path / 'other_clip')
    (tmp_path / 'other_clip').joinpath('tokenizer.json').write_bytes(
        (quick_pretrained / 'clip' / 'tokenizer.json').read_bytes())
    for f in (quick_pretrained / 'clip').iterdir():
        if f.suffix == '.json' and f.name != 'config.json':
            (tmp_path / 'other_clip' / f.name).write_bytes(f.read_bytes())
    model, _, _ = load_policy(quick_pretrained / 'llava')
    with pytest.warns(UserWarning, match=r'VERIFIER MISMATCH: the vision weights of .*other_clip'):
        v = FineGrainedVerifier.from_policy(model, tmp_path / 'other_clip')
    assert v.vision_weights_match is False


def test_adapter_from_another_base_model(quick_pretrained, tmp_path):
    from transformers import LlavaForConditionalGeneration

    from fisao.core import ConfigError
    from fisao.models import PolicyWithValue, load_policy, lora_config, tiny_llava_config
    other = LlavaForConditionalGeneration(tiny_llava_config(vocab_size=64, text_hidden=32, text_heads=2,
                                                            text_kv_heads=1))
    PolicyWithValue.from_base(other, 'llava', lora_config('llava', r=4, alpha=8, dropout=0.0)).save(
        tmp_path / 'foreign_adapter')
    with pytest.raises(ConfigError, match='foreign_adapter') as e:
        load_policy(quick_pretrained / 'llava', tmp_path / 'foreign_adapter')
    assert 'was trained on another base model' in str(e.value) and 'size mismatch' in str(e.value)


def test_pickle_adapter_is_refused(quick_pretrained, tmp_path):
    from fisao.core import UnsafeCheckpointError
    from fisao.models import load_policy
    a = tmp_path / 'bin_adapter'
    a.mkdir()
    (a / 'adapter_config.json').write_text('{}')
    (a / 'adapter_model.bin').write_bytes(b'not loaded')
    with pytest.raises(UnsafeCheckpointError, match='bin_adapter.*pickle adapter'):
        load_policy(quick_pretrained / 'llava', a)


def test_checkpoint_missing_a_file_refused_on_resume(quick_pretrained, tmp_path):
    ck = tmp_path / 'run' / 'checkpoints' / 'step-000004'
    (ck / 'adapter').mkdir(parents=True)
    (ck / 'trainer_state.json').write_text(json.dumps({'step': 4, 'world_size': 1, 'kl_ctl': {}}))
    for f in ('adapter/adapter_config.json', 'adapter/adapter_model.safetensors', 'adapter/value_head.safetensors',
              'scheduler.pt', 'rng_state_0.pt'):
        (ck / f).write_bytes(b'')
    before_models_load(fisao('train', '--model.pretrained', quick_pretrained, '--out', tmp_path / 'run', '--resume'),
                       'step-000004', 'incomplete', 'optimizer.pt')


class NotATensor:
    pass


def test_checkpoint_pickle_beyond_weights_is_refused(tmp_path):
    import torch

    from fisao.core import UnsafeCheckpointError
    from fisao.rundir import torch_load
    torch.save({'state': NotATensor()}, tmp_path / 'optimizer.pt')
    with pytest.raises(UnsafeCheckpointError, match='optimizer.pt'):
        torch_load(tmp_path / 'optimizer.pt')
