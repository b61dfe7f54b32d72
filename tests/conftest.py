"""Shared setup for fisao's pytest suite (the checks `nbdev_test` cannot do).

- Markers `gpu` and `slow`; `gpu` tests are skipped when CUDA is absent. torch is imported lazily,
  and only if a collected test is `gpu`-marked, so collecting the suite never imports torch.
- No Hub access from any machine: `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` default to 1, and no network at all:
  tests/netblock/sitecustomize.py blocks non-loopback sockets here and (via PYTHONPATH) in every subprocess.
- `FISAO_REPO_ROOT` points the suite at another nbdev project (default: the parent of tests/);
  used to check these tests against throwaway projects with deliberately broken notebooks.
- Fixtures: `repo_root`, `settings` (settings.ini), `nb_paths` (the notebooks nbdev processes),
  `nbtools` (cell-source and `#|` directive parsing shared by the notebook tests), and two
  collection-time parametrizations: `nb_path` (+ `nb`, its raw JSON) and `module_name`.
  Both lists are computed at collection time, so new notebooks/modules are picked up automatically.
- Cell indices in messages are 0-based over all cells, like nbdev's `# %% nb idx` markers.
"""
import json
import os
import re
from collections import namedtuple
from configparser import ConfigParser
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

# No network, in this process and in every Python process a test starts (tests/netblock/sitecustomize.py): a CLI test
# that passes is also a test that the command works offline.
_NETBLOCK = Path(__file__).resolve().parent / 'netblock'
os.environ['PYTHONPATH'] = os.pathsep.join([str(_NETBLOCK), *filter(None, [os.environ.get('PYTHONPATH')])])
import importlib.util as _ilu  # noqa: E402

_spec = _ilu.spec_from_file_location('fisao_test_netblock', _NETBLOCK / 'sitecustomize.py')
_spec.loader.exec_module(_ilu.module_from_spec(_spec))  # patches socket unless FISAO_TEST_ALLOW_NETWORK=1


# ---- project discovery (plain functions: collection-time parametrization cannot use fixtures)

def get_repo_root() -> Path:
    "Root of the nbdev project under test: $FISAO_REPO_ROOT, else the parent of tests/."
    return Path(os.environ.get('FISAO_REPO_ROOT') or Path(__file__).resolve().parent.parent).resolve()


def read_settings(root: Path) -> dict:
    "The [DEFAULT] section of settings.ini, read the way setup.py reads it."
    cfg = ConfigParser(delimiters=['='], interpolation=None)
    if not cfg.read(root / 'settings.ini', encoding='utf-8'):
        raise FileNotFoundError(f'no settings.ini in {root} (set FISAO_REPO_ROOT to an nbdev project)')
    return dict(cfg['DEFAULT'])


def _truthy(s) -> bool: return str(s).strip().lower() in ('1', 'true', 'yes', 'y', 'on', 't')


def find_notebooks(root: Path) -> list:
    """Notebooks that `nbdev_export`/`nbdev_test` process (nbdev's `nbglob`): `*.ipynb` under nbs_path,
    skipping files and folders whose names start with `_` or `.`; subfolders only if `recursive`."""
    s = read_settings(root)
    nbs = root / s.get('nbs_path', 'nbs')
    if not nbs.is_dir(): return []
    recursive = _truthy(s.get('recursive', 'True'))  # nbdev's default is True
    res = []
    for dirpath, dirnames, filenames in os.walk(nbs):
        dirnames[:] = [] if not recursive else [d for d in dirnames if not d.startswith(('_', '.'))]
        res += [Path(dirpath) / f for f in filenames if f.endswith('.ipynb') and not f.startswith(('_', '.'))]
    return sorted(res)


def lib_dir(root: Path) -> Path:
    s = read_settings(root)
    return root / s.get('lib_path', s.get('lib_name', 'fisao'))


def find_module_files(root: Path) -> list:
    "Every `.py` file in the library (recursive), except `__init__.py`, `_modidx.py`, caches and `assets/` (data)."
    lib = lib_dir(root)
    if not lib.is_dir(): return []
    res = []
    for dirpath, dirnames, filenames in os.walk(lib):
        dirnames[:] = [d for d in dirnames if d not in ('__pycache__', 'assets') and not d.startswith('.')]
        res += [Path(dirpath) / f for f in filenames if f.endswith('.py') and f not in ('__init__.py', '_modidx.py')]
    return sorted(res)


def module_name_of(root: Path, py: Path) -> str:
    "Dotted import name, e.g. fisao/sub/x.py -> 'fisao.sub.x' (as nbdev's _modidx names it)."
    return '.'.join(py.relative_to(lib_dir(root).parent).with_suffix('').parts)


def nb_rel(root: Path, nb: Path) -> str:
    "Short, readable name for a notebook in messages and test ids (relative to the repo root)."
    try: return nb.relative_to(root).as_posix()
    except ValueError: return str(nb)


# ---- notebook cells and `#|` directives, parsed the way nbdev 2.3.34 does (nbdev/process.py)

DIRECTIVE_RE = re.compile(r'^\s*#\s*\|')     # nbdev's `_dir_pre` for python
CELL_MAGIC_RE = re.compile(r'^\s*%%\w+')      # nbdev's `_cell_mgc`: allowed inside the leading block
Directive = namedtuple('Directive', 'lineno line name args')  # lineno is 1-based within the cell


def cell_source(cell) -> str:
    src = cell.get('source', '')
    return ''.join(src) if isinstance(src, list) else src


def parse_directive(line: str):
    "`(name, args)` of one `#|` line, as nbdev's `_directive` splits it (`#| eval: false` -> `('eval:', ['false'])`)."
    s = DIRECTIVE_RE.sub('', line, count=1).strip()
    if s.endswith(':'): s = s.replace(':', '')  # Quarto-style bare flag, e.g. `#| hide:`
    if ':' in s: s = s.replace(':', ': ')
    toks = s.split()
    return (toks[0], toks[1:]) if toks else (None, [])


def split_directives(source: str):
    """`(leading, late)` for a code cell. `leading`: the `Directive`s nbdev sees, i.e. those in the block of
    blank, `#|` and `%%magic` lines before the first code line. `late`: `(lineno, line)` of `#|` lines after
    it, which nbdev treats as plain comments (so a `#| slow` there silently does nothing)."""
    lines = source.splitlines()
    first_code = next((i for i, l in enumerate(lines)
                       if l.strip() and not DIRECTIVE_RE.match(l) and not CELL_MAGIC_RE.match(l)), len(lines))
    leading = [Directive(i + 1, l, *parse_directive(l)) for i, l in enumerate(lines[:first_code])
               if DIRECTIVE_RE.match(l)]
    late = [(i + 1, l) for i, l in enumerate(lines) if i >= first_code and DIRECTIVE_RE.match(l)]
    return leading, late


def code_cells(nb: dict):
    "`(index, source)` of every code cell; index is 0-based over all cells."
    return [(i, cell_source(c)) for i, c in enumerate(nb.get('cells', [])) if c.get('cell_type') == 'code']


def default_exps(nb: dict) -> list:
    "`(cell index, module or None)` for every `#| default_exp` nbdev would see."
    return [(i, (d.args or [None])[0]) for i, src in code_cells(nb)
            for d in split_directives(src)[0] if d.name == 'default_exp']


# ---- pytest hooks

def pytest_configure(config):
    config.addinivalue_line('markers', 'gpu: needs a CUDA device (auto-skipped without one)')
    config.addinivalue_line('markers', 'slow: long-running test (minutes)')


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` deselection: only the gpu tests that will run count
def pytest_collection_modifyitems(config, items):
    gpu_items = [it for it in items if it.get_closest_marker('gpu') is not None]
    if not gpu_items: return  # don't pay for `import torch` when nothing needs it
    try:
        import torch
        reason = None if torch.cuda.is_available() else 'needs CUDA: torch.cuda.is_available() is False'
    except ImportError as e:
        reason = f'needs CUDA: torch is not importable ({e})'
    if reason is None: return
    for it in gpu_items: it.add_marker(pytest.mark.skip(reason=reason))


def pytest_generate_tests(metafunc):
    root = get_repo_root()
    if 'nb_path' in metafunc.fixturenames:
        nbs = find_notebooks(root)
        metafunc.parametrize('nb_path', nbs, ids=[nb_rel(root, p) for p in nbs])
    if 'module_name' in metafunc.fixturenames:
        mods = [module_name_of(root, p) for p in find_module_files(root)]
        metafunc.parametrize('module_name', mods, ids=mods)


# ---- fixtures

@pytest.fixture(scope='session')
def repo_root() -> Path: return get_repo_root()


@pytest.fixture(scope='session')
def settings(repo_root) -> dict: return read_settings(repo_root)


@pytest.fixture(scope='session')
def nb_paths(repo_root) -> list: return find_notebooks(repo_root)


@pytest.fixture(scope='session')
def nbtools():
    "The parsing helpers above, for test modules (importing conftest directly is fragile)."
    return SimpleNamespace(cell_source=cell_source, parse_directive=parse_directive, split_directives=split_directives,
                           code_cells=code_cells, default_exps=default_exps, nb_rel=nb_rel,
                           lib_dir=lib_dir, find_module_files=find_module_files, module_name_of=module_name_of)


@pytest.fixture
def nb(nb_path) -> dict:
    "Raw JSON of the parametrized notebook (not normalised by nbformat, so hygiene checks see the file as is)."
    try: return json.loads(nb_path.read_text(encoding='utf-8'))
    except (ValueError, UnicodeDecodeError) as e: err = e  # e.g. a merge left conflict markers in the JSON
    pytest.fail(f'{nb_rel(get_repo_root(), nb_path)} is not a readable notebook (JSON): {err}', pytrace=False)


# ---- ShapeWorld's quick tiny models, built once per test session (about a minute on 2 CPU cores)

@pytest.fixture(scope='session')
def quick_pretrained(tmp_path_factory):
    """`fisao pretrain --quick` output directory (clip/, llava/, world/, pretrain.json), shared by every test that
    needs models."""
    from cli_helper import fisao
    out = tmp_path_factory.mktemp('quick_models') / 'pretrain'
    fisao('pretrain', '--quick', '--out', out, '--quiet')
    return out



@pytest.fixture(scope='session')
def train_run(quick_pretrained, tmp_path_factory):
    """A 2-step `fisao train` run on the quick models, a checkpoint after each step (lr 3e-3: the adapter visibly
    changes the policy), shared by the eval-model and model-card tests."""
    import os
    import subprocess
    import sys
    out = tmp_path_factory.mktemp('train') / 'run'
    cmd = [sys.executable, '-m', 'fisao', 'train', '--model.pretrained', str(quick_pretrained), '--out', str(out),
           '--model.quick', '--steps', '2', '--rollout.batch', '8', '--ppo.minibatch-size', '4', '--ppo.epochs', '1',
           '--eval.images', '8', '--eval.every', '0', '--rollout.max-new-tokens', '16', '--log.save-every', '1',
           '--quiet', '--optim.lr', '3e-3']
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.returncode == 0, r.stderr[-3000:]
    return out

# ---- the golden CHAIR case of nbs/eval_protocols.md §1.8 (CHAIR_s 2/3, CHAIR_i 3/8, Recall 5/6), for the CHAIR tests

GOLDEN_GENERATIONS = [{'image_id': 42, 'caption': 'A man and his dogs are next to a red car.'},
                      {'image_id': 73, 'caption': 'A dining table with a laptop computer and a toilet seat.'},
                      {'image_id': 101, 'caption': 'A woman sitting on a sofa.'}]


@pytest.fixture
def golden_coco(tmp_path) -> SimpleNamespace:
    "`instances`, `captions` (COCO JSON files in tmp_path) and `generations` (records) of the §1.8 golden case."
    cats = [{'id': 1, 'name': 'person'}, {'id': 18, 'name': 'dog'}, {'id': 62, 'name': 'chair'},
            {'id': 67, 'name': 'dining table'}]
    images = [{'id': i, 'file_name': f'COCO_val2014_{i:012d}.jpg', 'width': 64, 'height': 48} for i in (42, 73, 101)]
    inst = [(42, 1), (42, 1), (42, 18), (73, 62), (73, 67), (101, 1)]
    (tmp_path / 'inst.json').write_text(json.dumps({'images': images, 'categories': cats, 'annotations': [
        {'id': k, 'image_id': i, 'category_id': c, 'bbox': [0, 0, 10, 10], 'area': 100, 'iscrowd': 0}
        for k, (i, c) in enumerate(inst)]}))
    (tmp_path / 'caps.json').write_text(json.dumps({'images': images, 'annotations': [
        {'id': 1, 'image_id': 42, 'caption': 'A man walking his dog.'},
        {'id': 2, 'image_id': 73, 'caption': 'A wooden table with chairs.'},
        {'id': 3, 'image_id': 101, 'caption': 'A woman on a couch.'}]}))
    return SimpleNamespace(instances=tmp_path / 'inst.json', captions=tmp_path / 'caps.json',
                           generations=[dict(g) for g in GOLDEN_GENERATIONS])
