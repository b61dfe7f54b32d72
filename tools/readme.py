"""README.md from nbs/index.ipynb, the front page of the docs site.

`nbdev_readme` renders the README with Quarto, which cannot be installed on a machine without access to GitHub (its PyPI
package downloads the binary at install time). This converter needs nothing but the standard library and reads the
notebook the way the docs site shows it: markdown cells verbatim (the `> description` cell as a quote, links to sibling
pages and images rewritten to their paths from the repository root), code cells fenced, their text outputs fenced,
cells marked `#| hide` left out. `python tools/readme.py` writes README.md; `--check` exits 1 when README.md differs
(tests/test_readme.py runs it)."""
import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
HEADER = '<!-- Generated from nbs/index.ipynb by `python tools/readme.py`: edit the notebook, not this file. -->\n\n'


def _link(m: re.Match) -> str:
    "A relative link of a page in nbs/ as seen from the repository root (`guide.md` → `nbs/guide.md`)."
    text, target = m.group(1), m.group(2)
    if re.match(r'[a-z]+://|#|/', target): return m.group(0)
    return f'{text}(nbs/{target})'


def _cell_md(cell: dict) -> str:
    "The markdown of one notebook cell, or '' for a hidden cell."
    src = ''.join(cell['source'])
    if cell['cell_type'] == 'markdown': return re.sub(r'(!?\[[^\]]*\])\(([^)\s]+)\)', _link, src)
    if cell['cell_type'] != 'code' or re.search(r'^#\|\s*hide\s*$', src, re.M): return ''
    code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|'))
    outs = [''.join(o.get('text', '') or o.get('data', {}).get('text/plain', '')) for o in cell.get('outputs', [])]
    out = ''.join(outs).rstrip()
    return f'```python\n{code}\n```' + (f'\n\n```\n{out}\n```' if out else '')


def render(nb_path: Path = NBS / 'index.ipynb') -> str:
    "The README text of the notebook `nb_path`."
    cells = json.loads(nb_path.read_text(encoding='utf-8'))['cells']
    parts = [p for p in (_cell_md(c).strip() for c in cells) if p]
    return HEADER + '\n\n'.join(parts) + '\n'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--check', action='store_true', help='exit 1 if README.md is not what the notebook renders to')
    args = p.parse_args(argv)
    text, readme = render(), ROOT / 'README.md'
    if args.check:
        if readme.read_text(encoding='utf-8') != text:
            print('README.md differs from nbs/index.ipynb: run python tools/readme.py', file=sys.stderr)
            return 1
        return 0
    readme.write_text(text, encoding='utf-8')
    print(f'README.md: {len(text.splitlines())} lines')
    return 0


if __name__ == '__main__':
    sys.exit(main())
