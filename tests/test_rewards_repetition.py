"""Issue 16: naming an object again is not a hallucination; only degenerate repetition (a loop) is penalised.

The repetition guard caps the reward of a repeated mention at min(r, `repeat_reward`) (default 0: no pay for naming a
present object again, its own penalty for a hallucinated one) and that of a loop at min(r, `loop_reward`) (default −λ).
A loop is an object phrase said again right after itself ("a dog a dog"), re-introduced with "a"/"an" in the same
sentence ("a red star , a blue ring and a red star"), or inside a sentence said again word for word.
No model is needed: hand-made calibration baselines and scores, COCO's CHAIR vocabulary, one character per "token".
"""
import pytest

from fisao.chair import Chair, ChairVocab
from fisao.rewards import RewardConfig, response_rewards

CAL = {'b_c': 0.30, 'b_h': 0.20}  # a score at b_c is normalised to 1 (correct), at b_h to 0 (hallucinated)
LAM = RewardConfig().lam
COCO = Chair(ChairVocab.coco())


def _records(text, present, cfg=None, oracle=False):
    """Reward records of `text`: objects in `present` score b_c, the others b_h (or are labelled so for the oracle)."""
    cfg = cfg or RewardConfig()
    ms = COCO.mentions(text)
    labels = ['correct' if m.object in present else 'hallucinated' for m in ms]
    scores = None if oracle else [CAL['b_c'] if lab == 'correct' else CAL['b_h'] for lab in labels]
    spans = [(k, k + 1) for k in range(len(text))]  # one token per character: every mention aligns
    return response_rewards(ms, scores, spans, text, CAL, cfg, labels=labels)


def test_coreference_is_not_penalised():
    "'a man … the man': the second 'man' (person present) earns >= 0, not -lambda."
    recs = _records('a man rides a horse. the man wears a hat.', present={'person', 'horse'})
    assert [r['word'] for r in recs] == ['man', 'horse', 'man']
    assert recs[0]['reward'] == pytest.approx(0.8 * LAM)         # the first mention: lam * (1 - xi)
    assert recs[2]['reward'] >= 0
    assert recs[2]['reward'] == pytest.approx(0.0)               # no pay for naming it again
    assert recs[2]['repeat'] and not recs[2]['loop']


@pytest.mark.parametrize('reading', ['normalized', 'threshold', 'sentence'])
@pytest.mark.parametrize('oracle', [False, True])
def test_present_object_named_again_never_gets_minus_lambda(reading, oracle):
    "A detailed, coreferent caption of present objects: no mention is penalised, repeats included."
    text = ('The image shows a man standing next to a dog on a bench. The man is holding a leash, and the dog is '
            'looking at the man. A second dog sleeps under the bench.')
    cfg = RewardConfig(reading=reading, source='oracle' if oracle else 'verifier')
    recs = _records(text, present={'person', 'dog', 'bench'}, cfg=cfg, oracle=oracle)
    assert sum(r['repeat'] for r in recs) >= 5
    assert all(r['reward'] > -LAM for r in recs)
    assert all(r['reward'] >= 0 for r in recs)
    assert not any(r['loop'] for r in recs)


@pytest.mark.parametrize('reading, penalty', [('normalized', -0.2 * LAM), ('threshold', -LAM)])
def test_hallucinated_object_named_twice_is_penalised_twice(reading, penalty):
    "A hallucinated object named twice is two hallucinated mentions (as in CHAIR): its penalty, both times."
    recs = _records('a cat sits on a couch. the cat is asleep.', present={'couch'}, cfg=RewardConfig(reading=reading))
    cats = [r for r in recs if r['object'] == 'cat']
    assert [r['repeat'] for r in cats] == [False, True]
    assert [r['reward'] for r in cats] == pytest.approx([penalty, penalty])
    oracle = _records('a cat sits on a couch. the cat is asleep.', present={'couch'},
                      cfg=RewardConfig(reading=reading, source='oracle'), oracle=True)
    assert [r['reward'] for r in oracle if r['object'] == 'cat'] == pytest.approx([penalty, penalty])


def test_loop_gets_the_loop_penalty():
    "'a dog a dog a dog a dog' (dog present): the first mention is paid, every looped one gets `loop_reward`."
    recs = _records('a dog a dog a dog a dog', present={'dog'})
    assert [r['loop'] for r in recs] == [False, True, True, True]
    assert [r['reward'] for r in recs] == pytest.approx([0.8 * LAM, -LAM, -LAM, -LAM])
    recs = _records('a dog, a dog, a dog, a dog', present={'dog'}, cfg=RewardConfig(loop_reward=-5.0))
    assert [r['reward'] for r in recs] == pytest.approx([0.8 * LAM, -5.0, -5.0, -5.0])


def test_repeated_sentence_is_a_loop():
    "A sentence said again word for word loops even though its object phrase is coreferent-looking ('the man')."
    recs = _records('The man is holding a cup. The man is holding a cup.', present={'person', 'cup'})
    assert [r['loop'] for r in recs] == [False, False, True, True]
    assert [r['reward'] for r in recs][2:] == pytest.approx([-LAM, -LAM])


def test_two_described_instances_are_not_a_loop():
    "'a black dog and a white dog': two phrases, two dogs; the repeat earns 0, not the loop penalty."
    recs = _records('a black dog and a white dog play on the grass.', present={'dog'})
    assert recs[1]['reward'] == pytest.approx(0.0)
    assert [(r['repeat'], r['loop']) for r in recs] == [(False, False), (True, False)]


def test_guard_switch_and_old_rule():
    "`repetition_guard=False` pays every mention its reading reward; `repeat_reward=-lam` is the old rule."
    text = 'a man rides a horse. the man wears a hat. a horse a horse.'
    off = _records(text, present={'person', 'horse'}, cfg=RewardConfig(repetition_guard=False))
    assert [r['reward'] for r in off] == pytest.approx([0.8 * LAM] * 5)
    assert [(r['repeat'], r['loop']) for r in off][2:] == [(True, False), (True, False), (True, True)]
    old = _records(text, present={'person', 'horse'}, cfg=RewardConfig(repeat_reward=-LAM))
    assert [r['reward'] for r in old] == pytest.approx([0.8 * LAM, 0.8 * LAM, -LAM, -LAM, -LAM])


def test_config_refuses_paying_loops():
    "A loop may never pay."
    from fisao.core import ConfigError
    with pytest.raises(ConfigError, match='loop_reward must be <= 0'): RewardConfig(loop_reward=1.0)


def test_through_fine_grained_reward():
    "The same rule through `FineGrainedReward` on token ids (a toy BPE tokenizer, a stub verifier): rewards on tokens."
    torch = pytest.importorskip('torch')
    tokenizers = pytest.importorskip('tokenizers')
    from transformers import PreTrainedTokenizerFast

    from fisao.rewards import FineGrainedReward

    texts = ['a man rides a horse. the man wears a hat.', 'a dog a dog a dog a dog.']
    tk = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token='<unk>'))
    tk.pre_tokenizer, tk.decoder = tokenizers.pre_tokenizers.Metaspace(), tokenizers.decoders.Metaspace()
    tk.train_from_iterator(texts * 10, tokenizers.trainers.BpeTrainer(
        vocab_size=60, special_tokens=['<pad>', '<s>', '</s>', '<unk>']))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token='<pad>', bos_token='<s>', eos_token='</s>',
                                  unk_token='<unk>')

    class StubVerifier:  # present objects score b_c
        def score(self, images, words, keys=None):
            return [[CAL['b_c'] for _ in ws] for ws in words]

    rows = [tok(t, add_special_tokens=False).input_ids + [tok.eos_token_id] for t in texts]
    T = max(map(len, rows))
    response_ids = torch.tensor([r + [tok.pad_token_id] * (T - len(r)) for r in rows])  # (B, T)
    response_mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows])     # (B, T)
    gt = {1: {'person', 'horse'}, 2: {'dog'}}
    ro = FineGrainedReward(StubVerifier(), COCO, CAL, RewardConfig(), tok, gt=gt)([None, None], [1, 2], response_ids,
                                                                                  response_mask)
    man2 = ro.records[0][2]
    assert man2['word'] == 'man' and man2['repeat']
    assert float(ro.scores[0, man2['tokens'][-1]]) == pytest.approx(0.0)
    assert float(ro.scores[0].sum()) == pytest.approx(2 * 0.8 * LAM)           # man + horse; the second man 0
    assert not man2['loop']
    assert [r['loop'] for r in ro.records[1]] == [False, True, True, True]
    assert float(ro.scores[1].sum()) == pytest.approx(0.8 * LAM - 3 * LAM)
    assert ro.stats['loops_per_caption'] == pytest.approx(1.5)
