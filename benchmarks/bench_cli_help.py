"""Start-up time of the CLI's help: `fisao --help` and `python -m fisao --help`, beside Python's own start-up.

    python benchmarks/bench_cli_help.py [--runs 5] [--extra]

Each command runs `--runs` times as a fresh subprocess (interleaved, so load on the machine hits all alike); prints the
median wall time of each and its ratio to `python -c pass` measured in the same run. `--extra` also times the help of
a light command (`fisao eval chair --help`) and of two that import torch to build their flags (`fisao world --help`,
`fisao train --help`). The goal for the top-level help is < 1.5 s on the 2-core developer machine; no test asserts a
time."""
import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def fisao_script() -> list:
    "The `fisao` console script of this interpreter's environment (or the one on PATH)."
    exe = Path(sys.executable).with_name('fisao')
    if exe.exists(): return [str(exe)]
    found = shutil.which('fisao')
    if found: return [found]
    raise SystemExit('no `fisao` console script found: pip install -e . first')


def wall(cmd:list) -> float:
    "Seconds for one run of `cmd` (output discarded; a non-zero exit is an error)."
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0: raise SystemExit(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr[-2000:]}")
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=5, help='runs of each command (default: 5; the median is reported)')
    ap.add_argument('--extra', action=argparse.BooleanOptionalAction, default=False,
                    help='also time a light and two heavy command helps')
    args = ap.parse_args()
    cmds = {'python -c pass': [sys.executable, '-c', 'pass'],
            'fisao --help': [*fisao_script(), '--help'],
            'python -m fisao --help': [sys.executable, '-m', 'fisao', '--help']}
    if args.extra:
        cmds.update({'fisao eval chair --help': [*fisao_script(), 'eval', 'chair', '--help'],
                     'fisao world --help': [*fisao_script(), 'world', '--help'],
                     'fisao train --help': [*fisao_script(), 'train', '--help']})
    for cmd in cmds.values(): wall(cmd)  # warm the file cache once
    times = {name: [] for name in cmds}
    for _ in range(args.runs):
        for name, cmd in cmds.items(): times[name].append(wall(cmd))
    base = statistics.median(times['python -c pass'])
    print(f"median of {args.runs} runs each, interleaved (Python {sys.version.split()[0]})")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<26} {med * 1000:8.1f} ms   {med / base:6.1f}x python -c pass   "
              f"(min {min(ts) * 1000:.1f}, max {max(ts) * 1000:.1f} ms)")


if __name__ == '__main__':
    main()
