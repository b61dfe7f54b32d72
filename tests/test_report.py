"""`fisao.viz.report` on a real `fisao train` run directory and on a demo directory built from it.

The quick tiny models come from the session fixture `quick_pretrained` (conftest.py) and one short run (4 steps, samples
and held-out CHAIR every 2) gives the run directory. The demo directory copies that run under `runs/<method>/` next to a
`results.json` whose numbers are made up (a layout example): only the report's structure is checked here, never a
result."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

QUICK = ['--model.quick', '--rollout.batch', '16', '--ppo.minibatch-size', '8', '--ppo.epochs', '2',
         '--eval.images', '40', '--rollout.max-new-tokens', '24', '--no-log.progress', '--steps', '4',
         '--eval.every', '2', '--log.samples-every', '2', '--log.report-to', 'none']
IMG = '<img src="data:image/png;base64,'


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory, quick_pretrained):
    base = tmp_path_factory.mktemp('report')
    out = base / 'run'
    env = dict(os.environ, OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    r = subprocess.run([sys.executable, '-m', 'fisao.cli', 'train', '--model.pretrained', str(quick_pretrained),
                        '--out', str(out), *QUICK],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def _sections(page):
    from fisao.viz import SECTIONS
    missing = [s for s in SECTIONS if f'>{s}</h2>' not in page]
    assert not missing, f'sections missing from the report: {missing}'
    assert 'could not be drawn' not in page, re.findall(r'could not be drawn[^<]*', page)


def test_report_run_dir(run_dir, tmp_path):
    from fisao.viz import report
    run = shutil.copytree(run_dir, tmp_path / 'run')
    p = report(run)
    assert p == run / 'report.html'
    page = p.read_text(encoding='utf-8')
    _sections(page)
    # CHAIR bars, verifier histogram, >= 2 token heatmaps (first and last sampled step), training curves
    assert page.count(IMG) >= 5, page.count(IMG)
    assert page.count(IMG) == len(list((run / 'report_files').glob('*.png')))
    assert 'before (step 0)' in page and 'after (step 4)' in page
    assert 'first sampled step (2)' in page and 'last sampled step (4)' in page
    assert 'no POPE results' in page  # a training run has no POPE: a note, not a crash
    assert not list(run.glob('.report.html.*')), 'temporary file left behind'


def test_report_demo_dir(run_dir, tmp_path):
    from fisao.viz import report
    demo = tmp_path / 'demo'
    for m in ('fisao_token', 'oracle_token'):
        shutil.copytree(run_dir, demo / 'runs' / m, ignore=shutil.ignore_patterns('checkpoints', 'report*'))
    shutil.copy(run_dir / 'calibration.json', demo / 'calibration.json')
    pope = {'random': {'accuracy': .72, 'precision': .70, 'recall': .75, 'f1': .724, 'yes_ratio': .53},
            'adversarial': {'accuracy': .64, 'precision': .61, 'recall': .75, 'f1': .673, 'yes_ratio': .61}}
    m = lambda s, i, f: {'chair_s': s, 'chair_i': i, 'recall': .4, 'len': 12.0, 'dup_per_caption': .5, 'pope_f1': f}
    (demo / 'results.json').write_text(json.dumps({
        'note': 'LAYOUT EXAMPLE: made-up numbers, not results',
        'methods': {'sft': {**m(.5, .37, .71), 'pope': pope}, 'fisao_token': m(.3, .2, .75),
                    'oracle_token': m(.12, .08, .8)},
        'timings': {'pretrain': 120.0, 'total': 600.0}, 'quick': True}))
    page = report(demo).read_text(encoding='utf-8')
    _sections(page)
    # CHAIR bars, verifier histogram, 2 runs x 2 sampled steps of token heatmaps, training curves
    assert page.count(IMG) >= 7, page.count(IMG)
    assert 'LAYOUT EXAMPLE' in page and 'not in results.json: fisao_sentence' in page
    assert '<td>67.3</td>' in page  # the POPE table (adversarial F1, x100)
    assert 'after: fisao_token' in page and 'after: oracle_token' in page  # the captions table's columns


def test_report_needs_inputs(tmp_path):
    from fisao.core import MissingPathError
    from fisao.viz import report
    empty = tmp_path / 'nothing_here'
    empty.mkdir()
    with pytest.raises(MissingPathError, match='nothing_here holds none of the report inputs'): report(empty)
    with pytest.raises(MissingPathError, match='run directory not found'): report(tmp_path / 'absent')


def test_report_cli(run_dir, tmp_path, capsys):
    """`fisao report RUN_DIR --out FILE` from the command line (in this process); a missing directory is a one-line
    error."""
    from fisao.cli import main
    run = shutil.copytree(run_dir, tmp_path / 'run', ignore=shutil.ignore_patterns('checkpoints'))
    assert main(['report', str(run), '--out', str(tmp_path / 'r.html'), '--no-pngs']) == 0
    page = (tmp_path / 'r.html').read_text(encoding='utf-8')
    assert page.count(IMG) >= 5 and not (run / 'report_files').exists()
    capsys.readouterr()
    assert main(['report', str(tmp_path / 'absent')]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('fisao: error:') and 'absent' in err and len(err.splitlines()) == 1
