"""A local preview of the docs site, for machines without Quarto.

`nbdev_docs` builds the real site (Quarto renders the notebooks, nbdev adds each exported function's signature and
docstring). Quarto's installer downloads its binary from GitHub, so where that is out of reach this script shows the
same pages from what is committed: each notebook's prose, code and saved figures (cells marked `#| hide` left out,
`#|` directive lines stripped, the `> description` line under the title), and the Markdown pages (guide, method,
evaluation protocols) with their math, one HTML file per page under `_preview/` with a sidebar.
`python tools/docs_preview.py [--out _preview] [PAGE ...]`, then open `_preview/index.html`."""
import argparse
import html
import re
import sys
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
PAGES = ['index.ipynb', 'guide.md', 'method.md', 'eval_protocols.md', '90_tutorial.ipynb']


def pages() -> list:
    "The site's pages in sidebar order: the front page, the prose pages, the tutorial, then every module notebook."
    rest = sorted(p.name for p in NBS.glob('[0-9]*.ipynb') if p.name not in PAGES)
    return PAGES + rest


def _front_matter(text: str) -> tuple:
    "`(title, body)` of a Markdown page with a `---` front matter block (title: …)."
    m = re.match(r'---\n(.*?)\n---\n', text, re.S)
    if not m: return '', text
    title = re.search(r'^title:\s*(.+)$', m.group(1), re.M)
    return (title.group(1).strip() if title else ''), text[m.end():]


def page_notebook(path: Path):
    "The page `path` as a notebook ready to render: hidden cells dropped, directives stripped, links to .html."
    if path.suffix == '.md':
        title, body = _front_matter(path.read_text(encoding='utf-8'))
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f'# {title}\n\n{body}' if title else body)])
    else:
        nb = nbformat.read(path, as_version=4)
        keep = []
        for c in nb.cells:
            if c.cell_type == 'code':
                if re.search(r'^#\|\s*(hide|default_exp)\b', c.source, re.M): continue
                c.source = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|')).strip()
                if not c.source and not c.get('outputs'): continue
            keep.append(c)
        nb.cells = keep
    for c in nb.cells:
        if c.cell_type == 'markdown':
            c.source = re.sub(r'\]\(([\w.-]+)\.(?:ipynb|md)(#[^)]*)?\)', r'](\1.html\2)', c.source)
    return nb


def render_page(name: str, out: Path, sidebar: str) -> Path:
    "Write `out/<page>.html` for the page `name` of nbs/ and return its path."
    exporter = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(page_notebook(NBS / name))
    nav = f'<nav class="fisao-sidebar">{sidebar}</nav>'
    style = ('<style>.fisao-sidebar{position:fixed;top:0;left:0;width:220px;height:100%;overflow:auto;padding:12px;'
             'font:13px sans-serif;background:#f6f6f6;border-right:1px solid #ddd}.fisao-sidebar a{display:block;'
             'margin:3px 0;color:#235}body{margin-left:250px!important}</style>')
    body = body.replace('<body', style + '\n<body', 1).replace('</body>', nav + '</body>', 1)
    dest = out / (Path(name).stem + '.html')
    dest.write_text(body, encoding='utf-8')
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('pages', nargs='*', help='pages of nbs/ to render (default: all)')
    p.add_argument('--out', type=Path, default=ROOT / '_preview')
    args = p.parse_args(argv)
    names = args.pages or pages()
    args.out.mkdir(parents=True, exist_ok=True)
    if (NBS / 'images').is_dir():
        (args.out / 'images').mkdir(exist_ok=True)
        for img in (NBS / 'images').iterdir(): (args.out / 'images' / img.name).write_bytes(img.read_bytes())
    sidebar = ''.join(f'<a href="{Path(n).stem}.html">{html.escape(Path(n).stem)}</a>' for n in pages())
    for n in names: print(render_page(n, args.out, sidebar))
    return 0


if __name__ == '__main__':
    sys.exit(main())
