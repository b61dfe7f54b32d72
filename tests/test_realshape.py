"""The library on real-shaped fixtures (issue 16): what ShapeWorld's word-level tokenizer, fp32 weights and
one-mention-per-shape captions hide.

`fisao.fixtures` builds, once per module and in about a second: a LLaVA-1.5-shaped and an InstructBLIP-shaped tiny model
(byte-fallback Llama tokenizer trained on the spot, `<image>`/`<pad>` appended after the vocabulary, weights stored in
fp16), the CLIP checkpoints of their verifiers (fp32), and a COCO-like dataset with coreference, plurals, two-word
objects and a quote. Checked here:

(a) both models load through `load_policy` in fp32, bf16 and fp16 and `generate_texts` writes text;
(b) `token_char_spans` finds a mention's tokens when the response ids are not the tokenizer's canonical encoding;
(c) the verifier built from the LLaVA-shaped policy recognises its tower as the CLIP checkpoint's (within the precision
    the tower is stored and run in), and does not for a tower with other weights;
(d) what CHAIR reports on the COCO-like captions: repeated (coreferent) mentions, each with its own span.
"""
import warnings
from collections import Counter

import pytest
import torch

TEXT_PLAIN = 'A man holds a hot dog next to a teddy bear.'
TEXT_QUOTE = 'A sign says “Hot Dogs.” A hot dog stand is next to a teddy bear.'  # curly quotes: 3 byte pieces each


@pytest.fixture(scope='module')
def shaped(tmp_path_factory):
    "`{'llava': {'model', 'clip'}, 'instructblip': {'model', 'clip'}}`: the fixture directories."
    from fisao.fixtures import instructblip_shaped, llava_shaped
    root = tmp_path_factory.mktemp('realshape')
    return {'llava': llava_shaped(root / 'llava'), 'instructblip': instructblip_shaped(root / 'instructblip')}


@pytest.fixture(scope='module')
def images():
    "Two non-square PIL images, as COCO's are."
    from PIL import Image
    return [Image.new('RGB', (64, 48), (200, 40, 40)), Image.new('RGB', (48, 64), (40, 40, 200))]


@pytest.fixture(scope='module')
def llava_tokenizer(shaped):
    "The LLaVA-shaped model's tokenizer, as `load_vlm` loads it (through its processor)."
    from transformers import AutoProcessor
    return AutoProcessor.from_pretrained(shaped['llava']['model'], local_files_only=True).tokenizer


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    "The COCO-like dataset's paths."
    from fisao.fixtures import coco_like
    return coco_like(tmp_path_factory.mktemp('coco_like'))


# ---- (a) loading and generating

@pytest.mark.parametrize('dtype', ['fp32', 'bf16', 'fp16'])
@pytest.mark.parametrize('kind', ['llava', 'instructblip'])
def test_load_policy_and_generate(shaped, images, kind, dtype):
    from fisao.fixtures import INSTRUCTIONS
    from fisao.models import build_inputs, format_prompt, generate_texts, load_policy, resolve_dtype
    model, processor, loaded_kind = load_policy(shaped[kind]['model'], dtype=dtype)
    assert loaded_kind == kind
    tower = model.model.vision_tower if kind == 'llava' else model.vision_model
    assert next(tower.parameters()).dtype == resolve_dtype(dtype)
    assert model.get_output_embeddings().weight.dtype == resolve_dtype(dtype)
    tok = processor.tokenizer
    ids = build_inputs(processor, kind, images[:1], INSTRUCTIONS[:1])['input_ids'][0].tolist()
    n_image = 16 if kind == 'llava' else 8  # (56 / 14)² patch features; 8 Q-Former queries
    assert ids.count(tok.image_token_id) == n_image
    if kind == 'llava':
        assert format_prompt(kind, INSTRUCTIONS[0], processor) == f'USER: <image>\n{INSTRUCTIONS[0]} ASSISTANT:'
        assert ids[0] == tok.bos_token_id and tok.decode(ids).endswith('ASSISTANT:')
    else:
        assert ids[:n_image] == [tok.image_token_id] * n_image and ids[n_image] == tok.bos_token_id
    texts = generate_texts(model, processor, kind, images, INSTRUCTIONS[:2], max_new_tokens=8)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts) and any(texts), texts


@pytest.mark.parametrize('kind, pad, image', [('llava', '<pad>', 512), ('instructblip', '[PAD]', 513)])
def test_special_ids_are_real_shaped(shaped, kind, pad, image):
    "Specials as on the Hub: `<unk>`/`<s>`/`</s>` = 0/1/2, byte pieces next, pad and image token appended at the end."
    from fisao.models import load_vlm, suppress_token_ids
    model, processor, _ = load_vlm(shaped[kind]['model'])
    tok = processor.tokenizer
    assert [tok.unk_token_id, tok.bos_token_id, tok.eos_token_id] == [0, 1, 2]
    assert tok.convert_tokens_to_ids(['<0x00>', '<0x0A>']) == [3, 13]
    assert (tok.pad_token, tok.image_token_id) == (pad, image)
    assert model.config.text_config.vocab_size == 576 > len(tok)  # embedding padded to a multiple of 64
    assert suppress_token_ids(processor) == sorted([1, tok.pad_token_id, image])


# ---- (b) span -> token alignment on non-canonical ids

@pytest.mark.parametrize('how', ['canonical', 'split', 'bytes'])
@pytest.mark.parametrize('text', [TEXT_PLAIN, TEXT_QUOTE], ids=['plain', 'curly-quotes'])
def test_token_char_spans_noncanonical(llava_tokenizer, text, how):
    """Each "hot dog" / "teddy bear" mention of the decoded response maps to exactly its own tokens: they are
    contiguous and decode to the mention's text."""
    from fisao.chair import Chair
    from fisao.fixtures import noncanonical_ids
    from fisao.rewards import mention_token_positions, token_char_spans
    tok = llava_tokenizer
    ids = tok(text, add_special_tokens=False).input_ids if how == 'canonical' else noncanonical_ids(tok, text, how)
    decoded, spans = token_char_spans(tok, ids)
    assert decoded == text
    mentions = [m for m in Chair().mentions(decoded) if m.object in ('hot dog', 'teddy bear')]
    assert len(mentions) == (2 if text == TEXT_PLAIN else 3)
    wrong = []
    for m in mentions:
        pos = mention_token_positions(spans, m.start, m.end)
        got = tok.decode([ids[k] for k in pos], clean_up_tokenization_spaces=False)
        if got.strip() != m.text or pos != list(range(pos[0], pos[-1] + 1)):
            pieces = tok.convert_ids_to_tokens([ids[k] for k in pos])
            wrong.append(f'{m.text!r} at [{m.start}, {m.end}) -> tokens {pos} {pieces} decoding to {got!r}')
    assert not wrong, 'misaligned mentions: ' + '; '.join(wrong)


# ---- (c) the verifier's vision weights check

def _verifier(policy, clip_path):
    "`(verifier, warning messages)` of `FineGrainedVerifier.from_policy(policy, clip_path)`."
    from fisao.verifier import FineGrainedVerifier
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        v = FineGrainedVerifier.from_policy(policy, clip_path)
    return v, [str(w.message) for w in caught]


@pytest.mark.parametrize('dtype', ['fp32', 'bf16'])
def test_verifier_vision_weights_match(shaped, images, dtype):
    """The tower holds the CLIP checkpoint's weights, stored in fp16 and run in `dtype` (as llava-hf's LLaVA-1.5 and
    openai's CLIP-336): the verifier reports a match and does not warn."""
    from fisao.models import load_policy
    policy = load_policy(shaped['llava']['model'], dtype=dtype)[0]
    v, messages = _verifier(policy, shaped['llava']['clip'])
    assert v.vision_weights_match is True, f'vision_weights_match={v.vision_weights_match!r}; warnings: {messages}'
    assert not [m for m in messages if 'VERIFIER MISMATCH' in m], messages
    assert v.vision_tower is policy.model.vision_tower  # shared, not copied
    scores = v.score(images, [['hot dog'], ['teddy bear', 'dog']])
    assert [len(s) for s in scores] == [1, 2] and all(abs(x) <= 1 for s in scores for x in s)


def test_verifier_perturbed_tower_mismatch(shaped):
    """A tower whose weights moved (noise of 10 % of each tensor's spread) is not the CLIP checkpoint's: no match, and
    a warning."""
    from fisao.models import load_policy
    policy = load_policy(shaped['llava']['model'], dtype='bf16')[0]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.model.vision_tower.parameters():
            p.add_((0.1 * p.float().std() * torch.randn(p.shape, generator=g)).to(p.dtype))
    v, messages = _verifier(policy, shaped['llava']['clip'])
    assert v.vision_weights_match is False
    assert [m for m in messages if 'VERIFIER MISMATCH' in m], messages


def test_verifier_instructblip_uses_clip_towers(shaped, images):
    "InstructBLIP's tower has no CLIP text tower: both towers come from the CLIP checkpoint, in the policy's dtype."
    from fisao.models import load_policy
    policy = load_policy(shaped['instructblip']['model'], dtype='bf16')[0]
    v, messages = _verifier(policy, shaped['instructblip']['clip'])
    assert (v.vision_source, v.vision_weights_match, v.dtype) == ('clip', False, torch.bfloat16)
    assert any("vision_source='clip'" in m for m in messages), messages
    assert len(v.score(images[:1], [['hot dog', 'person']])[0]) == 2


# ---- (d) CHAIR on COCO-like captions

CAPTION_OBJECTS = {  # caption -> CHAIR's objects, in order, with repetition
    'A man holds a hot dog in his hand. The man smiles and he looks at the camera.': ['person', 'hot dog', 'person'],
    'A sign says "Hot Dogs." A hot dog stand is on the street corner.': ['hot dog', 'hot dog'],
    'a man eating a hot dog next to a food stand \n': ['person', 'hot dog'],
    'Two dogs play with a teddy bear on the grass.': ['dog', 'teddy bear'],
    'Two brown dogs chew on a teddy bear. The dogs pull the bear apart.': ['dog', 'teddy bear', 'dog', 'bear'],
    'A woman with an umbrella walks past a parked car. She holds the umbrella over her head.':
        ['person', 'umbrella', 'car', 'umbrella'],
    'A cat sleeps on a chair. The cat is curled up.': ['cat', 'chair', 'cat'],
    'A bicycle leans against a wooden bench. A man sits on the bench next to the bike.':
        ['bicycle', 'bench', 'person', 'bench', 'bicycle'],
    'A pizza and two cups sit on a dining table.': ['pizza', 'cup', 'dining table'],
    'Two slices of pizza on a table with a cup of coffee.': ['pizza', 'dining table', 'cup'],
}


def test_chair_objects_per_caption():
    from fisao.chair import Chair
    from fisao.fixtures import COCO_LIKE_IMAGES
    chair = Chair()
    got = {c: chair.objects(c) for im in COCO_LIKE_IMAGES for c in im['captions']}
    assert got == CAPTION_OBJECTS


def test_chair_coreferent_mentions(coco):
    """Each repeated mention is its own `Mention`, with its own span; the pronoun is none. On val2014's captions as
    generations: 23 mentions, 4 repeats, and the teddy bear's "the bear" is a hallucinated *bear*."""
    from fisao.chair import Chair, evaluate, ground_truth
    from fisao.data import load_coco
    chair = Chair()
    caption = 'A man holds a hot dog in his hand. The man smiles and he looks at the camera.'
    assert [(m.text, m.object, m.start, m.end) for m in chair.mentions(caption)] == [
        ('man', 'person', 2, 5), ('hot dog', 'hot dog', 14, 21), ('man', 'person', 39, 42)]
    quote = 'A sign says "Hot Dogs." A hot dog stand is on the street corner.'
    assert [(m.text, m.start) for m in chair.mentions(quote)] == [('Hot Dogs', 13), ('hot dog', 26)]
    captions = load_coco(coco['val2014']['captions'], 'captions')
    gens = [{'image_id': a['image_id'], 'caption': a['caption']} for a in captions.dataset['annotations']]
    res = evaluate(chair, gens, ground_truth(chair, load_coco(coco['val2014']['instances'])))
    assert (res['n_captions'], res['n_images'], res['n_mentions'], res['dup_per_caption']) == (8, 4, 23, 0.5)
    assert [Counter(m['object'] for m in p['mentions']) for p in res['per_caption']] == [
        Counter(CAPTION_OBJECTS[g['caption']]) for g in gens]
    hallucinated = [p['hallucinated'] for p in res['per_caption'] if p['hallucinated']]
    assert (res['n_hallucinated'], hallucinated) == (1, [['bear']])
