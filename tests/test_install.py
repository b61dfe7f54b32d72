"""`python -m build` makes an sdist and a wheel; each, installed in a fresh venv (not editable), gives a working `fisao`
command and the package data (synonym tables, presets, accelerate configs, paper scripts), without the notebooks.

The fresh venvs borrow the already-installed dependencies through a `.pth` line (so the test needs no network and no
multi-GB reinstall), but get their own non-editable copy of fisao: the wheel, and the sdist built again into a wheel
(which needs settings.ini inside the sdist). The commands run from an empty directory, far from the checkout, so
nothing can come from the source tree. The install with the dependencies themselves, through constraints.txt, is the
README's command 1, checked on a fresh clone (benchmarks/RESULTS.md)."""
import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    "The sdist and the wheel of the checkout (`python -m build`, the build backend already installed)."
    out = tmp_path_factory.mktemp('dist')
    r = subprocess.run([sys.executable, '-m', 'build', '--no-isolation', '--outdir', str(out), str(REPO)],
                       capture_output=True, text=True, cwd=out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    sdist, wheel = sorted(out.glob('fisao-*.tar.gz')), sorted(out.glob('fisao-*.whl'))
    assert len(sdist) == 1 and len(wheel) == 1, list(out.iterdir())
    return {'sdist': sdist[0], 'wheel': wheel[0]}


def _venv_with(root: Path, target: Path):
    "A fresh venv under `root` with `target` (a wheel or an sdist) installed, its dependencies borrowed."
    env_dir = root / 'venv'
    venv.EnvBuilder(with_pip=True, symlinks=True).create(env_dir)
    py = env_dir / 'bin' / 'python'
    site = Path(subprocess.check_output([py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                                        text=True).strip())
    # dependencies only: the parent's site-packages as a plain path (its editable-install hooks are not processed)
    (site / 'zz_parent_deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    r = subprocess.run([py, '-m', 'pip', 'install', '--no-deps', '--no-build-isolation', '--no-index', '-q',
                        str(target)], capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    work = root / 'elsewhere'
    work.mkdir()
    return env_dir, work, site


@pytest.fixture(scope='module', params=['wheel', 'sdist'])
def installed(request, dist, tmp_path_factory):
    return _venv_with(tmp_path_factory.mktemp(f'install_{request.param}'), dist[request.param])


def test_package_comes_from_the_install_not_the_checkout(installed):
    env_dir, work, site = installed
    out = subprocess.check_output([env_dir / 'bin/python', '-c',
                                   'import fisao, fisao.chair as c; print(fisao.__file__); '
                                   'print(c.package_vocab_path("coco")); print(c.package_vocab_path("shapeworld"))'],
                                  text=True, cwd=work, env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'})
    mod, coco, sw = out.split()
    assert Path(mod).is_relative_to(site), mod
    assert Path(coco).is_file() and Path(coco).is_relative_to(site)
    assert Path(sw).read_text().splitlines()[0] == 'circle, disc, disk'


def test_console_script_runs_world_and_chair(installed):
    env_dir, work, _ = installed
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    fisao = str(env_dir / 'bin' / 'fisao')
    r = subprocess.run([fisao, 'world', '--out', 'w', '--n-train', '30', '--n-calib', '5', '--n-val', '10',
                        '--n-val-prior', '5', '--quiet'],
                       capture_output=True, text=True, cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    anns = json.loads((work / 'w/annotations/captions_val.json').read_text())['annotations']
    (work / 'gen.jsonl').write_text('\n'.join(json.dumps({'image_id': a['image_id'], 'caption': a['caption']})
                                              for a in anns))
    r = subprocess.run([fisao, 'eval', 'chair', '--generations', 'gen.jsonl', '--instances',
                        'w/annotations/instances_val.json', '--vocab', 'w/vocab.txt', '--out', 'chair.json'],
                       capture_output=True, text=True, cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads((work / 'chair.json').read_text())['recall'] == 1.0
    # the built-in COCO table ships too: the golden case needs no file of ours
    r = subprocess.run([env_dir / 'bin/python', '-c',
                        'from fisao.chair import Chair; print(Chair().objects("Two men near a potted plant."))'],
                       capture_output=True, text=True, cwd=work, env=env)
    assert r.stdout.strip() == "['person', 'potted plant']", r.stderr


ENV = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}


def test_distributions_carry_licence_settings_and_ranges(dist):
    import tarfile
    import zipfile
    names = tarfile.open(dist['sdist']).getnames()
    for f in ('settings.ini', 'LICENSE', 'CITATION.cff', 'constraints.txt', 'fisao/assets/scripts/paper_pipeline.sh'):
        assert any(n.endswith('/' + f) for n in names), f'{f} missing from the sdist'
    whl = zipfile.ZipFile(dist['wheel'])
    meta = next(whl.read(n).decode() for n in whl.namelist() if n.endswith('.dist-info/METADATA'))
    requires = [l for l in meta.splitlines() if l.startswith('Requires-Dist:')]
    pinned = [r for r in requires if '==' in r.split(';')[0]]  # `; extra == "dev"` is a marker, not a pin
    assert requires and not pinned, pinned  # ranges; the pins live in constraints.txt
    assert any(n.endswith('.dist-info/licenses/LICENSE') for n in whl.namelist())
    assert 'Provides-Extra: lab' in meta and 'Provides-Extra: wandb' in meta


def test_presets_configs_and_scripts_ship(installed):
    env_dir, work, site = installed
    fisao = str(env_dir / 'bin' / 'fisao')
    r = subprocess.run([fisao, 'preset'], capture_output=True, text=True, cwd=work, env=ENV)
    assert r.returncode == 0, r.stderr
    listed = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert {'llava15_7b', 'instructblip_13b', 'accelerate/4xa100', 'paper_llava15_7b.sh'} <= set(listed), listed
    assert all(Path(p).is_relative_to(site) and Path(p).is_file() for p in listed.values()), listed
    r = subprocess.run([fisao, 'preset', 'llava15_7b', '--out', 'l.yaml'], capture_output=True, text=True, cwd=work,
                       env=ENV)
    assert r.returncode == 0 and 'lr: 5.0e-07' in (work / 'l.yaml').read_text(), r.stderr
    r = subprocess.run([fisao, 'train', '--preset', 'llava15_7b', '--config', 'l.yaml', '--steps', '3',
                        '--print-config'], capture_output=True, text=True, cwd=work, env=ENV)
    assert r.returncode == 0 and 'steps: 3' in r.stdout and 'r: 128' in r.stdout, r.stderr
    r = subprocess.run(['bash', listed['paper_llava15_7b.sh'], '--help'], capture_output=True, text=True, cwd=work)
    assert r.returncode == 0 and 'DRY_RUN' in r.stdout, r.stderr


def test_demo_quick_runs_from_the_wheel(dist, quick_pretrained, tmp_path_factory):
    "`fisao demo --quick` from an installed wheel, outside the checkout (the quick models copied in: built once)."
    import shutil
    env_dir, work, _ = _venv_with(tmp_path_factory.mktemp('install_demo'), dist['wheel'])
    shutil.copytree(quick_pretrained, work / 'demo' / 'pretrain')
    r = subprocess.run([str(env_dir / 'bin' / 'fisao'), 'demo', '--quick', '--quiet', '--out', 'demo'],
                       capture_output=True, text=True, cwd=work, env={**ENV, 'OMP_NUM_THREADS': '1'}, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (work / 'demo' / 'results.json').is_file() and (work / 'demo' / 'report.html').is_file()
    assert set(json.loads((work / 'demo' / 'results.json').read_text())['methods']) >= {'sft', 'fisao_token'}
