"""`ppo_update` on 2 processes (DDP over gloo, CPU) gives the same weights as 1 process over the whole batch.

The worker (`tests/ppo_dist_worker.py`) builds a tiny random LLaVA + LoRA policy and a fixed 8-row rollout, runs the
1-process references, then the same updates with each of 2 processes holding 4 rows (its strided shard) and the policy
wrapped by `accelerator.prepare` (DDP). What must agree (to 1e-5): every trainable parameter (LoRA + value head) after
3 PPO epochs, and the logged stats. This holds only if the advantage whitening and the value clip range (relative to
the returns' RMS) use global moments, each loss is normalised by the global minibatch's token count and multiplied by
the number of processes (DDP averages gradients), and the processes' minibatches are shards of the same global
minibatch.

Launcher: `torch.distributed.run` (torchrun). `accelerate launch --cpu --num_processes 2` starts a single process in
accelerate 1.15 (its multi-CPU path needs mpirun); `Accelerator(cpu=True)` under torchrun is the gloo multi-CPU setup.
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name('ppo_dist_worker.py')
TOL = 1e-5
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(cmd, root):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root)] + [p for p in [os.environ.get('PYTHONPATH')] if p]),
               OMP_NUM_THREADS='1', PYTHONDONTWRITEBYTECODE='1', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {r.returncode}\nstdout:\n{r.stdout[-4000:]}"
                    f"\nstderr:\n{r.stderr[-6000:]}", pytrace=False)


def test_ppo_update_two_processes_equals_one(tmp_path, repo_root):
    import torch
    _run([sys.executable, str(WORKER), 'single', str(tmp_path)], repo_root)
    _run([sys.executable, '-m', 'torch.distributed.run', '--nnodes', '1', '--nproc_per_node', '2',
          '--master_addr', '127.0.0.1', '--master_port', str(_free_port()), str(WORKER), 'dist', str(tmp_path)],
         repo_root)
    start = torch.load(tmp_path / 'start_policy.pt', weights_only=True)
    for setting in ('plain', 'shuffled'):
        single = torch.load(tmp_path / f'single_{setting}.pt', weights_only=True)
        dist = torch.load(tmp_path / f'dist_{setting}.pt', weights_only=True)
        assert single['params'].keys() == dist['params'].keys() and single['params']
        assert all('lora_' in k or k.startswith('value_head.') for k in single['params'])
        moved = max((single['params'][k] - start[k]).abs().max().item() for k in single['params'])
        assert moved > 1e-2, (f"{setting}: the update barely moved the weights ({moved:.2e}); "
                              "the comparison would be vacuous")
        diff = {k: (single['params'][k] - dist['params'][k]).abs().max().item() for k in single['params']}
        worst = max(diff, key=diff.get)
        assert diff[worst] <= TOL, (f"{setting}: 2-process weights differ from 1-process ones "
                                    f"by {diff[worst]:.3e} at {worst}")
        for k, v in single['stats'].items():
            if k == 'time/update': continue
            assert abs(v - dist['stats'][k]) <= TOL * max(1.0, abs(v)), (
                f"{setting}: stat {k}: 1 process {v}, 2 processes {dist['stats'][k]}")
