"""Run the `fisao` CLI in a subprocess (what a user types), shared by the CLI-level tests."""
import subprocess
import sys


def fisao(*args, check=True, cwd=None):
    "Run `python -m fisao ARGS` (the `fisao` command); with `check`, a non-zero exit fails the test with its output."
    r = subprocess.run([sys.executable, '-m', 'fisao', *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if check and r.returncode != 0:
        raise AssertionError(f"fisao {' '.join(map(str, args))} exited {r.returncode}\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r
