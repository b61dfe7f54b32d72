"""The benchmark scripts run (scaled down, on CPU): a script that cannot start is found here, not on a rented GPU."""
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / 'benchmarks'


def test_gpu_llava7b_script_tiny_on_cpu(tmp_path):
    r = subprocess.run([sys.executable, BENCH / 'gpu_llava7b_lora.py', '--tiny', '--batch', '2', '--new-tokens', '4',
                        '--out', tmp_path / 'r.json'], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert '"parity_ok": true' in r.stdout


def test_foundation_bench_runs():
    r = subprocess.run([sys.executable, BENCH / 'bench_foundation.py', '--n', '100'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'images/s' in r.stdout and 'captions' in r.stdout
