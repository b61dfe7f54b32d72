"""Faults a long run meets, on ShapeWorld's quick models: a kill in the middle of a checkpoint write, SIGTERM/SIGINT
(preemption, Ctrl-C), a full disk, and resuming after each. The run's final adapter after the fault and the resume is
compared bit for bit with an uninterrupted run of the same seed (the non-finite guard's fault is in test_trainer.py)."""
import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_trainer import _adapter, _env, _train_cmd

STEPS = ['--steps', '6', '--log.save-every', '2', '--eval.every', '0', '--log.samples-every', '0',
         '--log.report-to', 'none']


@pytest.fixture(scope='module')
def reference(quick_pretrained, tmp_path_factory):
    "An uninterrupted 6-step run: the adapter every faulted-and-resumed run must reproduce."
    out = tmp_path_factory.mktemp('faults') / 'reference'
    r = subprocess.run(_train_cmd(quick_pretrained, out, *STEPS), capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    return _adapter(out)


def assert_same_adapter(run, reference):
    name, lora, vh = _adapter(run)
    assert name == reference[0] == 'step-000006'
    assert lora.keys() == reference[1].keys() and lora
    for k in lora: assert (lora[k] == reference[1][k]).all(), f'{k} differs from the uninterrupted run'
    for k in vh: assert (vh[k] == reference[2][k]).all(), f'value head {k} differs from the uninterrupted run'


def resume(pretrained, run):
    r = subprocess.run(_train_cmd(pretrained, run, *STEPS, '--resume'), capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_sigkill_during_checkpoint_write_keeps_the_previous_one(quick_pretrained, reference, tmp_path):
    run = tmp_path / 'run'
    worker = Path(__file__).with_name('fault_worker.py')
    cmd = [sys.executable, str(worker), 'kill-in-write', '4', '--', *_train_cmd(quick_pretrained, run, *STEPS)[4:]]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
    ck = run / 'checkpoints'
    assert (ck / '.step-000004.tmp' / 'optimizer.pt').is_file()  # the half-written checkpoint is there …
    from fisao.rundir import check_checkpoint, list_checkpoints
    assert [c.name for c in list_checkpoints(run)] == ['step-000002']  # … but never taken for a checkpoint
    check_checkpoint(ck / 'step-000002', 1)  # the previous one is whole
    r = resume(quick_pretrained, run)
    assert 'resumed from' in r.stdout and 'step-000002' in r.stdout
    assert not (ck / '.step-000004.tmp').exists()  # cleaned up when step 4 was written again
    assert_same_adapter(run, reference)


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_finishes_the_step_and_checkpoints(quick_pretrained, reference, tmp_path, sig):
    run = tmp_path / 'run'
    p = subprocess.Popen(_train_cmd(quick_pretrained, run, *STEPS), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=_env())
    metrics, deadline = run / 'metrics.jsonl', time.time() + 300
    while time.time() < deadline and p.poll() is None:  # wait for step 1 to be logged, then ask the run to stop
        if metrics.exists() and any(json.loads(l)['step'] >= 1
                                    for l in metrics.read_text().splitlines() if l.strip()):
            break
        time.sleep(0.05)
    assert p.poll() is None, 'the run ended before the signal: ' + p.stderr.read()[-2000:]
    p.send_signal(sig)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 128 + sig, (p.returncode, err[-2000:])
    name = signal.Signals(sig).name
    assert f'{name} received' in err and f'stopped by {name} after step' in err and '--resume' in err
    stopped_at = int(err.split('after step ')[1].split('/')[0])
    assert 1 <= stopped_at < 6
    from fisao.rundir import check_checkpoint, list_checkpoints
    assert list_checkpoints(run)[-1].name == f'step-{stopped_at:06d}'  # a checkpoint of the step it finished
    check_checkpoint(list_checkpoints(run)[-1], 1)
    resume(quick_pretrained, run)
    assert_same_adapter(run, reference)


def test_disk_full_during_checkpoint_loses_nothing(quick_pretrained, reference, tmp_path, monkeypatch):
    import torch

    from fisao.core import FisaoError
    from fisao.rundir import check_checkpoint, list_checkpoints
    from fisao.trainconfig import load_config
    from fisao.trainer import FiSAOTrainer
    torch.set_num_threads(1)
    run = tmp_path / 'run'
    cfg = load_config(None, _train_cmd(quick_pretrained, run, *STEPS)[4:])
    real_save = torch.save
    def full_disk(obj, f, *a, **k):
        if str(f).endswith('optimizer.pt') and '.step-000004.tmp' in str(f):
            raise OSError(errno.ENOSPC, 'No space left on device', str(f))
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, 'save', full_disk)
    with pytest.raises(FisaoError, match=r'could not write checkpoint step 4 .*No space left on device'
                                         r'.*last checkpoint: .*step-000002') as e:
        FiSAOTrainer(cfg).train()
    assert '--resume' in str(e.value)
    assert ([c.name for c in list_checkpoints(run)] == ['step-000002']
            and not (run / 'checkpoints' / '.step-000004.tmp').exists())
    check_checkpoint(run / 'checkpoints' / 'step-000002', 1)
    rows = [json.loads(l)['step'] for l in (run / 'metrics.jsonl').read_text().splitlines()]
    assert rows == [0, 1, 2, 3, 4]  # the lines already written are all there
    monkeypatch.setattr(torch, 'save', real_save)  # space freed
    resume(quick_pretrained, run)
    assert_same_adapter(run, reference)


def test_cut_off_metrics_line_is_dropped_on_resume(tmp_path, caplog):
    from fisao.rundir import MetricsLog, read_metrics
    (tmp_path / 'metrics.jsonl').write_text('{"step": 0, "a": 1}\n{"step": 1, "a": 2}\n{"step": 2, "a"')
    assert [r['step'] for r in read_metrics(tmp_path / 'metrics.jsonl')] == [0, 1]
    assert 'line 3: not valid JSON' in caplog.text
    MetricsLog(tmp_path, ['none'], active=True).truncate(1)
    assert [r['step'] for r in read_metrics(tmp_path / 'metrics.jsonl')] == [0, 1]
