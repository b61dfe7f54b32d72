"""Issue 16, items 2 and 5: the verifier's same-tower check in half precision, and a calibration labelled like the
evaluation (instances ∪ reference captions) and decoded like the rollouts (sampled, the run's temperature, top_p and
length).

Item 2 is checked on a tiny random CLIP (the comparison itself) and on ShapeWorld's quick models loaded in bf16 / fp16
(the route every real run takes: `FineGrainedVerifier.from_policy`). Item 5 runs the calibration on the quick models."""
import copy
import json
import warnings

import pytest
from cli_helper import fisao

torch = pytest.importorskip('torch')


# ---- item 2: the same tower in another dtype

def _tiny_clip_vision(seed: int = 0):
    "A tiny random CLIP vision tower (fp32)."
    from transformers import CLIPVisionConfig, CLIPVisionModel
    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8)
    return CLIPVisionModel(cfg).eval()


def _perturb_one(tower, delta: float) -> float:
    "Add `delta` to one weight of `tower` (in place); returns the weight's value before."
    w = tower.encoder.layers[0].mlp.fc1.weight
    with torch.no_grad():
        before = float(w[0, 0]); w[0, 0] += delta
    return before


@pytest.mark.parametrize('dtype', ['bf16', 'fp16'])
def test_half_precision_copy_of_the_tower_matches(dtype):
    from fisao.verifier import compare_towers
    clip = _tiny_clip_vision()
    tower = copy.deepcopy(clip).to({'bf16': torch.bfloat16, 'fp16': torch.float16}[dtype])
    r = compare_towers(clip, tower)
    assert r['vision_weights_match'] is True and r['vision_max_abs_diff'] == 0.0, r
    assert r['vision_compare_dtype'] == dtype


def test_fp32_tower_of_an_fp16_checkpoint_matches():
    "LLaVA-1.5 ships fp16 weights: loaded in fp32, its tower carries fp16 values, compared at fp16 precision."
    from fisao.verifier import compare_towers
    clip = _tiny_clip_vision()
    tower = copy.deepcopy(clip).half().float()
    r = compare_towers(clip, tower)
    assert (r['vision_weights_match'], r['vision_compare_dtype'], r['vision_max_abs_diff']) == (True, 'fp16', 0.0), r


@pytest.mark.parametrize('dtype', ['bf16', 'fp16', 'fp32'])
def test_one_perturbed_weight_does_not_match(dtype):
    from fisao.verifier import compare_towers
    clip = _tiny_clip_vision()
    tower = copy.deepcopy(clip).to({'bf16': torch.bfloat16, 'fp16': torch.float16, 'fp32': torch.float32}[dtype])
    w = float(tower.encoder.layers[0].mlp.fc1.weight[0, 0].detach())
    # four rounding steps of the tower's dtype: beyond any rounding of the same weight
    _perturb_one(tower, 4 * torch.finfo(tower.dtype).eps * max(abs(w), 1e-3))
    r = compare_towers(clip, tower)
    assert r['vision_weights_match'] is False and r['vision_max_abs_diff'] > 0, r


def test_different_keys_or_shapes_do_not_match():
    from fisao.verifier import compare_towers
    a, b = _tiny_clip_vision(), _tiny_clip_vision()
    b.post_layernorm = torch.nn.LayerNorm(8)
    r = compare_towers(a, b)
    assert r['vision_weights_match'] is False and r['vision_max_abs_diff'] is None


@pytest.mark.parametrize('dtype', ['bf16', 'fp16'])
def test_from_policy_on_a_half_precision_policy(quick_pretrained, dtype):
    """The real route: the policy loaded in bf16 / fp16, its tower checked against the fp32 CLIP checkpoint.
    No VERIFIER MISMATCH warning, and max |Δ| recorded beside the match."""
    from fisao.models import load_vlm
    from fisao.verifier import FineGrainedVerifier
    policy, _, _ = load_vlm(quick_pretrained / 'llava', dtype=dtype)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        v = FineGrainedVerifier.from_policy(policy, quick_pretrained / 'clip')
    assert not any('VERIFIER MISMATCH' in str(x.message) for x in w)
    ident = v.identity()
    assert (ident['vision_weights_match'], ident['vision_max_abs_diff']) == (True, 0.0), ident
    assert (v.vision_weights_match, v.vision_max_abs_diff) == (True, 0.0)
    # one weight moved beyond rounding: a mismatch, warned, with its size recorded
    tower = policy.model.vision_tower
    before = _perturb_one(tower, 0.05)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        v2 = FineGrainedVerifier.from_policy(policy, quick_pretrained / 'clip')
    assert any('VERIFIER MISMATCH' in str(x.message) for x in w)
    assert v2.vision_weights_match is False
    after = float(tower.encoder.layers[0].mlp.fc1.weight[0, 0].detach())
    assert v2.vision_max_abs_diff == pytest.approx(abs(after - before), rel=0.05)


# ---- item 5: calibration labelled like CHAIR, decoded like the rollouts

@pytest.fixture(scope='module')
def quick(quick_pretrained):
    "The quick tiny LLaVA (fp32), its processor, the verifier and the world's CHAIR."
    from fisao.chair import Chair, ChairVocab
    from fisao.pretrain import load_pretrained
    from fisao.verifier import FineGrainedVerifier
    llava, processor, _, _ = load_pretrained(quick_pretrained)
    verifier = FineGrainedVerifier.from_policy(llava, quick_pretrained / 'clip')
    chair = Chair(ChairVocab.from_file(quick_pretrained / 'world' / 'vocab.txt'))
    return llava, processor, verifier, chair, quick_pretrained / 'world'


def test_calibration_captions_are_the_rollout_sampler_s(quick):
    """Calibration captions are sampled exactly as `fisao.ppo.generate_responses` samples a rollout (same seed, same
    batch: the same tokens), and the global RNG is left as it was."""
    from types import SimpleNamespace

    from fisao.models import build_inputs, suppress_token_ids
    from fisao.ppo import generate_responses
    from fisao.pretrain import _to_pil, load_world_split
    from fisao.verifier import policy_captions
    llava, processor, _, _, world = quick
    imgs = _to_pil(load_world_split(world, 'calib', 6).images)
    state = torch.get_rng_state()
    caps = policy_captions(llava, processor, imgs, 'Describe the image.', max_new_tokens=12, temperature=1.0, top_p=0.9,
                           seed=3, batch=6)
    assert torch.equal(torch.get_rng_state(), state)
    tok = processor.tokenizer
    inputs = build_inputs(processor, 'llava', imgs, ['Describe the image.'] * 6)
    shim = SimpleNamespace(model=SimpleNamespace(generation_config=llava.generation_config), generate=llava.generate)
    torch.manual_seed(3)
    ids, _, _, _ = generate_responses(shim, inputs, 12, 1.0, 0.9, suppress_tokens=suppress_token_ids(processor),
                                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    P = inputs['input_ids'].shape[1]
    ref = [t.strip() for t in tok.batch_decode(ids[:, P:], skip_special_tokens=True)]
    assert caps == ref
    greedy = policy_captions(llava, processor, imgs, 'Describe the image.', max_new_tokens=12, greedy=True, batch=6)
    assert greedy != caps  # sampling at temperature 1 is not greedy decoding


def test_calibrate_world_decodes_like_the_rollouts_and_says_so(quick):
    from fisao.verifier import calibrate_world
    llava, processor, verifier, chair, world = quick
    kw = dict(n_images=40, max_new_tokens=16)
    cal = calibrate_world(llava, processor, verifier, world, chair, 'Describe the image.', **kw)
    assert {k: cal[k] for k in ('decoding', 'temperature', 'top_p', 'max_new_tokens', 'seed', 'label_source')} == {
        'decoding': 'sampled', 'temperature': 1.0, 'top_p': 1.0, 'max_new_tokens': 16, 'seed': 0,
        'label_source': 'instances'}
    again = calibrate_world(llava, processor, verifier, world, chair, 'Describe the image.', **kw)
    assert again['scores'] == cal['scores']  # seeded
    other = calibrate_world(llava, processor, verifier, world, chair, 'Describe the image.', seed=1, **kw)
    assert other['scores'] != cal['scores']
    g = calibrate_world(llava, processor, verifier, world, chair, 'Describe the image.', greedy=True, **kw)
    assert (g['decoding'], g['temperature'], g['top_p']) == ('greedy', None, None)


def _strip_category(instances, out):
    "`instances` without the annotations of its most frequent category (the reference captions still name it)."
    import collections
    d = json.loads(instances.read_text())
    top = collections.Counter(a['category_id'] for a in d['annotations']).most_common(1)[0][0]
    d['annotations'] = [a for a in d['annotations'] if a['category_id'] != top]
    out.write_text(json.dumps(d))
    return out


def test_run_calibration_labels_with_instances_and_captions(quick_pretrained, tmp_path):
    """An object the instances leave out but the reference captions name is correct, as in CHAIR's ground truth:
    with `captions` fewer mentions are hallucinated, the same mentions are scored, and the record says which labels."""
    from fisao.workspace import run_calibration
    world = quick_pretrained / 'world'
    inst = _strip_category(world / 'annotations' / 'instances_calib.json', tmp_path / 'instances_stripped.json')
    kw = dict(model=quick_pretrained / 'llava', clip=quick_pretrained / 'clip', instances=inst,
              images=world / 'images' / 'calib', vocab=world / 'vocab.txt', n_images=40, max_new_tokens=16,
              progress=False)
    only = run_calibration(tmp_path / 'a.json', **kw)
    both = run_calibration(tmp_path / 'b.json', captions=world / 'annotations' / 'captions_calib.json', **kw)
    assert (only['label_source'], both['label_source']) == ('instances', 'instances+captions')
    assert both['captions'] == str(world / 'annotations' / 'captions_calib.json')
    assert only['n_correct'] + only['n_hallucinated'] == both['n_correct'] + both['n_hallucinated']
    assert both['n_hallucinated'] < only['n_hallucinated']
    assert json.loads((tmp_path / 'b.json').read_text())['label_source'] == 'instances+captions'


def test_calibrate_cli_captions_and_rollout_settings(quick_pretrained, tmp_path):
    """`fisao calibrate --captions … --config TRAIN.yaml`: the rollout section of the training config sets the decoding;
    a flag given on the command line wins; everything lands in calibration.json."""
    world = quick_pretrained / 'world'
    (tmp_path / 'train.yaml').write_text('rollout:\n  max_new_tokens: 12\n  temperature: 0.7\n  top_p: 0.9\n')
    out = tmp_path / 'calibration.json'
    r = fisao('calibrate', '--quick', '--pretrained', quick_pretrained, '--n-images', '30', '--config',
              tmp_path / 'train.yaml', '--top-p', '0.8', '--captions', world / 'annotations' / 'captions_calib.json',
              '--out', out, '--quiet')
    cal = json.loads(out.read_text())
    assert {k: cal[k] for k in ('decoding', 'temperature', 'top_p', 'max_new_tokens', 'seed', 'label_source')} == {
        'decoding': 'sampled', 'temperature': 0.7, 'top_p': 0.8, 'max_new_tokens': 12, 'seed': 0,
        'label_source': 'instances+captions'}
    assert 'sampled' in r.stdout and 'instances+captions' in r.stdout


def test_calibrate_cli_defaults_are_the_rollout_defaults():
    "The calibrate flags' defaults (literals, so `--help` imports no torch) are TrainConfig's rollout defaults."
    from fisao.cli import CALIBRATE_ROLLOUT_DEFAULTS, build_parser
    from fisao.trainconfig import RolloutConfig
    r = RolloutConfig()
    assert CALIBRATE_ROLLOUT_DEFAULTS == {'max_new_tokens': r.max_new_tokens, 'temperature': r.temperature,
                                          'top_p': r.top_p}
    a = build_parser(['calibrate']).parse_args(['calibrate'])
    assert (a.greedy, a.captions, a.config) == (False, None, None)
