"""Import every exported `fisao` module in a fresh interpreter.

The nbdev holes this guards (STYLE.md pitfalls 4 and 17): `nbdev_test` runs the *notebook*, never the
generated module, so
- a magic or shell escape in an `#| export` cell is copied verbatim into `fisao/x.py` while the notebook
  passes, and `import fisao.x` raises SyntaxError (nbdev 2.3.34's `nbdev_export` does write the module; it
  then fails while rebuilding `_modidx.py`, leaving none behind);
- everything in an export cell runs at import: model loading, Hub calls, `torch.cuda` calls. Here each
  module must import, must not initialise CUDA, and must import in under IMPORT_LIMIT_S seconds.

Each module gets its own subprocess (no state shared with pytest or other modules); the subprocesses run
in parallel to keep the suite fast, and each measures only its own import.
Also checks that `fisao.__version__` (written by nbdev_export, `put_version_in_init`) matches settings.ini.
"""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

IMPORT_LIMIT_S = 20.0     # generous: torch + transformers alone take a few seconds
SUBPROCESS_TIMEOUT_S = 180
TAG = '__FISAO_IMPORT_REPORT__'

_PROBE = r'''
import importlib, json, sys, time
name, tag = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
mod = importlib.import_module(name)
dt = time.perf_counter() - t0
torch = sys.modules.get('torch')
rep = dict(seconds=dt, file=getattr(mod, '__file__', None),
           cuda_initialized=bool(torch is not None and torch.cuda.is_initialized()),
           heavy=[m for m in ('torch', 'transformers', 'peft', 'trl', 'matplotlib') if m in sys.modules])
print(tag + json.dumps(rep))
'''


def _require(ok, msg):
    "Fail with just `msg` (no traceback): the messages say what is wrong and how to fix it."
    if not ok: pytest.fail(msg, pytrace=False)


def _env(root):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(root)] + [p for p in [env.get('PYTHONPATH')] if p])
    env['PYTHONDONTWRITEBYTECODE'] = '1'  # don't litter the checkout with __pycache__
    env.setdefault('HF_HUB_OFFLINE', '1')
    env.setdefault('TRANSFORMERS_OFFLINE', '1')
    return env


def _probe(root, name):
    "Import `name` in a fresh interpreter; return (report dict or None, captured output)."
    try:
        p = subprocess.run([sys.executable, '-c', _PROBE, name, TAG], cwd=root, env=_env(root),
                           capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        out = ''.join(x.decode(errors='replace') if isinstance(x, bytes) else x
                      for x in (e.stdout or '', e.stderr or ''))
        return None, f'import did not finish within {SUBPROCESS_TIMEOUT_S} s (hang at import?)\n{out}'
    rep = next((json.loads(l[len(TAG):]) for l in p.stdout.splitlines() if l.startswith(TAG)), None)
    other = '\n'.join(l for l in p.stdout.splitlines() if not l.startswith(TAG))
    return rep, (other + '\n' + p.stderr).strip()


@pytest.fixture(scope='module')
def import_reports(repo_root, nbtools):
    "All modules probed at once, in parallel (each still in its own fresh interpreter)."
    names = [nbtools.module_name_of(repo_root, p) for p in nbtools.find_module_files(repo_root)]
    workers = max(1, min(4, (os.cpu_count() or 2) // 2))
    with ThreadPoolExecutor(workers) as ex:
        return dict(zip(names, ex.map(lambda n: _probe(repo_root, n), names)))


def _tail(s, n=40): return '\n'.join(s.splitlines()[-n:])


def test_module_imports_cleanly(module_name, import_reports, repo_root, nbtools):
    # a module that appeared after the fixture ran is probed on its own
    rep, out = import_reports.get(module_name) or _probe(repo_root, module_name)
    _require(rep is not None, (f'`import {module_name}` failed in a fresh interpreter. A magic/`!cmd` in an '
                               f'#| export cell, or an export cell that depends on notebook-only state?\n{_tail(out)}'))
    print(f'{module_name}: imported in {rep["seconds"]:.2f} s (loaded: {", ".join(rep["heavy"]) or "nothing heavy"})')
    lib = nbtools.lib_dir(repo_root).resolve()
    _require(rep['file'] and lib in Path(rep['file']).resolve().parents, (
        f'`import {module_name}` picked up {rep["file"]}, not the module in {lib} '
        '(stale install shadowing the checkout?)'))
    _require(not rep['cuda_initialized'], (
        f'`import {module_name}` initialised CUDA (torch.cuda.is_initialized() is True). Exported cells must only '
        f'define things: no .cuda()/.to("cuda")/torch.cuda.* calls at module level (STYLE rule 8).'))
    _require(rep['seconds'] < IMPORT_LIMIT_S, (
        f'`import {module_name}` took {rep["seconds"]:.1f} s (limit {IMPORT_LIMIT_S:.0f} s): something heavy runs '
        f'at import (model/data loading?). Move it out of the #| export cells.'))


def test_version_matches_settings(repo_root, settings):
    lib = settings.get('lib_name', 'fisao')
    p = subprocess.run([sys.executable, '-c',
                        f'import json, {lib} as m; '
                        'print(json.dumps([getattr(m, "__version__", None), getattr(m, "__file__", None)]))'],
                       cwd=repo_root, env=_env(repo_root), capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    _require(p.returncode == 0, f'`import {lib}` failed:\n{_tail(p.stdout + p.stderr)}')
    version, file = json.loads(p.stdout.strip().splitlines()[-1])
    _require(file is not None, f'{lib}/__init__.py is missing ({lib} imports as a namespace package): run nbdev_export')
    _require(version == settings['version'], (
        f'{lib}.__version__ is {version!r} but settings.ini says {settings["version"]!r}: run nbdev_export '
        f'(put_version_in_init = {settings.get("put_version_in_init", "True")}) and commit {lib}/__init__.py'))
