"""JupyterLab comes with the documented install (`.[lab]`, part of `.[dev]`) and serves the notebooks: started headless
on a loopback port, it lists nbs/, returns the tutorial notebook through its contents API and serves the Lab page."""
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _get(url: str, token: str) -> bytes:
    req = urllib.request.Request(url, headers={'Authorization': f'token {token}'})
    with urllib.request.urlopen(req, timeout=10) as r: return r.read()


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    jupyter = shutil.which('jupyter', path=str(Path(sys.executable).parent))
    assert jupyter, 'jupyter is not installed: pip install -c constraints.txt -e ".[lab]"'
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(tmp_path_factory.mktemp('jupyter_config')),
           'JUPYTER_RUNTIME_DIR': str(tmp_path_factory.mktemp('jupyter_runtime'))}
    proc = subprocess.Popen([jupyter, 'lab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
                             f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={ROOT / "nbs"}',
                             '--ServerApp.port_retries=0', '--allow-root', '--LabApp.news_url=',
                             '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate'],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    base = f'http://127.0.0.1:{port}'
    try:
        for _ in range(240):
            if proc.poll() is not None: pytest.fail(f'jupyter lab exited: {proc.stdout.read()[-3000:]}')
            try:
                _get(f'{base}/api/status', token); break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail('jupyter lab did not answer within 120 s')
        yield base, token
    finally:
        proc.terminate()
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired: proc.kill()


def test_lab_serves_the_tutorial(lab):
    base, token = lab
    listing = json.loads(_get(f'{base}/api/contents/', token))
    assert '90_tutorial.ipynb' in {c['name'] for c in listing['content']}
    nb = json.loads(_get(f'{base}/api/contents/90_tutorial.ipynb?content=1', token))
    assert nb['type'] == 'notebook' and nb['content']['cells'], nb.get('message')
    assert b'JupyterLab' in _get(f'{base}/lab/tree/90_tutorial.ipynb', token)
    kernels = json.loads(_get(f'{base}/api/kernelspecs', token))
    assert kernels['kernelspecs'], 'no Python kernel: ipykernel is part of the lab extra'
