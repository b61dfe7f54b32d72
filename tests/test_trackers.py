"""`log.report_to`: a training run's trackers (TensorBoard, wandb offline), trl's metric names, a resume that
duplicates no step, the old `log.tensorboard` key, and named errors for an unknown or missing tracker.

wandb runs with WANDB_MODE=offline (and the network blocked, as in every test): nothing leaves the machine. Its
offline run file (`run-ID.wandb`, a LevelDB-style log of protobuf records) is read back with wandb's own protobuf
classes. One 2-step run on the quick models serves the module (~15 s)."""
import logging
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

TRAIN = ['--model.quick', '--steps', '2', '--rollout.batch', '8', '--ppo.minibatch-size', '4', '--ppo.epochs', '1',
         '--eval.images', '8', '--eval.every', '0', '--rollout.max-new-tokens', '16', '--log.save-every', '1',
         '--quiet']


def _env(tmp: Path) -> dict:
    "wandb offline and silent, its config/cache/data folders under `tmp` (the user's home is not touched)."
    return dict(os.environ, OMP_NUM_THREADS='1', WANDB_MODE='offline', WANDB_SILENT='true',
                WANDB_CONFIG_DIR=str(tmp / 'wandb_config'), WANDB_CACHE_DIR=str(tmp / 'wandb_cache'),
                WANDB_DATA_DIR=str(tmp / 'wandb_data'))


def _train(pretrained, out, *extra):
    cmd = [sys.executable, '-m', 'fisao', 'train', '--model.pretrained', str(pretrained), '--out', str(out), *TRAIN,
           '--log.report-to', 'tensorboard,wandb', *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(Path(out).parent))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope='module')
def run(quick_pretrained, tmp_path_factory):
    "A 2-step run with `report_to: [tensorboard, wandb]` (checkpoints at steps 1 and 2)."
    return _train(quick_pretrained, tmp_path_factory.mktemp('trackers') / 'run')


def wandb_records(path) -> list:
    "The protobuf records of a wandb offline run file: 32 KiB blocks of (crc32, length, type) chunks after a header."
    from wandb.proto import wandb_internal_pb2 as pb
    data, out, pos, buf = Path(path).read_bytes(), [], 7, b''
    assert data[:4] == b':W&B', data[:7]
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        _, n, kind = struct.unpack('<IHB', data[pos:pos + 7])
        if n == 0 and kind == 0: break
        buf, pos = buf + data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 4):  # FULL or LAST: a record is complete
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b''
    return out


def wandb_history(path) -> list:
    "The logged rows of a wandb offline run file: `[{key: float}]` (wandb's own `_step`, `_runtime`, … included)."
    import json
    return [{i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in wandb_records(path) if r.WhichOneof('record_type') == 'history']


def _offline_runs(out) -> list:
    return sorted((Path(out) / 'wandb').glob('offline-run-*/run-*.wandb'))


def _tb_scalars(out, tag) -> list:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    logging.getLogger('tensorboard').setLevel(logging.ERROR)
    ea = EventAccumulator(str(Path(out) / 'tb'))
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)], ea.Tags()['scalars']


def test_tensorboard_and_wandb_offline_get_trl_names(run):
    from fisao.rundir import TRACKER_NAMES, read_metrics
    rows = read_metrics(run / 'metrics.jsonl')
    assert [r['step'] for r in rows] == [0, 1, 2]
    keys = {k for r in rows for k in r}
    assert set(TRACKER_NAMES) <= keys, set(TRACKER_NAMES) - keys  # the table names metrics the trainer logs
    # TensorBoard: trl's names, not ours
    kl, tags = _tb_scalars(run, 'objective/kl')
    assert [s for s, _ in kl] == [1, 2] and abs(kl[-1][1] - rows[-1]['objective/kl']) < 1e-6
    assert {'objective/rlhf_reward', 'policy/clipfrac_avg', 'loss/policy_avg', 'lr', 'eval/chair_i'} <= set(tags)
    assert not {'objective/rewards', 'policy/clipfrac', 'charts/lr'} & set(tags), tags
    # wandb, offline: one run, its id kept in the run directory, the same numbers under trl's names
    (f,) = _offline_runs(run)
    run_id = (run / 'wandb' / 'run_id').read_text().strip()
    assert f.name == f'run-{run_id}.wandb'
    hist = wandb_history(f)
    assert [h['_step'] for h in hist] == [0, 1, 2]
    last = hist[-1]
    for ours, theirs in TRACKER_NAMES.items():
        assert abs(last[theirs] - rows[-1][ours]) < 1e-6, (ours, theirs)
    assert not {'objective/rewards', 'policy/approx_kl', 'charts/lr'} & set(last), sorted(last)
    assert last['eval/chair_i'] == rows[-1]['eval/chair_i'] and last['rollout/len'] == rows[-1]['rollout/len']
    (meta,) = [r.run for r in wandb_records(f) if r.WhichOneof('record_type') == 'run']
    config = {i.key: i.value_json for i in meta.config.update}
    assert (meta.project, meta.display_name, config['steps']) == ('fisao', 'run', '2')  # the TrainConfig as its config


def test_resume_continues_both_trackers_without_duplicate_steps(run, quick_pretrained, tmp_path):
    "The run is cut back to its step-1 checkpoint (as if killed during step 2) and resumed."
    from fisao.rundir import read_metrics
    cut = tmp_path / 'cut'
    shutil.copytree(run, cut)
    shutil.rmtree(cut / 'checkpoints' / 'step-000002')
    _train(quick_pretrained, cut, '--resume')
    assert [r['step'] for r in read_metrics(cut / 'metrics.jsonl')] == [0, 1, 2]
    kl, _ = _tb_scalars(cut, 'objective/kl')
    assert [s for s, _ in kl] == [1, 2], kl  # the interrupted run's step 2 was purged, not shown twice
    first, second = _offline_runs(cut)  # the copied run's file, then the resumed one's: the same wandb run id
    run_id = (run / 'wandb' / 'run_id').read_text().strip()
    assert first.name == second.name == f'run-{run_id}.wandb'
    assert [h['_step'] for h in wandb_history(second)] == [2]  # the resumed run logs after its checkpoint only


def test_unknown_tracker_is_a_one_line_error(capsys, tmp_path):
    from fisao.cli import main
    assert main(['train', '--log.report-to', 'tensorboard,mlflow', '--out', str(tmp_path / 'r')]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('fisao: error:'), err
    assert "log.report_to: unknown tracker 'mlflow'; choose from tensorboard, wandb, trackio, none" in err


def test_missing_tracker_library_is_named_before_any_model_loads(monkeypatch, capsys, tmp_path):
    from fisao.cli import main
    monkeypatch.setitem(sys.modules, 'wandb', None)  # as if wandb were not installed
    out = tmp_path / 'r'
    assert main(['train', '--log.report-to', 'wandb', '--out', str(out), '--model.pretrained',
                 str(tmp_path / 'no_models')]) == 2
    err = capsys.readouterr().err
    assert 'log.report_to names wandb, which is not installed here: pip install wandb' in err, err
    assert not (tmp_path / 'no_models').exists()  # it stopped before building or loading a model


@pytest.mark.parametrize('old', [['--no-log.tensorboard'], ['--tensorboard', 'false'], 'yaml'])
def test_old_tensorboard_key_warns_and_still_means_no_tensorboard(old, caplog, tmp_path):
    from fisao.rundir import MetricsLog
    from fisao.trainconfig import load_config
    if old == 'yaml':
        (tmp_path / 'c.yaml').write_text('log:\n  tensorboard: false\n')
    cfg = load_config(tmp_path / 'c.yaml', []) if old == 'yaml' else load_config(None, old)
    assert cfg.log.report_to == ['none']
    assert "is replaced by 'log.report_to'" in caplog.text, caplog.text
    log = MetricsLog(tmp_path, cfg.log.report_to)
    log.log(0, {'objective/kl': 0.1})
    log.close()
    assert (tmp_path / 'metrics.jsonl').is_file() and not (tmp_path / 'tb').exists()


def test_old_tensorboard_true_and_the_default_write_tensorboard(caplog, tmp_path):
    from fisao.rundir import MetricsLog
    from fisao.trainconfig import config_from_flat
    for i, values in enumerate(({'log.tensorboard': True}, {})):
        cfg = config_from_flat(values)
        assert cfg.log.report_to == ['tensorboard']
        (tmp_path / str(i)).mkdir()
        log = MetricsLog(tmp_path / str(i), cfg.log.report_to)
        log.log(1, {'objective/kl': 0.1})
        log.close()
        assert list((tmp_path / str(i) / 'tb').glob('events.out.tfevents.*'))
    assert caplog.text.count("'log.tensorboard' is replaced by 'log.report_to'") == 1  # the default warns not
