"""Offline and safe loading.

Offline: the suite blocks every non-loopback socket (tests/netblock), so each CLI test already shows its command works
without a network; here, the block itself is checked, the CLI is shown to set `HF_HUB_OFFLINE` on its own (the user may
override it), and train → eval → merge run from an environment with no Hub variables at all.

Safe loading, read from the package's source (so a later change that loads a pickle or runs config text fails here):
no `eval`/`exec`, no `pickle`, `torch.load` only with `weights_only=True`, YAML only through `safe_load`, no shell, and
`trust_remote_code` never switched on in code. Config paths are data: a path that looks like shell is never run."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_trainer import QUICK

PKG = Path(__file__).resolve().parents[1] / 'fisao'


def _env_without_hub_vars(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE')}
    return {**env, 'OMP_NUM_THREADS': '1', **extra}


def _run(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, '-m', 'fisao.cli', *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd)


# ---- offline ---------------------------------------------------------------------------------------------------------
def test_the_network_block_holds_in_subprocesses():
    code = ("import socket\n"
            "try:\n    socket.create_connection(('93.184.216.34', 443), timeout=2); print('CONNECTED')\n"
            "except OSError as e: print('BLOCKED', e)\n"
            "try:\n    socket.getaddrinfo('huggingface.co', 443); print('RESOLVED')\n"
            "except OSError as e: print('BLOCKED', e)\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True).stdout
    assert out.count('BLOCKED') == 2 and 'blocked by the fisao test suite' in out, out


@pytest.mark.parametrize('user_value,expected', [(None, '1'), ('0', '0')])
def test_cli_sets_hub_offline_unless_the_user_did(user_value, expected):
    env = _env_without_hub_vars(**({'HF_HUB_OFFLINE': user_value} if user_value else {}))
    r = _run('info', env=env)
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.startswith('HF_HUB_OFFLINE'))
    assert line.split()[-1] == expected, line


def test_train_eval_merge_offline_without_hub_variables(quick_pretrained, tmp_path):
    env = _env_without_hub_vars()
    run = tmp_path / 'run'
    r = _run('train', '--model.pretrained', quick_pretrained, '--out', run, *QUICK, '--steps', '1',
             '--eval.images', '20', '--log.report-to', 'none', env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _run('eval', 'chair', '--run', run, '--max-new-tokens', '16', '--n-images', '20',
             '--out', tmp_path / 'chair.json', '--quiet', env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / 'chair.json').read_text())['n_captions'] == 20
    r = _run('merge', '--run', run, '--out', tmp_path / 'merged', env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / 'merged' / 'config.json').is_file() and any((tmp_path / 'merged').glob('*.safetensors'))
    assert not any((tmp_path / 'merged').glob('*.bin'))  # merged weights are safetensors, never pickles


def test_config_paths_are_data_not_shell(tmp_path):
    (tmp_path / 'c.yaml').write_text('model:\n  path: "$(touch PWNED_1)"\n  clip: "`touch PWNED_2`"\n'
                                     'data:\n  prompts: "x; touch PWNED_3"\n')
    r = _run('info', '--config', tmp_path / 'c.yaml', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert '$(touch PWNED_1)' in r.stdout and 'MISSING' in r.stdout
    assert not list(tmp_path.glob('PWNED*'))


# ---- safe loading, read from the source ------------------------------------------------------------------------------
def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ''
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ''
            yield node, owner, name


def _sources():
    files = sorted(p for p in PKG.glob('*.py') if p.name != '_modidx.py')
    assert len(files) > 10, files
    return [(p, ast.parse(p.read_text(encoding='utf-8'))) for p in files]


def test_no_eval_exec_pickle_or_shell_in_the_package():
    bad = []
    for path, tree in _sources():
        for node, owner, name in _calls(tree):
            where = f'{path.name}:{node.lineno}'
            if isinstance(node.func, ast.Name) and name in ('eval', 'exec', 'compile', '__import__'):
                bad.append(f'{where} {name}()')
            if owner in ('pickle', 'dill', 'marshal', 'shelve') and name in ('load', 'loads', 'open'):
                bad.append(f'{where} {owner}.{name}()')
            if owner == 'os' and name in ('system', 'popen'): bad.append(f'{where} os.{name}()')
            if owner == 'yaml' and name in ('load', 'unsafe_load', 'full_load', 'load_all'):
                bad.append(f'{where} yaml.{name}() (use safe_load)')
            for kw in node.keywords:
                if kw.arg == 'shell' and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    bad.append(f'{where} shell=')
                if kw.arg == 'trust_remote_code' and isinstance(kw.value, ast.Constant) and kw.value.value is True:
                    bad.append(f'{where} trust_remote_code=True')
    assert not bad, bad


def test_every_torch_load_is_weights_only():
    seen = []
    for path, tree in _sources():
        for node, owner, name in _calls(tree):
            if owner == 'torch' and name == 'load':
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get('weights_only'), ast.Constant) and kw['weights_only'].value is True
                seen.append((f'{path.name}:{node.lineno}', ok))
    assert seen, 'no torch.load found: the check would pass vacuously'
    assert all(ok for _, ok in seen), [w for w, ok in seen if not ok]


def test_model_loads_ask_for_safetensors():
    """Every `*.from_pretrained` of weights (not configs/processors/tokenizers) passes use_safetensors=True, directly or
    via **common."""
    missing = []
    for path, tree in _sources():
        for node, owner, name in _calls(tree):
            if name != 'from_pretrained' or not (owner.endswith('ForConditionalGeneration')
                                                 or owner in ('CLIPModel', 'AutoModel')):
                continue
            kws = {k.arg for k in node.keywords}
            if 'use_safetensors' not in kws and None not in kws: missing.append(f'{path.name}:{node.lineno} {owner}')
    assert not missing, missing
