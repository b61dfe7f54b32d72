"""The built-in COCO vocabulary maps every word exactly as the reference CHAIR code does (quirks included).

The reference (LisaAnne/Hallucination utils/chair.py) reads data/synonyms.txt with `line.strip().split(', ')` and maps
every entry to the first one of its line, later lines overriding earlier ones. The fixture is that file byte for
byte."""
from pathlib import Path

from fisao.chair import Chair, ChairVocab, coco_double_word_rules, package_vocab_path

REFERENCE = Path(__file__).parent / 'fixtures' / 'chair_synonyms_reference.txt'


def reference_tables(path):
    "The reference implementation's parsing, written out independently of fisao's."
    synonyms = [line.strip().split(', ') for line in path.read_text(encoding='utf-8').splitlines()]
    objects, inverse = [], {}
    for syn in synonyms:
        objects.extend(syn)
        for s in syn:
            inverse[s] = syn[0]
    return objects, inverse


def test_builtin_table_equals_reference():
    objects, inverse = reference_tables(REFERENCE)
    vocab = ChairVocab.coco()
    assert vocab.synonym_to_object == inverse
    assert set(vocab.synonym_to_object) == set(objects)
    assert vocab.objects == [line.strip().split(', ')[0] for line in REFERENCE.read_text().splitlines()]
    assert len(vocab.objects) == 80


def test_builtin_file_is_reference_plus_comment_header():
    body = [l for l in package_vocab_path('coco').read_text(encoding='utf-8').splitlines() if not l.startswith('#')]
    assert body == REFERENCE.read_text(encoding='utf-8').splitlines()


def test_reference_quirks_kept():
    vocab = ChairVocab.coco()
    assert ' motor bike' in vocab.synonym_to_object and 'motor bike' not in vocab.synonym_to_object
    assert ' cheesecake' in vocab.synonym_to_object and 'cheesecake' not in vocab.synonym_to_object
    assert 'iPhone' in vocab.synonym_to_object  # present, but captions are lowercased so it never matches
    chair = Chair(vocab)
    assert chair.objects('A motor bike, a cheesecake and an iPhone.') == []
    assert chair.objects('A phone.') == ['cell phone']


def test_coco_rules_are_exactly_the_reference_table():
    rules = coco_double_word_rules()
    assert rules['toilet seat'] == 'toilet' and rules['bow tie'] == 'tie' and rules['wine glas'] == 'wine glass'
    assert rules['baby cub'] == 'cub' and rules['passenger train'] == 'train' and rules['home plate'] == 'home plate'
    assert ChairVocab.coco().double_words == rules


def test_every_synonym_maps_through_a_caption():
    "Each single-word synonym, alone in a caption, is found and mapped to its category (multi-word ones via the rules)."
    vocab, chair = ChairVocab.coco(), Chair(ChairVocab.coco())
    skip = {'iPhone', ' motor bike', ' cheesecake', 'stove top oven'}
    for word, obj in vocab.synonym_to_object.items():
        if word in skip:
            continue
        if ' ' in word and word not in vocab.double_words:
            continue  # e.g. 'dining table' is found through its last word, as in the reference
        found = chair.objects(f'There is a {word} here.')
        assert found == [obj], (word, found)
