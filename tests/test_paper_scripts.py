"""scripts/paper_*.sh, the paper pipeline on 4×A100, checked without GPUs, models or data.

The scripts run against a fake layout in tmp_path (empty placeholder files and folders at the expected paths).
`accelerate` and `python3` are replaced by a stub that logs its arguments, so a test sees exactly what would have run;
`fisao` is the real CLI where the test needs the resolved config (`fisao train --print-config` only reads the YAML) and
the stub elsewhere. Also: the committed configs equal the presets they are written from, and
scripts/paper_compare.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / 'fisao' / 'assets'  # the scripts and configs ship in the package
PRESETS = {'llava15_7b': ('llava-1.5-7b-hf', 'clip-vit-large-patch14-336', 'lr: 5.0e-07'),
           'instructblip_13b': ('instructblip-vicuna-13b', 'clip-vit-large-patch14', 'lr: 4.0e-06')}
DIRS = ['coco/train2017', 'coco/train2014', 'coco/val2014']
FILES = ['llava_instruct_150k.json', 'coco/annotations/instances_train2014.json',
         'coco/annotations/instances_val2014.json', 'coco/annotations/captions_val2014.json']


def make_layout(tmp: Path, preset: str, optional: bool = False, skip: str | None = None) -> dict:
    """Placeholders at every path the script checks (without `skip`); `optional` adds captions_train2014.json, the POPE
    files and two benchmark copies."""
    data, models = tmp / 'data', tmp / 'models'
    model, clip, _ = PRESETS[preset]
    for d in (models / model, models / clip):
        d.mkdir(parents=True, exist_ok=True); (d / 'config.json').write_text('{}')
    for d in DIRS: (data / d).mkdir(parents=True, exist_ok=True)
    for f in FILES:
        (data / f).parent.mkdir(parents=True, exist_ok=True); (data / f).write_text('')
    if optional:
        (data / 'coco/annotations/captions_train2014.json').write_text('')
        (data / 'pope').mkdir()
        for s in ('random', 'popular', 'adversarial'): (data / 'pope' / f'coco_pope_{s}.json').write_text('')
        for b in ('MME_Benchmark_release_version', 'gqa'): (data / 'benchmarks' / b).mkdir(parents=True)
    if skip:
        p = data / skip
        p.rmdir() if p.is_dir() else p.unlink()
    return {'data': data, 'models': models, 'model': models / model, 'clip': models / clip,
            'run': tmp / 'runs' / preset}


def stub(tmp: Path) -> tuple:
    "An executable that appends its arguments to a log (and does nothing else); returns (stub, log)."
    log, s = tmp / 'calls.log', tmp / 'stub'
    s.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n'); s.chmod(0o755)
    return s, log


def real_fisao(tmp: Path) -> Path:
    "`fisao` as a command name, for this interpreter (the venv's console script may not be on PATH)."
    f = tmp / 'fisao_cmd'
    f.write_text(f'#!/bin/sh\nexec {sys.executable} -m fisao.cli "$@"\n'); f.chmod(0o755)
    return f


def run_script(preset: str, tmp: Path, lay: dict, *args, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ, OMP_NUM_THREADS='1', DATA=str(lay['data']), MODELS=str(lay['models']), RUN=str(lay['run']))
    e.update({k: str(v) for k, v in env.items()})
    script = ASSETS / 'scripts' / f'paper_{preset}.sh'
    return subprocess.run(['bash', str(script), *args], capture_output=True, text=True,
                          env=e, cwd=tmp, timeout=120)


def test_bash_syntax():
    for name in ('paper_pipeline.sh', 'paper_llava15_7b.sh', 'paper_instructblip_13b.sh'):
        r = subprocess.run(['bash', '-n', str(ASSETS / 'scripts' / name)], capture_output=True, text=True)
        assert r.returncode == 0, f'{name}: {r.stderr}'
    for name in ('paper_llava15_7b.sh', 'paper_instructblip_13b.sh', 'paper_compare.py'):
        assert os.access(ASSETS / 'scripts' / name, os.X_OK), f'scripts/{name} is not executable'


@pytest.mark.parametrize('preset', list(PRESETS))
def test_dry_run_prints_every_stage(preset, tmp_path):
    lay = make_layout(tmp_path, preset, optional=True)
    s, log = stub(tmp_path)
    r = run_script(preset, tmp_path, lay, '--dry-run', FISAO=real_fisao(tmp_path), ACCELERATE=s, PYTHON=s)
    assert r.returncode == 0, r.stdout + r.stderr
    out, d, run = r.stdout, lay['data'], lay['run']
    assert 'MISSING' not in out and 'dry run' in out
    launch = f"{s} launch --config_file {ASSETS}/configs/accelerate/4xa100.yaml --num_processes 4 -m fisao"
    expected = [
        f"calibrate --model {lay['model']} --clip {lay['clip']} "
        f"--instances {d}/coco/annotations/instances_train2014.json "
        f"--captions {d}/coco/annotations/captions_train2014.json --images {d}/coco/train2014 "
        f"--n-images 5000 --seed 0 --config {ASSETS}/configs/{preset}.yaml --dtype bf16 --device cuda:0 "
        f"--out {run}/calibration.json",
        f"{launch} train --config {ASSETS}/configs/{preset}.yaml --out {run} "
        f"--verifier.calibration {run}/calibration.json --model.path {lay['model']} --model.clip {lay['clip']} "
        f"--data.prompts {d}/llava_instruct_150k.json --data.image-dir {d}/coco/train2017",
        '--steps 125 --resume',
        f"{real_fisao(tmp_path)} report {run}",
        f"{s} {ASSETS}/scripts/paper_compare.py {run}/eval --out {run}/eval/comparison.json"]
    for target, src in (('fisao', f'--run {run}'), ('base', f"--model {lay['model']}")):
        o = f'{run}/eval/{target}'
        expected += [f"{launch} eval chair {src} --dtype bf16 --instances {d}/coco/annotations/instances_val2014.json "
                     f"--captions {d}/coco/annotations/captions_val2014.json --images {d}/coco/val2014 "
                     f"--n-images 500 --seed 0 --max-new-tokens 64 512 --out {o}/chair.json",
                     f"{launch} eval captions {src} --dtype bf16 --captions {d}/coco/annotations/captions_val2014.json "
                     f"--images {d}/coco/val2014 --n-images 500 --seed 0 --out {o}/captions.json",
                     f"{launch} eval mme {src} --dtype bf16 --data {d}/benchmarks/MME_Benchmark_release_version "
                     f"--out {o}/mme.json",
                     f"{launch} eval gqa {src} --dtype bf16 --data {d}/benchmarks/gqa --out {o}/gqa.json"]
        expected += [f"{launch} eval pope {src} --dtype bf16 --questions {d}/pope/coco_pope_{s_}.json "
                     f"--images {d}/coco/val2014 --out {o}/pope_{s_}.json"
                     for s_ in ('random', 'popular', 'adversarial')]
        assert f'[eval seed, {target}] skipped: no {d}/benchmarks/SEED-Bench' in out
    for e in expected: assert e in out, f'not printed: {e}\n---\n{out}'
    # the resolved config: the preset with the script's paths on top
    model, _, lr = PRESETS[preset]
    # the nested sections, indented by the script's 4 spaces
    for line in (f"      path: {lay['model']}", f'    out: {run}', f'      prompts: {d}/llava_instruct_150k.json',
                 f'      {lr}', '    steps: 125', '      r: 128', '      epochs: 4'):
        assert line in out.splitlines(), f'resolved config lacks {line!r}'
    assert not log.exists(), f'a dry run ran: {log.read_text()}'
    assert not run.exists()


def test_dry_run_reports_missing_and_goes_on(tmp_path):
    s, log = stub(tmp_path)
    lay = {'data': tmp_path / 'nodata', 'models': tmp_path / 'nomodels', 'run': tmp_path / 'run'}
    r = run_script('llava15_7b', tmp_path, lay, DRY_RUN=1, FISAO=s, ACCELERATE=s, PYTHON=s, NPROC=2)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"MISSING   {tmp_path}/nomodels/llava-1.5-7b-hf/config.json" in r.stdout
    assert f"MISSING   {tmp_path}/nodata/coco/annotations/instances_val2014.json" in r.stdout
    assert ('(dry run: going on)' in r.stdout and '--num_processes 2' in r.stdout
            and '--steps 250 --resume' in r.stdout)  # 8000 / (16 x 2)
    assert (f"eval pope --run {tmp_path}/run --dtype bf16 "
            f"--instances {tmp_path}/nodata/coco/annotations/instances_val2014.json" in r.stdout)  # POPE built
    calls = log.read_text().splitlines()  # the commands a dry run runs: the resolved config, the prompts' count
    assert len(calls) == 2 and all(c.startswith('train --config') for c in calls), calls
    assert calls[0].endswith('--print-config') and calls[1].endswith('--check-prompts'), calls


def test_dry_run_counts_the_evaluation_images_kept_out_of_the_prompts(tmp_path):
    """LLaVA-Instruct prompts point at train2017, which holds val2014 images under the same ids: the dry run says how
    many prompt records it passed over because their image is one of the evaluation images."""
    lay = make_layout(tmp_path, 'llava15_7b')
    d = lay['data']
    recs = [{'id': str(k), 'image': f'{k:012d}.jpg', 'conversations': [{'from': 'human', 'value': f'<image>\nQ{k}?'}]}
            for k in range(1, 7)]
    (d / 'llava_instruct_150k.json').write_text(json.dumps(recs))
    for k in range(1, 7): (d / 'coco' / 'train2017' / f'{k:012d}.jpg').write_bytes(b'')
    val = {'images': [{'id': k, 'file_name': f'COCO_val2014_{k:012d}.jpg'} for k in (2, 5, 9)],
           'annotations': [], 'categories': []}
    (d / 'coco' / 'annotations' / 'instances_val2014.json').write_text(json.dumps(val))
    s, _ = stub(tmp_path)
    r = run_script('llava15_7b', tmp_path, lay, '--dry-run', FISAO=real_fisao(tmp_path), ACCELERATE=s, PYTHON=s)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ('prompts: 4 from' in r.stdout
            and '2 records skipped as evaluation images (instances_val2014.json)' in r.stdout), r.stdout


def test_calibration_labels_with_train_captions_only_when_present(tmp_path):
    """captions_train2014.json is optional: without it the calibration labels against the instances alone (and the
    layout says so); with it, `--captions` (test_dry_run_prints_every_stage). Either way the captions decode like the
    run's rollouts (`--config`)."""
    lay = make_layout(tmp_path, 'llava15_7b')
    s, _ = stub(tmp_path)
    r = run_script('llava15_7b', tmp_path, lay, '--dry-run', FISAO=s, ACCELERATE=s, PYTHON=s)
    assert r.returncode == 0, r.stdout + r.stderr
    d = lay['data']
    assert f"absent    {d}/coco/annotations/captions_train2014.json" in r.stdout
    cal = next(line for line in r.stdout.splitlines() if ' calibrate ' in line)
    assert (f"--instances {d}/coco/annotations/instances_train2014.json --images {d}/coco/train2014" in cal
            and '--captions' not in cal and f'--config {ASSETS}/configs/llava15_7b.yaml' in cal), cal


def test_one_gpu_keeps_the_batch(tmp_path):
    """NPROC=1 with the 4-GPU batch in TRAIN_ARGS: the 1-GPU accelerate config and still 125 steps (one epoch of 8k
    prompts)."""
    s, _ = stub(tmp_path)
    lay = {'data': tmp_path / 'd', 'models': tmp_path / 'm', 'run': tmp_path / 'run'}
    r = run_script('llava15_7b', tmp_path, lay, '-n', FISAO=s, ACCELERATE=s, PYTHON=s, NPROC=1,
                   TRAIN_ARGS='--rollout.batch 64 --ppo.minibatch-size 16 --ppo.grad-accum 4')
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'launch --config_file {ASSETS}/configs/accelerate/1gpu.yaml --num_processes 1' in r.stdout
    assert '--steps 125 --rollout.batch 64 --ppo.minibatch-size 16 --ppo.grad-accum 4 --resume' in r.stdout


@pytest.mark.parametrize('preset,skip', [('llava15_7b', 'coco/annotations/instances_val2014.json'),
                                         ('instructblip_13b', 'coco/train2014')])
def test_missing_piece_stops_before_anything(preset, skip, tmp_path):
    lay = make_layout(tmp_path, preset, skip=skip)
    s, log = stub(tmp_path)
    r = run_script(preset, tmp_path, lay, FISAO=s, ACCELERATE=s, PYTHON=s)
    assert r.returncode != 0
    assert f"MISSING   {lay['data'] / skip}" in r.stdout and 'nothing was run' in r.stdout
    assert r.stdout.count('MISSING') == 1, r.stdout
    assert not log.exists(), f'ran despite a missing path: {log.read_text()}'
    assert not lay['run'].exists()


def test_rerun_skips_finished_stages(tmp_path):
    lay = make_layout(tmp_path, 'llava15_7b')
    s, log = stub(tmp_path)
    run = lay['run']
    for f in ('calibration.json', 'summary.json', 'eval/base/chair.json'):
        (run / f).parent.mkdir(parents=True, exist_ok=True); (run / f).write_text('{}')
    r = run_script('llava15_7b', tmp_path, lay, FISAO=s, ACCELERATE=s, PYTHON=s)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = log.read_text().splitlines()
    assert not any(c.startswith(('calibrate', 'train')) or ' train ' in c for c in calls), calls
    assert f'[eval chair, base] skipped: {run}/eval/base/chair.json exists' in r.stdout
    chair = [c for c in calls if ' eval chair ' in c]
    assert len(chair) == 1 and f'--run {run}' in chair[0]
    assert sum(' eval pope ' in c for c in calls) == 2 and sum(' eval captions ' in c for c in calls) == 2
    assert (f'report {run}' in calls
            and calls[-1].endswith(f'paper_compare.py {run}/eval --out {run}/eval/comparison.json'))


@pytest.mark.parametrize('preset', list(PRESETS))
def test_config_file_equals_preset(preset):
    from fisao.presets import PRESETS as P
    from fisao.presets import preset_yaml
    from fisao.trainconfig import load_config
    path = ASSETS / 'configs' / f'{preset}.yaml'
    assert path.read_text(encoding='utf-8') == preset_yaml(preset), \
        (f"{path} differs from fisao.presets.{preset}(): "
         f"python -c \"from fisao.presets import write_preset; write_preset('{preset}')\"")
    assert load_config(path) == P[preset]()


def test_compare_table(tmp_path):
    ev = tmp_path / 'eval'
    rows = {'base': (0.5, 0.20, 0.85), 'fisao': (0.4, 0.15, 0.86)}
    for side, (cs, ci, f1) in rows.items():
        (ev / side).mkdir(parents=True)
        chair = {'chair_s': cs, 'by_max_new_tokens': {'64': {'chair_s': cs, 'chair_i': ci, 'n_images': 500},
                                                      '512': {'chair_s': cs, 'chair_i': ci}}}
        (ev / side / 'chair.json').write_text(json.dumps(chair))
        (ev / side / 'pope.json').write_text(json.dumps({'f1': f1, 'splits': {'random': {'f1': f1, 'tp': 3}},
                                                         'parser': 'official'}))
    (ev / 'base' / 'mme.json').write_text(json.dumps({'perception': 1500.0, 'complete': True}))
    r = subprocess.run([sys.executable, str(ASSETS / 'scripts' / 'paper_compare.py'), str(ev), '--out',
                        str(ev / 'comparison.json')],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    table = json.loads((ev / 'comparison.json').read_text())
    assert table['chair:L64/chair_i'] == {'base': 0.2, 'fisao': 0.15, 'delta': pytest.approx(-0.05)}
    assert (table['pope:random/f1']['delta'] == pytest.approx(0.01)
            and table['mme:perception'] == {'base': 1500.0, 'fisao': None, 'delta': None})
    assert not any(k.endswith(('n_images', 'tp', 'complete')) or k == 'chair:chair_s' for k in table), sorted(table)
