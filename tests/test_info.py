"""`fisao info --config YAML`: the paths a training config points to and whether each exists (in process)."""
from pathlib import Path

from fisao.cli import main


def test_info_config_paths(tmp_path, capsys):
    (tmp_path / 'llava').mkdir()
    (tmp_path / 'instruct.json').write_text('[]')
    (tmp_path / 'cal.json').write_text('{}')
    cfg = tmp_path / 'run.yaml'
    cfg.write_text(f"model:\n  path: {tmp_path / 'llava'}\n  clip: {tmp_path / 'no_clip'}\n"
                   f"data:\n  prompts: {tmp_path / 'instruct.json'}\n  image_dir: {tmp_path / 'no_images'}\n"
                   f"verifier:\n  calibration: {tmp_path / 'cal.json'}\nout: {tmp_path / 'run'}\n")
    assert main(['info', '--config', str(cfg)]) == 0
    out = capsys.readouterr().out
    status = {l.split()[0]: l.split(None, 2)[2] for l in out.splitlines() if l.startswith('  ')}
    assert status == {'model.path': 'exists', 'model.clip': 'MISSING', 'model.pretrained': 'unused (model.path is set)',
                      'data.prompts': 'exists', 'data.image_dir': 'MISSING', 'data.instances': 'not set',
                      'data.vocab': 'not set', 'verifier.calibration': 'exists', 'eval.instances': 'not set',
                      'eval.image_dir': 'not set', 'out': 'absent (the run creates it)'}, out
    assert any(l.split()[:2] == ['model.clip', str(tmp_path / 'no_clip')] for l in out.splitlines())
    assert 'missing: model.clip, data.image_dir' in out
    assert 'torch' in out  # the versions are still printed


def test_info_config_of_a_preset_and_errors(capsys):
    root = Path(__file__).resolve().parent.parent
    assert main(['info', '--config', str(root / 'fisao' / 'assets' / 'configs' / 'instructblip_13b.yaml')]) == 0
    out = capsys.readouterr().out
    assert 'models/instructblip-vicuna-13b' in out and 'models/clip-vit-large-patch14 ' in out
    assert main(['info', '--config', str(root / 'fisao' / 'assets' / 'configs' / 'nope.yaml')]) == 2
    assert 'nope.yaml' in capsys.readouterr().err
