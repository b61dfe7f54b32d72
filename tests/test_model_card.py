"""Model cards: every checkpoint's `adapter/README.md` of a `fisao train` run, and the card `fisao merge` keeps in the
merged model. The front matter is read as the Hugging Face Hub reads it (YAML between the first two `---` lines),
independently of `fisao.rundir.split_model_card`. The 2-step run of conftest's `train_run` (checkpoints at steps 1
and 2)."""
import json
from pathlib import Path

import yaml


def read_card(path) -> tuple:
    "`(front matter, body)` of a model card file."
    text = Path(path).read_text(encoding='utf-8')
    lines = text.split('\n')
    assert lines[0] == '---', lines[:3]
    end = lines.index('---', 1)
    return yaml.safe_load('\n'.join(lines[1:end])), '\n'.join(lines[end + 1:])


def _pct(row, k) -> str: return f"{100 * row[f'eval/{k}']:.1f}"


def test_every_checkpoint_card_names_reading_calibration_and_chair(train_run, quick_pretrained):
    from fisao.rundir import read_metrics
    cfg = yaml.safe_load((train_run / 'config.yaml').read_text())
    cal = json.loads((train_run / 'calibration.json').read_text())
    evals = [r for r in read_metrics(train_run / 'metrics.jsonl') if r.get('eval/chair_i') is not None]
    assert [r['step'] for r in evals] == [0, 2]
    for step in (1, 2):
        meta, body = read_card(train_run / 'checkpoints' / f'step-{step:06d}' / 'adapter' / 'README.md')
        assert meta['base_model'] == str(quick_pretrained / 'llava') and meta['library_name'] == 'peft'
        assert {'fisao', 'vlm', 'hallucination', 'ppo', 'lora'} <= set(meta['tags'])
        assert 'license' not in meta  # not known for the quick models: left out
        assert f"| reading | `{cfg['reward']['reading']}`:" in body
        assert f"| ξ (`reward.xi`) | {cfg['reward']['xi']} |" in body
        assert f"| λ (`reward.lam`) | {cfg['reward']['lam']} |" in body
        assert f"| b_c (mean score, correct mentions) | {cal['b_c']:.4f} |" in body
        assert f"| b_h (mean score, hallucinated mentions) | {cal['b_h']:.4f} |" in body
        assert f"| AUROC (correct vs hallucinated) | {cal['auroc']:.3f} |" in body
        assert f"{cal['n_correct']} correct, {cal['n_hallucinated']} hallucinated" in body
        assert f"| steps | {step} of 2 |" in body and f"| LoRA r / alpha / dropout | {cfg['lora']['r']} / " in body
        b = evals[0]
        assert (f"| before (step 0) | {_pct(b, 'chair_s')} | {_pct(b, 'chair_i')} | {_pct(b, 'recall')} | "
                f"{b['eval/len']:.1f} |") in body
        assert 'More Information Needed' not in body  # peft's empty template is replaced
    _, body1 = read_card(train_run / 'checkpoints' / 'step-000001' / 'adapter' / 'README.md')
    assert 'After training: not evaluated.' in body1  # step 1 comes before the final evaluation
    a = evals[1]
    assert (f"| after (step 2) | {_pct(a, 'chair_s')} | {_pct(a, 'chair_i')} | {_pct(a, 'recall')} | "
            f"{a['eval/len']:.1f} |") in body


def test_merge_keeps_the_card(train_run, quick_pretrained, tmp_path):
    from fisao.cli import main
    assert main(['merge', '--run', str(train_run), '--out', str(tmp_path / 'merged')]) == 0
    adapter = train_run / 'checkpoints' / 'step-000002' / 'adapter'
    a_meta, a_body = read_card(adapter / 'README.md')
    meta, body = read_card(tmp_path / 'merged' / 'README.md')
    assert meta['library_name'] == 'transformers' and meta['base_model'] == str(quick_pretrained / 'llava')
    assert 'fisao' in meta['tags'] and not any(t.startswith('base_model:adapter:') for t in meta['tags'])
    assert f"Merged from adapter `{adapter}` into `{quick_pretrained / 'llava'}`" in body
    kept = [line for line in a_body.splitlines() if line.startswith('| ')]  # every table row of the adapter's card
    assert kept and all(line in body.splitlines() for line in kept)
