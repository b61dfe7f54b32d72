"""`fisao eval captions` and `fisao eval pope` from the shell: golden caption metrics, a hand-built POPE case, and
one-line errors for bad inputs."""
import json

import pytest
from cli_helper import fisao


def run(*args):
    "The CLI in this process (`fisao.cli.main`): the same code path as the shell without a fresh interpreter per call."
    from fisao.cli import main
    rc = main([str(a) for a in args])
    assert rc == 0, f"fisao {' '.join(map(str, args))} exited {rc}"

# nbs/eval_protocols.md §3.1 (pycocoevalcap 1.2 with the Java PTB tokenizer)
GOLDEN = dict(bleu_1=0.717029, bleu_2=0.520759, bleu_3=0.391119, bleu_4=0.269563, rouge_l=0.640267, cider=2.091448)
CAPTIONS = {'images': [{'id': 1, 'file_name': '1.jpg'}, {'id': 2, 'file_name': '2.jpg'}],
            'annotations': [{'image_id': 1, 'caption': 'A man is riding a horse on the beach.'},
                            {'image_id': 1, 'caption': 'A person rides a brown horse near the ocean.'},
                            {'image_id': 2, 'caption': 'Two dogs playing with a frisbee in a park.'},
                            {'image_id': 2, 'caption': 'A pair of dogs chase a frisbee on the grass.'}]}
GENERATIONS = [{'image_id': 1, 'caption': 'a man riding a horse on a beach'},
               {'image_id': 2, 'caption': 'a dog catches a frisbee in the park'}]


def write_jsonl(path, rows):
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return path


@pytest.fixture
def caps(tmp_path):
    p = tmp_path / 'captions.json'
    p.write_text(json.dumps(CAPTIONS))
    return p


def test_captions_golden(tmp_path, caps):
    gen = write_jsonl(tmp_path / 'gen.jsonl', GENERATIONS)
    r = fisao('eval', 'captions', '--generations', gen, '--captions', caps, '--out', tmp_path / 'out.json')
    assert 'BLEU-4' in r.stdout and 'CIDEr' in r.stdout
    res = json.loads((tmp_path / 'out.json').read_text())
    for k, v in GOLDEN.items(): assert abs(res[k] - v) < 1e-6, (k, res[k], v)
    assert abs(res['caption_score'] - (GOLDEN['bleu_4'] + GOLDEN['rouge_l'] + GOLDEN['cider']) / 3) < 1e-6
    assert (res['n_images'], res['n_empty'], res['caption_score_bleu']) == (2, 0, 'bleu_4')
    run('eval', 'captions', '--generations', gen, '--captions', caps, '--bleu', 'mean', '--out', tmp_path / 'mean.json')
    mean_bleu = sum(GOLDEN[f'bleu_{n}'] for n in range(1, 5)) / 4
    score = json.loads((tmp_path / 'mean.json').read_text())['caption_score']
    assert abs(score - (mean_bleu + GOLDEN['rouge_l'] + GOLDEN['cider']) / 3) < 1e-6


def test_pope_hand_built(tmp_path):
    labels = ['yes'] * 5 + ['no'] * 5
    texts = ['Yes', 'Yes, there is.', 'yes', 'No', 'There is no dog.', 'Yes', 'No', 'no.', 'No, there is not.',
             'not at all']
    q = write_jsonl(tmp_path / 'q.jsonl', [{'question_id': i, 'image': 'x.jpg', 'text': 'Is there a dog in the image?',
                                            'label': l} for i, l in enumerate(labels)])
    a = write_jsonl(tmp_path / 'a.jsonl', [{'question_id': i, 'text': t} for i, t in enumerate(texts)])
    fisao('eval', 'pope', '--questions', q, '--answers', a, '--out', tmp_path / 'pope.json')
    res = json.loads((tmp_path / 'pope.json').read_text())
    assert {k: res[k] for k in ('tp', 'fp', 'tn', 'fn')} == dict(tp=3, fp=1, tn=4, fn=2)
    for k, v in dict(accuracy=0.7, precision=0.75, recall=0.6, f1=2 / 3, yes_ratio=0.4).items():
        assert abs(res[k] - v) < 1e-12, k
    run('eval', 'pope', '--questions', q, '--answers', a, '--parser', 'exact', '--out', tmp_path / 'exact.json')
    assert json.loads((tmp_path / 'exact.json').read_text())['n_unparsed'] == 5


def test_pope_build_then_score(tmp_path):
    cats = ['dog', 'person', 'car', 'umbrella', 'apple', 'cat']
    objs = {1: ['person', 'dog', 'car'], 2: ['person', 'dog', 'umbrella'], 3: ['person', 'car', 'apple'],
            4: ['dog', 'cat', 'apple']}
    inst = {'images': [{'id': i, 'file_name': f'{i}.jpg'} for i in objs],
            'categories': [{'id': c, 'name': n} for c, n in enumerate(cats, 1)],
            'annotations': [{'id': 10 * i + j, 'image_id': i, 'category_id': cats.index(o) + 1, 'bbox': [0, 0, 1, 1],
                             'area': 1} for i, os in objs.items() for j, o in enumerate(os)]}
    (tmp_path / 'inst.json').write_text(json.dumps(inst))
    for split in ('random', 'popular', 'adversarial'):
        run('pope', 'build', '--instances', tmp_path / 'inst.json', '--pope-split', split, '--n-images', 4,
            '--out', tmp_path / f'{split}.jsonl')
        q = [json.loads(l) for l in (tmp_path / f'{split}.jsonl').read_text().splitlines()]
        assert len(q) == 24 and [x['label'] for x in q[:2]] == ['yes', 'no']
        write_jsonl(tmp_path / 'a.jsonl', [{'question_id': x['question_id'], 'text': 'Yes'} for x in q])
        run('eval', 'pope', '--questions', tmp_path / f'{split}.jsonl', '--answers', tmp_path / 'a.jsonl',
            '--out', tmp_path / 'p.json')
        res = json.loads((tmp_path / 'p.json').read_text())
        assert (res['accuracy'], res['recall'], res['yes_ratio']) == (0.5, 1.0, 1.0)


@pytest.fixture
def fails(capsys):
    "Run the CLI in-process and check it fails with exit status 2 and one 'fisao: error:' line naming each of `naming`."
    from fisao.cli import main
    def check(*args, naming):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert rc == 2, (rc, err)
        assert err.startswith('fisao: error:') and err.count('\n') == 1, err
        for s in naming: assert str(s) in err, (s, err)
    return check


def test_bad_inputs(tmp_path, caps, fails):
    gen = write_jsonl(tmp_path / 'gen.jsonl', GENERATIONS)
    fails('eval', 'captions', '--generations', tmp_path / 'nope.jsonl', '--captions', caps,
          naming=['generations file not found', 'nope.jsonl'])
    fails('eval', 'captions', '--generations', gen, '--captions', tmp_path / 'nocaps.json',
          naming=['captions file not found', 'nocaps.json'])
    (tmp_path / 'bad.jsonl').write_text('{"image_id": 1, "caption": "x"}\n{"image_id": 2, "capt\n')
    fails('eval', 'captions', '--generations', tmp_path / 'bad.jsonl', '--captions', caps, naming=['bad.jsonl, line 2'])
    unknown = write_jsonl(tmp_path / 'unknown.jsonl', GENERATIONS + [{'image_id': 7, 'caption': 'a cat'}])
    fails('eval', 'captions', '--generations', unknown, '--captions', caps,
          naming=['unknown.jsonl', 'record 3', 'image id 7'])
    q = write_jsonl(tmp_path / 'q.jsonl', [{'question_id': 1, 'image': 'x.jpg', 'text': '?', 'label': 'yes'},
                                           {'question_id': 2, 'image': 'x.jpg', 'text': '?', 'label': 'no'}])
    fails('eval', 'pope', '--questions', tmp_path / 'noq.jsonl', '--answers', q,
          naming=['POPE questions file not found', 'noq.jsonl'])
    (tmp_path / 'badq.jsonl').write_text('{"question_id": 1, "label": "yes"}\n{"question_id": 2,\n')
    fails('eval', 'pope', '--questions', tmp_path / 'badq.jsonl', '--answers', q, naming=['badq.jsonl, line 2'])
    a = write_jsonl(tmp_path / 'a.jsonl', [{'question_id': 1, 'text': 'Yes'}, {'question_id': 9, 'text': 'No'}])
    fails('eval', 'pope', '--questions', q, '--answers', a, naming=['a.jsonl', 'question id 9'])
    dup = write_jsonl(tmp_path / 'dup.jsonl', [{'question_id': 1, 'text': 'Yes'}, {'question_id': 1, 'text': 'No'}])
    fails('eval', 'pope', '--questions', q, '--answers', dup, naming=['question id 1 is answered twice'])
    badlabel = write_jsonl(tmp_path / 'badlabel.jsonl',
                           [{'question_id': 1, 'image': 'x.jpg', 'text': '?', 'label': 'maybe'}])
    fails('eval', 'pope', '--questions', badlabel, '--answers', a,
          naming=['badlabel.jsonl', "label must be 'yes' or 'no'"])
    half = write_jsonl(tmp_path / 'half.jsonl', [{'question_id': 1, 'text': 'Yes'}])
    fails('eval', 'pope', '--questions', q, '--answers', half,
          naming=['1 of 2 questions have no answer', 'question id 2'])
