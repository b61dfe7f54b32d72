"""`fisao train` end to end on ShapeWorld's quick tiny models: the run directory contract, exact resume after SIGKILL,
the non-finite guard, and a 2-process run.

The quick models are built once per session under a temporary directory (shared by the tests of this module). The
method's effect is not measured here (quick models, a few steps): see nbs/10_trainer.ipynb and benchmarks/RESULTS.md."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helper import fisao

QUICK = ['--model.quick', '--rollout.batch', '16', '--ppo.minibatch-size', '8', '--ppo.epochs', '2',
         '--eval.images', '40', '--rollout.max-new-tokens', '24', '--no-log.progress']


@pytest.fixture(scope='module')
def pretrained(quick_pretrained):
    return quick_pretrained


def _env():
    return dict(os.environ, OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')


def _train_cmd(pretrained, out, *extra):
    return [sys.executable, '-m', 'fisao.cli', 'train', '--model.pretrained', str(pretrained), '--out', str(out),
            *QUICK, *extra]


def _adapter(run):
    from safetensors.torch import load_file
    ck = sorted((Path(run) / 'checkpoints').glob('step-*'))[-1]
    return (ck.name, load_file(str(ck / 'adapter' / 'adapter_model.safetensors')),
            load_file(str(ck / 'adapter' / 'value_head.safetensors')))


def test_train_run_directory(pretrained, tmp_path):
    out = tmp_path / 'run'
    r = subprocess.run(_train_cmd(pretrained, out, '--steps', '3', '--eval.every', '2', '--log.samples-every', '1',
                                  '--log.save-every', '2'),
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ('config.yaml', 'calibration.json', 'metrics.jsonl', 'samples.jsonl', 'summary.json'):
        assert (out / name).is_file(), name
    assert list((out / 'tb').iterdir()), 'no TensorBoard events'
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['step'] for r in rows] == [0, 1, 2, 3]
    for k in ('objective/scores', 'objective/kl', 'objective/kl_k3', 'policy/approx_kl', 'policy/clipfrac',
              'loss/policy', 'loss/value', 'val/explained_variance', 'rollout/len', 'rollout/chair_i',
              'rollout/dup_per_caption', 'time/generate', 'time/reward', 'time/score', 'time/update',
              'charts/tokens_per_s'):
        assert k in rows[1], k
    assert ('eval/chair_i' in rows[0] and 'eval/chair_i' in rows[2] and 'eval/chair_i' in rows[3]
            and 'eval/chair_i' not in rows[1])
    cks = sorted(p.name for p in (out / 'checkpoints').iterdir())
    assert cks == ['step-000002', 'step-000003'], cks
    ck = out / 'checkpoints' / 'step-000003'
    for name in ('adapter/adapter_config.json', 'adapter/adapter_model.safetensors', 'adapter/value_head.safetensors',
                 'optimizer.pt', 'scheduler.pt', 'rng_state_0.pt', 'trainer_state.json'):
        assert (ck / name).is_file(), name
    sample = json.loads((out / 'samples.jsonl').read_text().splitlines()[0])
    assert len(sample['tokens']) == len(sample['token_rewards']) and 'mentions' in sample
    # the adapter is a plain peft adapter
    from peft import PeftModel

    from fisao.models import load_vlm
    base, _, _ = load_vlm(pretrained / 'llava')
    PeftModel.from_pretrained(base, str(ck / 'adapter'))
    assert 'CHAIR_i' in r.stdout and 'before' in r.stdout


def test_resume_after_sigkill_is_bit_identical(pretrained, tmp_path):
    steps = ['--steps', '6', '--log.save-every', '2', '--eval.every', '0', '--log.samples-every', '0',
             '--log.report-to', 'none']
    ref = tmp_path / 'ref'
    r = subprocess.run(_train_cmd(pretrained, ref, *steps), capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr
    run = tmp_path / 'killed'
    p = subprocess.Popen(_train_cmd(pretrained, run, *steps), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=_env())
    deadline = time.time() + 300
    while (time.time() < deadline and not (run / 'checkpoints' / 'step-000002' / 'trainer_state.json').exists()
           and p.poll() is None):
        time.sleep(0.05)
    assert p.poll() is None, 'the run ended before it could be killed: ' + p.stderr.read().decode()[-2000:]
    p.send_signal(signal.SIGKILL); p.wait()
    killed_at = sorted(x.name for x in (run / 'checkpoints').glob('step-*'))
    assert killed_at and killed_at[-1] != 'step-000006', killed_at
    r = subprocess.run(_train_cmd(pretrained, run, *steps, '--resume'), capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr
    assert 'resumed from' in r.stdout
    name_a, lora_a, vh_a = _adapter(ref)
    name_b, lora_b, vh_b = _adapter(run)
    assert name_a == name_b == 'step-000006'
    assert lora_a.keys() == lora_b.keys() and lora_a
    for k in lora_a: assert (lora_a[k] == lora_b[k]).all(), f'{k} differs after resume'
    for k in vh_a: assert (vh_a[k] == vh_b[k]).all(), f'value head {k} differs after resume'
    rows = [json.loads(l)['step'] for l in (run / 'metrics.jsonl').read_text().splitlines()]
    assert rows == sorted(set(rows)) and rows[-1] == 6, rows  # no duplicated steps after the resume


def test_value_head_has_its_own_learning_rate(pretrained, tmp_path):
    import torch

    from fisao.trainconfig import load_config
    from fisao.trainer import FiSAOTrainer
    torch.set_num_threads(1)
    base = ['--model.pretrained', str(pretrained), *QUICK, '--steps', '2', '--log.report-to', 'none',
            '--optim.lr', '2e-4']
    for i, (value_lr, want) in enumerate((('0', 2e-4), ('5e-3', 5e-3))):  # 0 = the policy's lr
        tr = FiSAOTrainer(load_config(None, [*base, '--out', str(tmp_path / f'v{i}'), '--optim.value-lr', value_lr]))
        actor, critic = tr.opt.param_groups
        assert actor['lr'] == 2e-4 and critic['lr'] == want, (actor['lr'], critic['lr'])
        assert {id(p) for p in critic['params']} == {id(p) for p in tr.unwrapped.value_head.parameters()}
        assert all('lora_' in n for n, p in tr.unwrapped.named_parameters() if any(p is q for q in actor['params']))


def test_resume_refuses_a_checkpoint_from_before_the_value_lr_group(pretrained, tmp_path):
    import torch

    from fisao.core import ConfigError
    from fisao.rundir import list_checkpoints
    from fisao.trainconfig import load_config
    from fisao.trainer import FiSAOTrainer
    torch.set_num_threads(1)
    cfg = load_config(None, ['--model.pretrained', str(pretrained), '--out', str(tmp_path / 'old'), *QUICK,
                             '--steps', '1', '--log.save-every', '1', '--eval.every', '0', '--log.samples-every', '0',
                             '--log.report-to', 'none'])
    FiSAOTrainer(cfg).train()
    opt_file = list_checkpoints(tmp_path / 'old')[-1] / 'optimizer.pt'
    state = torch.load(opt_file, weights_only=True)
    actor, critic = state['param_groups']  # as an older fisao wrote it: one group for the LoRA and the value head
    state['param_groups'] = [{**actor, 'params': actor['params'] + critic['params']}]
    torch.save(state, opt_file)
    with pytest.raises(ConfigError, match=r'optimizer\.pt has 1 parameter group\(s\).*predates the value head'):
        FiSAOTrainer(cfg, resume=True).train()


def test_nonfinite_rewards_stop_the_run_with_the_last_good_checkpoint(pretrained, tmp_path):
    import torch

    from fisao.core import FisaoError
    from fisao.rundir import list_checkpoints
    from fisao.trainconfig import load_config
    from fisao.trainer import FiSAOTrainer
    torch.set_num_threads(1)
    cfg = load_config(None, ['--model.pretrained', str(pretrained), '--out', str(tmp_path / 'nan'), *QUICK,
                             '--steps', '6', '--log.save-every', '1', '--eval.every', '0', '--log.samples-every', '0',
                             '--max-nonfinite', '2', '--log.report-to', 'none'])
    tr = FiSAOTrainer(cfg)
    real = tr.rewarder
    def poisoned(*a, **k):
        out = real(*a, **k)
        if tr_step['n'] >= 1: out.scores[:] = float('nan')
        tr_step['n'] += 1
        return out
    tr_step = {'n': 0}
    tr.rewarder = poisoned
    with pytest.raises(FisaoError, match='2 consecutive steps with non-finite') as e:
        tr.train()
    assert 'step-000002' in str(e.value)
    cks = list_checkpoints(tmp_path / 'nan')
    # step 2 was skipped (no update) but checkpointed with finite weights
    assert [c.name for c in cks][-1] == 'step-000002'
    from safetensors.torch import load_file
    for ck in cks:
        assert all(torch.isfinite(v).all()
                   for v in load_file(str(ck / 'adapter' / 'adapter_model.safetensors')).values())
    # the cause removed (here: the poisoned reward), the run resumes from the last good checkpoint and finishes
    summary = FiSAOTrainer(cfg, resume=True).train()
    assert summary['steps'] == 6 and list_checkpoints(tmp_path / 'nan')[-1].name == 'step-000006'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_process_training_run(pretrained, tmp_path):
    out = tmp_path / 'dist'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nnodes', '1', '--nproc_per_node', '2',
           '--master_addr', '127.0.0.1', '--master_port', str(_free_port()),
           '-m', 'fisao.cli', 'train', '--model.pretrained', str(pretrained), '--out', str(out), *QUICK,
           '--device', 'cpu', '--steps', '2', '--eval.every', '0', '--log.samples-every', '2', '--log.save-every', '2',
           '--log.n-samples', '2']
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert [p.name for p in (out / 'checkpoints').iterdir()] == ['step-000002']
    ck = out / 'checkpoints' / 'step-000002'
    assert (ck / 'rng_state_0.pt').is_file() and (ck / 'rng_state_1.pt').is_file()
    assert json.loads((ck / 'trainer_state.json').read_text())['world_size'] == 2
    samples = [json.loads(l) for l in (out / 'samples.jsonl').read_text().splitlines()]
    assert {s['rank'] for s in samples} == {0, 1}  # gathered from both processes
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['step'] for r in rows] == [0, 1, 2]  # one writer
    assert r.stdout.count('held-out CHAIR') == 1


def test_train_config_errors_are_one_line(tmp_path):
    (tmp_path / 'c.yaml').write_text('stpes: 3\n')
    r = fisao('train', '--config', tmp_path / 'c.yaml', check=False)
    assert (r.returncode == 2 and "unknown field 'stpes'" in r.stderr and 'c.yaml' in r.stderr
            and 'Traceback' not in r.stderr)
    r = fisao('train', '--config', tmp_path / 'missing.yaml', check=False)
    assert r.returncode == 2 and 'missing.yaml' in r.stderr
    r = fisao('train', '--rollout.batch', '48', '--ppo.minibatch-size', '32', check=False)
    assert r.returncode == 2 and 'must divide rollout.batch' in r.stderr
    r = fisao('train', '--model.path', tmp_path / 'no_model', '--model.clip', tmp_path,
              '--verifier.calibration', tmp_path / 'cal.json', '--out', tmp_path / 'o', check=False)
    assert r.returncode == 2 and 'no_model' in r.stderr
    r = fisao('train', '--help')
    assert '--reward.source' in r.stdout and 'oracle' in r.stdout


def _real_run(model, pretrained, prompts, cal, out, *extra):
    """`fisao train` the way a real run is launched (model/clip dirs, a LLaVA-Instruct file, COCO files), on
    ShapeWorld's files, 2 steps."""
    world = pretrained / 'world'
    return subprocess.run([sys.executable, '-m', 'fisao.cli', 'train', '--model.path', str(model),
                           '--model.clip', str(pretrained / 'clip'), '--data.prompts', str(prompts),
                           '--data.image-dir', str(world / 'images' / 'train'), '--verifier.calibration', str(cal),
                           '--data.vocab', str(world / 'vocab.txt'),
                           '--data.instances', str(world / 'annotations' / 'instances_train.json'),
                           '--eval.instances', str(world / 'annotations' / 'instances_val.json'),
                           '--eval.image-dir', str(world / 'images' / 'val'),
                           '--out', str(out), '--steps', '2', '--rollout.batch', '8', '--ppo.minibatch-size', '4',
                           '--ppo.epochs', '1', '--no-log.progress', '--log.report-to', 'none', *extra],
                          capture_output=True, text=True, env=_env())


def test_real_run_path_with_local_paths(pretrained, tmp_path):
    """The path a LLaVA-1.5 run takes (model/clip directories, a LLaVA-Instruct prompt file, a calibration file from
    `fisao calibrate --model …`, COCO instances for held-out CHAIR), exercised with the tiny models and ShapeWorld
    files."""
    world = pretrained / 'world'
    ann = json.loads((world / 'annotations' / 'instances_train.json').read_text())
    records = [{'id': f'r{i}', 'image': im['file_name'],
                'conversations': [{'from': 'human', 'value': '<image>\nDescribe the image.'},
                                  {'from': 'gpt', 'value': 'unused'}]}
               for i, im in enumerate(ann['images'][:40])]
    records.append({'id': 'broken', 'image': 'missing.png', 'conversations': [{'from': 'human', 'value': 'Describe.'}]})
    (tmp_path / 'instruct.json').write_text(json.dumps(records))
    cal = tmp_path / 'calibration.json'
    fisao('calibrate', '--model', pretrained / 'llava', '--clip', pretrained / 'clip',
          '--instances', world / 'annotations' / 'instances_calib.json', '--images', world / 'images' / 'calib',
          '--vocab', world / 'vocab.txt', '--n-images', '60', '--out', cal, '--quiet')
    assert len(json.loads(cal.read_text())['calibration_image_ids']) == 60
    out = tmp_path / 'run'
    r = _real_run(pretrained / 'llava', pretrained, tmp_path / 'instruct.json', cal, out,
                  '--data.n-prompts', '100', '--eval.images', '20', '--rollout.max-new-tokens', '16')
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [x['step'] for x in rows] == [0, 1, 2] and 'eval/chair_i' in rows[-1] and 'rollout/chair_i' in rows[1]
    assert 'missing image file' in r.stderr  # the broken record was skipped and counted
    # the evaluation images (eval.instances: ShapeWorld's val split) are kept out of the prompts, and the run says so
    rep = json.loads((out / 'prompts.json').read_text())
    assert rep['held_out_files'] == [str(world / 'annotations' / 'instances_val.json')]
    val = json.loads((world / 'annotations' / 'instances_val.json').read_text())
    assert rep['held_out_images'] == len(val['images'])
    assert (rep['prompts'], rep['held_out_excluded']) == (40, 0) and 'prompts: 40 from' in r.stdout
    assert json.loads((out / 'calibration.json').read_text())['b_c'] == json.loads(cal.read_text())['b_c']


def test_instructblip_calibrate_and_train(pretrained, tmp_path):
    """InstructBLIP end to end on CPU: a tiny random InstructBLIP over ShapeWorld's vocabulary, calibrated with a
    separate CLIP (the verifier's documented InstructBLIP route), then 2 PPO steps — rollouts carry the Q-Former
    inputs. Random weights: this checks the plumbing (shapes, verifier route, checkpoint), not learning."""
    import torch
    from transformers import AutoTokenizer, InstructBlipForConditionalGeneration

    from fisao.models import build_instructblip_processor, tiny_instructblip_config
    world = pretrained / 'world'
    tok = AutoTokenizer.from_pretrained(pretrained / 'llava')  # the world's word-level tokenizer
    torch.manual_seed(0)
    model_dir = tmp_path / 'tiny-instructblip'
    InstructBlipForConditionalGeneration(tiny_instructblip_config(len(tok), len(tok))).save_pretrained(model_dir)
    build_instructblip_processor(tok, tok, image_size=32, num_query_tokens=4).save_pretrained(model_dir)
    cal = tmp_path / 'calibration.json'
    fisao('calibrate', '--model', model_dir, '--clip', pretrained / 'clip',
          '--instances', world / 'annotations' / 'instances_calib.json', '--images', world / 'images' / 'calib',
          '--vocab', world / 'vocab.txt', '--n-images', '40', '--out', cal, '--quiet')
    c = json.loads(cal.read_text())
    assert c['vision_source'] == 'clip' and c['vision_weights_match'] is False
    # a random policy's calibration need not separate; training needs one that does,
    # so give it the quick LLaVA's numbers
    c.update(b_c=0.3, b_h=0.0, separable=True)
    cal.write_text(json.dumps(c))
    ann = json.loads((world / 'annotations' / 'instances_train.json').read_text())
    records = [{'id': f'r{i}', 'image': im['file_name'],
                'conversations': [{'from': 'human', 'value': '<image>\nDescribe the image.'}]}
               for i, im in enumerate(ann['images'][:16])]
    (tmp_path / 'instruct.json').write_text(json.dumps(records))
    out = tmp_path / 'run'
    r = _real_run(model_dir, pretrained, tmp_path / 'instruct.json', cal, out,
                  '--eval.images', '8', '--rollout.max-new-tokens', '12')
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [x['step'] for x in rows] == [0, 1, 2] and all(abs(x.get('loss/policy', 0.0)) < 1e6 for x in rows)
    assert (out / 'checkpoints' / 'step-000002' / 'adapter' / 'adapter_config.json').exists()
