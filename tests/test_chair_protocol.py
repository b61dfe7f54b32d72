"""CHAIR tokenisation after closing quotes/brackets, and the two protocol modes (issue 16, item 10).

`mode='kit'` (default) counts every mention, *bus* and *ties* included; `mode='reference'` reads the vocabulary's
words as the pattern-based reference (LisaAnne/Hallucination `utils/chair.py`) does: its `pattern.en.singularize` turns
*bus* into *bu* and *ties* into *ty*, so published CHAIR tables never count them (`fisao.chair.REFERENCE_SINGULAR`).
Both modes end a sentence after `."` / `.)` as
NLTK's Punkt (the reference's sentence splitter) does."""
import json

import pytest

from fisao import chair as fc
from fisao.chair import Chair, ChairVocab, evaluate, ground_truth, tokenize_with_spans
from fisao.data import load_coco

QUOTE = 'A sign says "Hot Dogs." A hot dog stand is next to a dog.'
BRACKET = 'A man (holding two cats.) A dog.'


@pytest.mark.parametrize('kw', [{}, {'mode': 'reference'}], ids=['default', 'reference'])
def test_mention_after_closing_quote_or_bracket(kw):
    chair = Chair(**kw)
    assert chair.objects(QUOTE) == ['hot dog', 'hot dog', 'dog']
    assert chair.objects(BRACKET) == ['person', 'cat', 'dog']
    assert chair.objects('It reads "dogs!" next to a cat.') == ['dog', 'cat']
    assert [m.text for m in chair.mentions(QUOTE)] == ['Hot Dogs', 'hot dog', 'dog']


def test_tokens_carry_no_edge_punctuation():
    toks = tokenize_with_spans(QUOTE)
    assert [t for t, _, _ in toks][3:8] == ['"', 'hot', 'dogs', '.', '"']
    assert all(QUOTE[a:b].lower() == t for t, a, b in toks)
    # the kit also trims what Treebank leaves on a word's edges (markdown underscores, a Unicode ellipsis)
    cap = 'A **dog**, a _cat_ and "dogs.", a bus… fine.'
    assert {'dog', 'cat', 'dogs', 'bus'} <= {t for t, _, _ in tokenize_with_spans(cap)}
    assert {'_cat_', 'bus…'} <= {t for t, _, _ in tokenize_with_spans(cap, strip_edges=False)}
    assert Chair().objects(cap) == ['dog', 'cat', 'dog', 'bus']
    assert Chair(mode='reference').objects(cap) == ['dog', 'dog']
    assert "'s" in [t for t, _, _ in tokenize_with_spans("The dog's bowl.")]   # clitics are kept as they are


def test_bus_and_ties_by_mode():
    cap = 'A bus and two ties near two buses and a tie.'
    assert Chair().objects(cap) == ['bus', 'tie', 'bus', 'tie']
    assert Chair(mode='reference').objects(cap) == ['bus', 'tie']          # only "buses" and "tie" survive
    assert Chair(mode='reference').mode == 'reference' and Chair().mode == 'kit'


def test_reference_reading_of_the_vocabulary():
    words = ['bus', 'buses', 'ties', 'tie', 'people', 'children', 'oxen', 'canoes', 'dogs', 'thieves', 'minibus']
    assert [fc.singularize_reference(w) for w in words] == [
        'bu', 'bus', 'ty', 'tie', 'person', 'child', 'ox', 'cano', 'dog', 'thieve', 'minibu']
    ref = Chair(mode='reference')
    # corgi is kept as a vocabulary word; canoes, minibus are lost
    assert ref.objects('two canoes, a minibus, a corgi and the thieves') == ['dog']
    assert Chair().objects('two canoes, a minibus, a corgi') == ['boat', 'bus', 'dog']


def test_mode_is_checked_and_recorded(tmp_path):
    with pytest.raises(ValueError, match='mode'):
        Chair(mode='published')
    with pytest.raises(ValueError, match='REFERENCE_SINGULAR'):
        Chair(mode='reference', singularizer='none')
    images = [{'id': 1, 'file_name': 'a.jpg', 'width': 8, 'height': 8}]
    (tmp_path / 'inst.json').write_text(json.dumps({'images': images, 'categories': [{'id': 6, 'name': 'bus'}],
        'annotations': [{'id': 1, 'image_id': 1, 'category_id': 6, 'bbox': [0, 0, 2, 2], 'area': 4, 'iscrowd': 0}]}))
    gens = [{'image_id': 1, 'caption': 'A bus with a "Hot Dogs." sign.'}]
    for mode, chair_i in (('kit', 1 / 2), ('reference', 1.0)):
        chair = Chair(mode=mode)
        res = evaluate(chair, gens, ground_truth(chair, load_coco(tmp_path / 'inst.json')))
        assert res['chair_mode'] == mode and res['singularizer'] == chair.singularizer
        assert res['chair_i'] == chair_i      # reference: "bus" → "bu" is lost, only the hot dog is left


@pytest.mark.parametrize('mode', ['kit', 'reference'])
def test_golden_values_in_both_modes(golden_coco, mode):
    "nbs/eval_protocols.md §1.8: CHAIR_s = 2/3, CHAIR_i = 3/8, Recall = 5/6 (no plural/quote case differs by mode)."
    chair = Chair(ChairVocab.coco(), mode=mode)
    gt = ground_truth(chair, load_coco(golden_coco.instances), load_coco(golden_coco.captions, 'captions'))
    gens = golden_coco.generations
    res = evaluate(chair, gens, gt)
    assert (res['chair_s'], res['chair_i'], res['recall']) == pytest.approx((2 / 3, 3 / 8, 5 / 6), abs=1e-15)
