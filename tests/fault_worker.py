"""`fisao train` with a fault injected, for tests/test_faults.py:
`python fault_worker.py kill-in-write STEP -- TRAIN ARGS…`.

kill-in-write: while checkpoint STEP is being written (half of its optimizer.pt on disk), the process SIGKILLs
itself — what a node failure or the OOM killer does mid-write."""
import os
import signal
import sys

import torch

from fisao.cli import main

mode, step = sys.argv[1], int(sys.argv[2])
args = sys.argv[sys.argv.index('--') + 1:]
assert mode == 'kill-in-write', mode
real_save = torch.save


def save(obj, f, *a, **k):
    name = str(f)
    if name.endswith('optimizer.pt') and f'.step-{step:06d}.tmp' in name:
        real_save(obj, f, *a, **k)
        with open(f, 'r+b') as fh: fh.truncate(os.path.getsize(f) // 2)  # a half-written file
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *a, **k)


torch.save = save
sys.exit(main(['train', *args]))
