"""Thumbnails in `report.html`: each token-reward heatmap carries its image, each "captions before / after" row shows
its image, and a missing image file is a counted note in the report, never a crash (issue 18, item 7).

The run directory comes from one short `fisao train` run on the quick tiny models (the session fixture
`quick_pretrained`, as tests/test_report.py does). The expected pixels are read straight from the world's files
(`world/annotations/instances_<split>.json` and `world/images/<split>/`), not through the resolver under test."""
import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

QUICK = ['--model.quick', '--rollout.batch', '16', '--ppo.minibatch-size', '8', '--ppo.epochs', '2',
         '--eval.images', '40', '--rollout.max-new-tokens', '24', '--no-log.progress', '--steps', '4',
         '--eval.every', '2', '--log.samples-every', '2', '--no-log.tensorboard']


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory, quick_pretrained):
    out = tmp_path_factory.mktemp('thumbs') / 'run'
    env = dict(os.environ, OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    r = subprocess.run([sys.executable, '-m', 'fisao.cli', 'train', '--model.pretrained', str(quick_pretrained),
                        '--out', str(out), *QUICK], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def world_files(world) -> dict:
    "`{image id: image file}` of every split of the world, from its COCO instances files."
    out = {}
    for inst in sorted((world / 'annotations').glob('instances_*.json')):
        split = inst.stem.removeprefix('instances_')
        for im in json.loads(inst.read_text())['images']: out[im['id']] = world / 'images' / split / im['file_name']
    return out


def section(page:str, anchor:str) -> str:
    "The HTML of the report section `anchor`, up to the next section."
    return page.split(f'<h2 id="{anchor}">', 1)[1].split('<h2 ', 1)[0]


def decode(tag:str) -> np.ndarray:
    "RGB pixels of an `<img>` tag's base64 PNG."
    b64 = re.search(r'src="data:image/png;base64,([^"]+)"', tag).group(1)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert('RGB'))


def dark_block(px:np.ndarray) -> tuple:
    """`(top, bottom, left, right)` of the figure's black-background block (a ShapeWorld image: black with coloured
    shapes): the columns, then rows, whose dark-pixel count is at least half the largest."""
    dark = px.max(axis=2) < 30
    cols = np.flatnonzero(dark.sum(0) >= dark.sum(0).max() / 2)
    rows = np.flatnonzero(dark[:, cols[0]:cols[-1] + 1].sum(1) >= (cols[-1] - cols[0] + 1) / 2)
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def inset_error(px:np.ndarray, image:Image.Image) -> float:
    "Mean absolute difference (0–255) between the figure's dark block and `image` resized onto it."
    t, b, l, r = dark_block(px)
    want = np.asarray(image.convert('RGB').resize((r - l, b - t), Image.BILINEAR), dtype=float)
    return float(np.abs(px[t:b, l:r].astype(float) - want).mean())


def test_heatmaps_and_captions_show_their_images(run_dir, quick_pretrained, tmp_path):
    from fisao.viz import report
    run = shutil.copytree(run_dir, tmp_path / 'run', ignore=shutil.ignore_patterns('checkpoints'))
    files = world_files(quick_pretrained / 'world')
    page = report(run).read_text(encoding='utf-8')
    assert 'could not be drawn' not in page and 'image not found' not in page

    # token rewards: one heatmap per picked sample, each carrying the thumbnail of its own image
    tokens = section(page, 'token-rewards')
    heat = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="[^"]*image (\d+)[^"]*">', tokens)
    tags = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="[^"]*">', tokens)
    assert len(heat) == len(tags) >= 2, (len(heat), len(tags))
    ids = [int(i) for i in heat]
    for tag, i in zip(tags, ids):
        px = decode(tag)
        own = inset_error(px, Image.open(files[i]))
        other = min(inset_error(px, Image.open(files[j])) for j in sorted(files)[:40] if j != i)
        assert own < 12 and own < other / 2, (i, own, other)   # its own image, not any image

    # captions before / after: one thumbnail per row, the exact pixels of the val image of that row
    caps = section(page, 'captions-before-after')
    rows = re.findall(r'<tr>.*?</tr>', caps)[1:]
    assert len(rows) >= 4
    for row in rows:
        thumbs = re.findall(r'<img class="thumb"[^>]*>', row)
        assert len(thumbs) == 1, row[:300]
        i = int(re.search(r'alt="image (\d+)"', thumbs[0]).group(1))
        assert f'<td>{i}</td>' in row    # the row's own image id
        want = np.asarray(Image.open(files[i]).convert('RGB'))   # 64 px: embedded as is, shown at 96 px
        np.testing.assert_array_equal(decode(thumbs[0]), want)
    assert {files[int(i)].parent.name for i in re.findall(r'alt="image (\d+)"', caps)} == {'dev'}   # held-out split


def test_missing_image_is_a_counted_note(run_dir, quick_pretrained, tmp_path):
    "A world with one eval image and one rollout image deleted: the report renders and names each missing file."
    from fisao.viz import SECTIONS, report
    run = shutil.copytree(run_dir, tmp_path / 'run', ignore=shutil.ignore_patterns('checkpoints'))
    world = shutil.copytree(quick_pretrained / 'world', tmp_path / 'pre' / 'world')
    cfg = yaml.safe_load((run / 'config.yaml').read_text())
    cfg['model']['pretrained'] = str(tmp_path / 'pre')
    (run / 'config.yaml').write_text(yaml.safe_dump(cfg))
    files = world_files(world)
    first = report(run, out=tmp_path / 'first.html').read_text(encoding='utf-8')
    heat_id = int(re.search(r'alt="[^"]*image (\d+)', section(first, 'token-rewards')).group(1))
    cap_id = int(re.search(r'alt="image (\d+)"', section(first, 'captions-before-after')).group(1))
    files[heat_id].unlink(); files[cap_id].unlink()
    page = report(run).read_text(encoding='utf-8')
    for s in SECTIONS: assert f'>{s}</h2>' in page, s
    assert 'could not be drawn' not in page
    assert f'image not found: {files[heat_id]}' in section(page, 'token-rewards')
    assert f'image not found: {files[cap_id]}' in section(page, 'captions-before-after')
    caps = section(page, 'captions-before-after')
    assert caps.count('<img class="thumb"') == caps.count('<tr>') - 2   # every row but the header and the missing one
    assert re.search(r'1 image(s)? not found', section(page, 'captions-before-after'))


def test_coco_images_from_the_run_config(golden_coco, tmp_path, monkeypatch):
    """A real-model run: rollout images from `data.image_dir` (file names from `data.instances`), held-out ones from
    `eval.image_dir`; a relative path is read from where the run was launched (the `out` it recorded)."""
    from fisao.data import Skips
    from fisao.viz import run_image_path, sample_image
    (tmp_path / 'coco' / 'val2014').mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in (42, 73):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            tmp_path / 'coco' / 'val2014' / f'COCO_val2014_{i:012d}.jpg', quality=95)
    run = tmp_path / 'runs' / 'real'
    run.mkdir(parents=True)
    (run / 'config.yaml').write_text(yaml.safe_dump({
        'out': 'runs/real', 'model': {'path': 'models/llava', 'pretrained': 'runs/pretrain'},
        'data': {'prompts': 'instruct.json', 'image_dir': 'coco/val2014', 'instances': str(golden_coco.instances)},
        'eval': {'instances': str(golden_coco.instances), 'image_dir': str(tmp_path / 'coco' / 'val2014')}}))
    monkeypatch.chdir(tmp_path / 'runs')   # not the launch directory: relative paths resolve from the run's `out`
    want = tmp_path / 'coco' / 'val2014' / 'COCO_val2014_000000000042.jpg'
    assert run_image_path(run, 42) == want
    np.testing.assert_array_equal(np.asarray(sample_image(run, 42)), np.asarray(Image.open(want).convert('RGB')))
    skips = Skips('images')
    assert sample_image(run, 101, skips) is None            # in the instances file, no file on disk
    assert sample_image(run, 999, skips) is None            # in no instances file: no source
    assert skips.total == 2 and 'COCO_val2014_000000000101.jpg' in json.dumps(skips.summary())
