"""Benchmark scorers (fisao.scorers) on the tiny fixtures in tests/fixtures/benchmarks/ (official layouts; see
make_fixtures.py).

Each fixture loads and scores to hand-checked numbers; broken copies (written into tmp_path) raise errors that name
the file and the record or field.
"""
import csv
import json
import shutil
from pathlib import Path

import pytest

from fisao.core import ConfigError, DataError, MissingPathError
from fisao.eval import question_image
from fisao.scorers import (
    BENCHMARKS,
    LETTER_PROMPT,
    SHORT_ANSWER_PROMPT,
    answer_map,
    load_benchmark,
    load_mmbench,
    load_mme,
    load_seed,
    load_sqa,
    score_benchmark,
    score_mmbench,
    score_mme,
    score_mmvet,
)

FIX = Path(__file__).resolve().parent / 'fixtures' / 'benchmarks'

ANSWERS = {
    'mme': {'existence/0001/0': 'Yes', 'existence/0001/1': 'No', 'existence/0002/0': 'Yes',
            'existence/0002/1': 'Yes, there is', 'artwork/10002/0': 'yes', 'artwork/10002/1': 'I think no',
            'code_reasoning/0020/0': 'Yes.', 'code_reasoning/0020/1': 'No.'},
    'seed': {'101': 'A', '102': 'B.', '103': 'C', '104': 'A'},
    'mmbench': {'0': 'B', '1000000': 'A', '2000000': 'D', '3000000': 'C', '1': 'A', '1000001': 'A',
                '2': 'C', '1000002': 'The cat is on the left.', '2000002': '(A)'},
    'sqa': {'101': 'B', '102': 'The answer is A. The answer is A.', '103': 'D. slippery'},
    'gqa': {'201': 'Yes.', '202': 'Left', '203': 'dark red', '204': 'no'},
    'mmvet': {'v1_0': 'The total is 12.', 'v1_1': 'maroon', 'v1_2': 'an apple'},
}
# (number of records, headline metric, its value, n_questions)
EXPECTED = {'mme': (8, 'total', 375.0, 8), 'seed': (4, 'accuracy', 0.5, 4), 'mmbench': (9, 'accuracy', 2 / 3, 3),
            'sqa': (3, 'accuracy', 2 / 3, 3), 'gqa': (4, 'accuracy', 0.75, 4), 'mmvet': (3, 'total', 250 / 3, 3)}


def copy(name, tmp_path) -> Path:
    "A writable copy of one fixture."
    return Path(shutil.copytree(FIX / name, tmp_path / name))


@pytest.mark.parametrize('name', sorted(BENCHMARKS))
def test_fixture_loads_and_scores(name):
    qs = load_benchmark(name, FIX / name)
    n_records, key, value, n_questions = EXPECTED[name]
    assert len(qs) == n_records and qs.n_skipped == 0
    for q in qs:
        assert isinstance(q['question_id'], str) and q['prompt']
        assert question_image(q).size == (8, 8)
        if 'image' in q: assert Path(q['image']).is_absolute()
    r = score_benchmark(name, qs, ANSWERS[name])
    assert r[key] == pytest.approx(value)
    assert (r['benchmark'], r['n_questions'], r['n_missing'], r['n_skipped']) == (name, n_questions, 0, 0)
    assert 'post_prompt' in r['protocol']
    assert json.loads(json.dumps(r)) == r                                   # a results JSON holds it as is


def test_breakdowns():
    r = score_benchmark('mme', load_mme(FIX / 'mme'), ANSWERS['mme'])
    assert (r['perception'], r['cognition'], r['complete']) == (175.0, 200.0, False)
    assert r['subtasks']['existence'] == {'score': 125.0, 'acc': 0.75, 'acc_plus': 0.5, 'n_questions': 4, 'n_images': 2,
                                          'n_other': 0}
    assert score_benchmark('seed', load_seed(FIX / 'seed'), ANSWERS['seed'], extract='first_char')['accuracy'] == 0.75
    r = score_benchmark('mmbench', load_mmbench(FIX / 'mmbench'), ANSWERS['mmbench'])
    assert r['per_category'] == {'image_scene': {'accuracy': 0.5, 'n': 2},
                                 'spatial_relationship': {'accuracy': 1.0, 'n': 1}}
    assert r['accuracy_single_pass'] == 1.0
    r = score_benchmark('sqa', load_sqa(FIX / 'sqa'), ANSWERS['sqa'])
    assert r['n_failed'] == 1
    r = score_benchmark('gqa', load_benchmark('gqa', FIX / 'gqa'), ANSWERS['gqa'])
    assert r['per_answer_type'] == {'binary': {'accuracy': 1.0, 'n': 2}, 'open': {'accuracy': 0.5, 'n': 2}}
    r = score_benchmark('mmvet', load_benchmark('mmvet', FIX / 'mmvet'), ANSWERS['mmvet'])
    assert r['per_capability']['rec'] == {'score': 75.0, 'n': 2} and r['comparable_to_official'] is False


def test_prompts_use_the_protocol_suffix_and_are_configurable():
    assert load_benchmark('gqa', FIX / 'gqa')[0]['prompt'] == 'Is there a square?' + SHORT_ANSWER_PROMPT
    assert load_benchmark('seed', FIX / 'seed')[0]['prompt'].endswith('D. A desert' + LETTER_PROMPT)
    assert load_benchmark('gqa', FIX / 'gqa', post_prompt=' Answer:')[0]['prompt'] == 'Is there a square? Answer:'
    qs = load_benchmark('mmbench', FIX / 'mmbench', post_prompt='')
    assert qs[0]['prompt'].endswith('D. blue') and qs.protocol['post_prompt'] == ''


def test_mmbench_circular_rows_in_the_file(tmp_path):
    with open(FIX / 'mmbench' / 'mmbench_dev_tiny.tsv', newline='', encoding='utf-8') as f:
        rows = list(csv.reader(f, delimiter='\t'))
    head, q1 = rows[0], rows[2]
    shifted = ['1000001', q1[1], q1[2], 'no', 'yes', '', '', 'B', *q1[8:12], q1[12]]
    tsv = tmp_path / 'c.tsv'
    with open(tsv, 'w', newline='', encoding='utf-8') as f: csv.writer(f, delimiter='\t').writerows([head, q1, shifted])
    qs = load_mmbench(tsv)
    assert [(q['question_id'], q['group'], q['answer']) for q in qs] == [('1', '1', 'A'), ('1000001', '1', 'B')]
    assert score_mmbench(qs, {'1': 'A', '1000001': 'B'})['accuracy'] == 1.0
    assert score_mmbench(qs, {'1': 'A', '1000001': 'A'})['accuracy'] == 0.0  # one shift wrong: the question is wrong
    orphan = ['2000005', *shifted[1:]]
    with open(tsv, 'w', newline='', encoding='utf-8') as f: csv.writer(f, delimiter='\t').writerows([head, q1, orphan])
    with pytest.raises(DataError, match=r'c\.tsv, line 3 \(index 2000005\): circular copy of index 5'):
        load_mmbench(tsv)


# ---- answers that do not fit the questions

def test_unknown_and_missing_answers():
    qs = load_benchmark('gqa', FIX / 'gqa')
    with pytest.raises(DataError, match=r"answers: 1 answer\(s\) to question ids that are not in the gqa questions "
                                        r"\(first: \['999'\]\)"):
        score_benchmark('gqa', qs, {**ANSWERS['gqa'], '999': 'yes'})
    part = {k: v for k, v in ANSWERS['gqa'].items() if k != '203'}
    with pytest.raises(DataError, match=r"1 of 4 gqa questions have no answer \(first: \['203'\]\)"):
        score_benchmark('gqa', qs, part)
    r = score_benchmark('gqa', qs, part, allow_missing=True)
    assert (r['accuracy'], r['n_missing']) == (0.75, 1)                     # 203 was wrong anyway
    with pytest.raises(DataError, match="question id '201' must be a string"):
        score_benchmark('gqa', qs, {**ANSWERS['gqa'], '201': None})
    records = [{'question_id': k, 'text': v} for k, v in ANSWERS['gqa'].items()]
    assert score_benchmark('gqa', qs, answer_map(records))['accuracy'] == 0.75
    with pytest.raises(DataError, match='run.jsonl, record 2: missing field'):
        answer_map([records[0], {'question_id': '202'}], 'run.jsonl')


def test_bad_options():
    with pytest.raises(ConfigError, match="unknown benchmark 'pope'"): load_benchmark('pope', FIX)
    with pytest.raises(ConfigError, match='on_missing'): load_benchmark('gqa', FIX / 'gqa', on_missing='warn')
    with pytest.raises(ConfigError, match='MME parser'):
        score_mme(load_mme(FIX / 'mme'), ANSWERS['mme'], parser='strict')
    with pytest.raises(ConfigError, match='unknown MME subtask'): load_mme(FIX / 'mme', subtasks=['ocr'])
    with pytest.raises(DataError, match="judge 'half-broken' gave None"):
        score_mmvet(load_benchmark('mmvet', FIX / 'mmvet'), ANSWERS['mmvet'], judge=lambda q, gt, p: None,
                    judge_name='half-broken')


# ---- malformed files

def test_missing_images(tmp_path):
    d = copy('sqa', tmp_path)
    (d / 'images' / 'test' / '102' / 'image.png').unlink()
    with pytest.raises(MissingPathError, match=r"problem '102': image not found: .*102/image\.png"): load_sqa(d)
    qs = load_sqa(d, on_missing='skip')
    assert [q['question_id'] for q in qs] == ['101', '103'] and qs.skipped == ['102']
    assert score_benchmark('sqa', qs, {'101': 'B', '103': 'D'})['n_skipped'] == 1
    d = copy('mmvet', tmp_path)
    (d / 'images' / 'v1_1.png').unlink()
    with pytest.raises(MissingPathError, match=r"mm-vet\.json, question 'v1_1': image not found"):
        load_benchmark('mmvet', d)
    d = copy('gqa', tmp_path)
    shutil.rmtree(d / 'images')
    with pytest.raises(MissingPathError, match='GQA image folder not found'): load_benchmark('gqa', d)


@pytest.mark.parametrize('name,file', [('seed', 'SEED-Bench.json'), ('sqa', 'problems.json'),
                                       ('gqa', 'testdev_balanced_questions.json'), ('mmvet', 'mm-vet.json')])
def test_bad_json(tmp_path, name, file):
    d = copy(name, tmp_path)
    (d / file).write_text('{"oops": ', encoding='utf-8')
    with pytest.raises(DataError, match=rf'{file.replace(".", r"[.]")} is not valid JSON: .* line 1'):
        load_benchmark(name, d)


def _edit_json(path, fn):
    data = json.loads(path.read_text(encoding='utf-8'))
    fn(data)
    path.write_text(json.dumps(data), encoding='utf-8')


def test_missing_keys_and_bad_values(tmp_path):
    d = copy('seed', tmp_path)
    _edit_json(d / 'SEED-Bench.json', lambda j: j['questions'][2].pop('choice_c'))
    with pytest.raises(DataError, match=r"SEED-Bench\.json, question 3: missing field\(s\) \['choice_c'\]"):
        load_seed(d)
    _edit_json(d / 'SEED-Bench.json', lambda j: j['questions'][2].update(choice_c='x', answer='E'))
    with pytest.raises(DataError, match=r"question 3 \(id '103'\): answer must be one of A-D, got 'E'"): load_seed(d)
    _edit_json(d / 'SEED-Bench.json', lambda j: j.pop('question_type'))
    with pytest.raises(DataError, match="needs a 'questions' list and a 'question_type' mapping"): load_seed(d)

    d = copy('sqa', tmp_path)
    _edit_json(d / 'problems.json', lambda j: j['103'].update(answer=4))
    with pytest.raises(DataError, match=r"problem '103': answer 4 is not an index into its 4 choices"): load_sqa(d)
    _edit_json(d / 'problems.json', lambda j: j['103'].update(answer=3))
    _edit_json(d / 'pid_splits.json', lambda j: j['test'].append('999'))
    with pytest.raises(DataError, match=r"pid_splits\.json: problem '999' is not in problems\.json"): load_sqa(d)

    d = copy('gqa', tmp_path)
    _edit_json(d / 'testdev_balanced_questions.json', lambda j: j['202'].pop('answer'))
    with pytest.raises(DataError, match=r"question '202': missing field\(s\) \['answer'\]"): load_benchmark('gqa', d)

    d = copy('mmvet', tmp_path)
    _edit_json(d / 'mm-vet.json', lambda j: j['v1_2'].pop('capability'))
    with pytest.raises(DataError, match=r"question 'v1_2': missing field\(s\) \['capability'\]"):
        load_benchmark('mmvet', d)


def test_mme_malformed(tmp_path):
    d = copy('mme', tmp_path)
    (d / 'existence' / '0001.txt').write_text('Is there a red square?\tYes\n')
    with pytest.raises(DataError, match=r'0001\.txt: 1 question lines, expected 2'): load_mme(d)
    (d / 'existence' / '0001.txt').write_text('Is there a red square?\tYes\nIs there a blue square? No\n')
    with pytest.raises(DataError, match=r"0001\.txt, line 2: expected 'question<TAB>Yes\|No'"): load_mme(d)
    shutil.rmtree(d / 'artwork' / 'questions_answers_YN')
    (d / 'existence' / '0001.txt').write_text('q1\tYes\nq2\tNo\n')
    with pytest.raises(MissingPathError, match='MME artwork question folder not found'): load_mme(d)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataError, match='has none of the 14 subtask folders'): load_mme(tmp_path / 'empty')


def _write_tsv(path, rows):
    with open(path, 'w', newline='', encoding='utf-8') as f: csv.writer(f, delimiter='\t').writerows(rows)


def test_mmbench_malformed(tmp_path):
    with open(FIX / 'mmbench' / 'mmbench_dev_tiny.tsv', newline='', encoding='utf-8') as f:
        rows = list(csv.reader(f, delimiter='\t'))
    tsv, head = tmp_path / 'bad.tsv', rows[0]
    col = {c: i for i, c in enumerate(head)}
    _write_tsv(tsv, [r[:col['answer']] + r[col['answer'] + 1:] for r in rows])       # no answer column
    with pytest.raises(DataError, match=r"bad\.tsv: missing column\(s\) \['answer'\] \(a test split has no answers"):
        load_mmbench(tsv)
    bad = [r[:] for r in rows]; bad[2][col['answer']] = 'C'                  # question 1 has only A and B
    _write_tsv(tsv, bad)
    with pytest.raises(DataError,
                       match=r"bad\.tsv, line 3 \(index 1\): answer 'C' is not one of the options \['A', 'B'\]"):
        load_mmbench(tsv)
    bad = [r[:] for r in rows]; bad[3][col['image']] = 'not base64!'
    _write_tsv(tsv, bad)
    with pytest.raises(DataError, match=r"line 4 \(index 2\): 'image' is not valid base64"): load_mmbench(tsv)
    bad = [r[:] for r in rows]; bad[3][col['image']] = ''
    _write_tsv(tsv, bad)
    with pytest.raises(DataError, match=r"line 4 \(index 2\): no image"): load_mmbench(tsv)
    qs = load_mmbench(tsv, on_missing='skip')
    assert (len(qs), qs.skipped) == (6, ['2'])                               # all 3 shifts of question 2 dropped
    bad = [r[:] for r in rows]; bad[1][col['index']] = 'x'
    _write_tsv(tsv, bad)
    with pytest.raises(DataError, match=r"line 2: index 'x' is not a number"): load_mmbench(tsv)


def test_max_new_tokens_defaults():
    assert {k: b.max_new_tokens for k, b in BENCHMARKS.items()} == {'mme': 16, 'seed': 128, 'mmbench': 128, 'sqa': 16,
                                                                    'gqa': 16, 'mmvet': 1024}
    load, score, n = BENCHMARKS['gqa']
    assert (load.__name__, score.__name__, n) == ('load_gqa', 'score_gqa', 16)
