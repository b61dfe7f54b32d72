"""`fisao world` and `fisao eval chair` from the shell: the DESIGN.md contract, determinism, one-line user errors;
and the one CLI dialect (kebab-case flags, `--x/--no-x` booleans) and a `--help` that imports no torch."""
import argparse
import json
import re
import subprocess
import sys

import pytest
from cli_helper import fisao

SMALL = ['--n-train', '200', '--n-calib', '20', '--n-val', '60', '--n-val-prior', '20', '--quiet']


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp('world')
    fisao('world', '--out', out, *SMALL)
    return out


def test_world_layout_matches_contract(world):
    for split in ('train', 'calib', 'val'):
        assert (world / 'annotations' / f'instances_{split}.json').is_file()
        assert (world / 'annotations' / f'captions_{split}.json').is_file()
        assert any((world / 'images' / split).glob('*.png'))
    assert (world / 'vocab.txt').read_text().splitlines()[0].startswith('circle')


def test_world_is_byte_identical_for_same_seed_and_differs_for_another(world, tmp_path):
    fisao('world', '--out', tmp_path / 'again', *SMALL)
    fisao('world', '--out', tmp_path / 'other', *SMALL, '--seed', '1')
    files = sorted(p.relative_to(world) for p in world.rglob('*') if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / 'again') for p in (tmp_path / 'again').rglob('*') if p.is_file())
    for f in files:
        assert (world / f).read_bytes() == (tmp_path / 'again' / f).read_bytes(), f
    val = 'annotations/instances_val.json'
    assert (world / val).read_bytes() != (tmp_path / 'other' / val).read_bytes()


def test_pycocotools_loads_world(world):
    import contextlib
    import io

    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        inst = COCO(str(world / 'annotations/instances_val.json'))
        caps = COCO(str(world / 'annotations/captions_val.json'))
    assert len(inst.getImgIds()) == 60 and len(caps.getAnnIds()) >= 2 * 60
    assert len(inst.getCatIds()) >= 8
    ann = inst.loadAnns(inst.getAnnIds())[0]
    assert int(inst.annToMask(ann).sum()) == int(ann['area'])
    img = inst.loadImgs(ann['image_id'])[0]
    from PIL import Image
    assert Image.open(world / 'images/val' / img['file_name']).size == (64, 64)
    # ≥ 2 reference captions per image, worded differently
    per = {}
    for a in caps.dataset['annotations']:
        per.setdefault(a['image_id'], []).append(a['caption'])
    assert all(len(v) >= 2 and len(set(v)) == len(v) for v in per.values())


def _captions_as_generations(world, split, path):
    anns = json.loads((world / f'annotations/captions_{split}.json').read_text())['annotations']
    path.write_text('\n'.join(json.dumps({'image_id': a['image_id'], 'caption': a['caption']}) for a in anns) + '\n')
    return anns


def test_chair_on_clean_references_is_zero_with_full_recall(world, tmp_path):
    _captions_as_generations(world, 'val', tmp_path / 'gen.jsonl')
    fisao('eval', 'chair', '--generations', tmp_path / 'gen.jsonl', '--instances',
          world / 'annotations/instances_val.json', '--vocab', world / 'vocab.txt', '--out', tmp_path / 'chair.json')
    res = json.loads((tmp_path / 'chair.json').read_text())
    for key in ('chair_s', 'chair_i', 'recall', 'len', 'n_images', 'n_mentions', 'singularizer'):
        assert key in res
    assert (res['chair_i'], res['chair_s'], res['recall']) == (0.0, 0.0, 1.0)
    assert res['n_images'] == 60 and res['n_mentions'] > 60


def test_chair_flags_exactly_the_injected_noise(world, tmp_path):
    anns = _captions_as_generations(world, 'train', tmp_path / 'gen.jsonl')
    assert sum(bool(a['noise']) for a in anns) > 20  # the default caption_noise injects some
    fisao('eval', 'chair', '--generations', tmp_path / 'gen.jsonl', '--instances',
          world / 'annotations/instances_train.json', '--vocab', world / 'vocab.txt', '--out', tmp_path / 'chair.json')
    per = [json.loads(l) for l in (tmp_path / 'chair.per_caption.jsonl').read_text().splitlines()]
    assert [p['hallucinated'] for p in per] == [sorted(a['noise']) for a in anns]
    res = json.loads((tmp_path / 'chair.json').read_text())
    assert res['recall'] == 1.0
    assert res['chair_s'] == pytest.approx(sum(bool(a['noise']) for a in anns) / len(anns))


def test_noisy_training_captions_never_enter_ground_truth(world, tmp_path):
    "Passing the noisy training captions as --captions must not turn injected objects into ground truth."
    anns = _captions_as_generations(world, 'train', tmp_path / 'gen.jsonl')
    fisao('eval', 'chair', '--generations', tmp_path / 'gen.jsonl', '--instances',
          world / 'annotations/instances_train.json', '--captions', world / 'annotations/captions_train.json',
          '--vocab', world / 'vocab.txt', '--out', tmp_path / 'c.json')
    per = [json.loads(l) for l in (tmp_path / 'c.per_caption.jsonl').read_text().splitlines()]
    assert [p['hallucinated'] for p in per] == [sorted(a['noise']) for a in anns]


def test_golden_coco_case_through_cli(golden_coco, tmp_path):
    (tmp_path / 'gen.jsonl').write_text('\n'.join(json.dumps(g) for g in golden_coco.generations))
    r = fisao('eval', 'chair', '--generations', tmp_path / 'gen.jsonl', '--instances', golden_coco.instances,
              '--captions', golden_coco.captions, '--out', tmp_path / 'out.json')
    res = json.loads((tmp_path / 'out.json').read_text())
    assert (res['chair_s'], res['chair_i'], res['recall']) == pytest.approx((2 / 3, 3 / 8, 5 / 6))
    assert res['rules'] == 'coco' and res['ground_truth'] == 'instances+captions'
    assert 'CHAIR_i  37.50' in r.stdout


def test_help_everywhere():
    for args in ([], ['world'], ['eval'], ['eval', 'chair'], ['pretrain'], ['demo'], ['info'], ['train']):
        r = fisao(*args, '--help')
        assert 'usage: fisao' in r.stdout
    assert '--ppo.clip-eps' in r.stdout and '--print-config' in r.stdout  # train: its own flags and the config's


KEBAB = re.compile(r'^(-[a-z]|--[a-z0-9]+(-[a-z0-9]+)*)$')


def _parsers(parser, path=()):
    "`(command path, parser)` for `parser` and every subparser below it."
    yield path, parser
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items(): yield from _parsers(sp, path + (name,))


def test_one_dialect_kebab_flags_and_one_boolean_form():
    "Every command and flag is kebab-case (snake_case only as a hidden alias of a kebab flag); booleans are --x/--no-x."
    from fisao.cli import build_parser
    seen = 0
    for path, p in _parsers(build_parser()):
        where = 'fisao ' + ' '.join(path)
        assert all(re.fullmatch(r'[a-z0-9]+(-[a-z0-9]+)*', w) for w in path), where
        p.format_help()  # every help text formats (a stray '%' would raise here)
        strings = {s for a in p._actions for s in a.option_strings}
        for a in p._actions:
            for s in a.option_strings:
                if KEBAB.match(s): continue
                assert '_' in s and s.replace('_', '-') in strings, \
                    f'{where}: {s} is neither kebab-case nor the alias of a kebab flag'
                assert a.help == argparse.SUPPRESS, f'{where}: the alias {s} shows in the help'
            bare = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction)
            assert not isinstance(a, bare), \
                f'{where}: {a.option_strings} is a bare store_true/false; use --x/--no-x (BooleanOptionalAction)'
            if isinstance(a, argparse.BooleanOptionalAction):
                assert any(s.startswith('--no-') for s in a.option_strings), (where, a.option_strings)
            seen += 1
    assert seen > 200  # the walk reached every command


def test_snake_case_alias_is_the_same_flag():
    from fisao.cli import build_parser
    p = build_parser(['eval', 'pope'])
    a = p.parse_args(['eval', 'pope', '--max_new_tokens', '4', '--pope_splits', 'random', '--no-quiet',
                      '--allow_missing'])
    b = p.parse_args(['eval', 'pope', '--max-new-tokens', '4', '--pope-splits', 'random', '--allow-missing'])
    assert vars(a) == vars(b) and a.pope_splits == ['random'] and a.allow_missing is True and a.quiet is False


def test_parser_literals_match_the_library():
    "The constants the light parsers keep as literals (so `fisao --help` imports no torch) are the library's."
    from fisao import cli
    from fisao import eval as ev
    from fisao.scorers import BENCHMARKS
    for name in ('POPE_SPLITS', 'POPE_PARSERS', 'CAPTION_BLEU'):
        assert getattr(cli, name) == tuple(getattr(ev, name)), name
    for name in ('DESCRIBE_PROMPT', 'CAPTION_PROMPT', 'SHORT_ANSWER'):
        assert getattr(cli, name) == getattr(ev, name), name
    assert cli.BENCHMARK_LENGTHS == {k: b.max_new_tokens for k, b in BENCHMARKS.items()}
    assert list(cli.COMMANDS) == list(cli.PARSERS)


LIGHT = [[], ['eval'], ['eval', 'chair'], ['eval', 'captions'], ['eval', 'pope'], ['eval', 'gqa'], ['pope'],
         ['pope', 'build'], ['calibrate'], ['merge'], ['report'], ['info']]


def test_help_of_light_commands_imports_no_torch():
    "`fisao --help` and the help of the light commands never import torch/transformers (the cause of a slow --help)."
    code = ('import contextlib, io, json, sys\nfrom fisao.cli import main\nres = []\n'
            f'for args in {LIGHT!r}:\n'
            '    with contextlib.redirect_stdout(io.StringIO()) as out:\n'
            '        try: main([*args, "--help"])\n'
            '        except SystemExit: pass\n'
            '    heavy = [m for m in ("torch", "transformers") if m in sys.modules]\n'
            '    res.append([args, "usage: fisao" in out.getvalue(), heavy])\n'
            'print(json.dumps(res))')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for args, usage, heavy in json.loads(r.stdout.splitlines()[-1]):
        assert usage and not heavy, f"fisao {' '.join(args)} --help: usage shown {usage}, imported {heavy}"


def test_python_dash_m_fisao():
    from fisao import __version__
    r = subprocess.run([sys.executable, '-m', 'fisao', '--version'], capture_output=True, text=True)
    assert (r.returncode, r.stdout.strip()) == (0, f'fisao {__version__}'), r.stderr


def test_user_error_is_one_line_and_debug_shows_traceback(tmp_path):
    args = ['eval', 'chair', '--generations', tmp_path / 'missing.jsonl', '--instances', tmp_path / 'x.json']
    r = fisao(*args, check=False)
    assert r.returncode == 2
    assert r.stderr.strip().count('\n') == 0 and 'missing.jsonl' in r.stderr and 'Traceback' not in r.stderr
    r = fisao('--debug', *args, check=False)
    assert r.returncode != 0 and 'Traceback' in r.stderr
