"""The docs pages render: `tools/docs_preview.py` (the Quarto-free preview of the `nbdev_docs` site) turns the front
page, a Markdown page and a module notebook with figures into HTML, with hidden cells and `#|` directives gone and
links between pages pointing at their HTML."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pages_render(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'docs_preview.py'), '--out', str(tmp_path),
                        'index.ipynb', 'guide.md', '08_rewards.ipynb'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    front, guide, rewards = (tmp_path / f'{n}.html' for n in ('index', 'guide', '08_rewards'))
    front_html = front.read_text(encoding='utf-8')
    assert 'Two commands' in front_html and 'href="guide.html"' in front_html and 'images/signature.png' in front_html
    assert (tmp_path / 'images' / 'signature.png').is_file()
    assert '<h1' in guide.read_text(encoding='utf-8') and 'User guide' in guide.read_text(encoding='utf-8')
    page = rewards.read_text(encoding='utf-8')
    assert 'data:image/png;base64' in page  # the notebook's saved figures
    assert '#| export' not in page and '#| hide' not in page and 'default_exp' not in page
    for name in ('index', 'method', '04_chair', '90_tutorial'):  # the sidebar lists every page
        assert f'href="{name}.html"' in page
