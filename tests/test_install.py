"""`pip install .` (not editable) gives a working `fisao` command and the package data, without the notebooks.

The fresh venv borrows the already-installed dependencies through a `.pth` line (so the test needs no network and no
multi-GB reinstall), but gets its own non-editable copy of fisao, built from the repo with `--no-build-isolation`.
The command then runs from an empty directory, far from the checkout, so nothing can come from the source tree."""
import json
import os
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp('install')
    env_dir = root / 'venv'
    venv.EnvBuilder(with_pip=True, symlinks=True).create(env_dir)
    py = env_dir / 'bin' / 'python'
    site = Path(subprocess.check_output([py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                                        text=True).strip())
    # dependencies only: the parent's site-packages as a plain path (its editable-install hooks are not processed)
    (site / 'zz_parent_deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    r = subprocess.run([py, '-m', 'pip', 'install', '--no-deps', '--no-build-isolation', '--no-index', '-q', str(REPO)],
                       capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    work = root / 'elsewhere'
    work.mkdir()
    return env_dir, work, site


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
