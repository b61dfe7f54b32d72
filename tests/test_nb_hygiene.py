"""Lint the notebooks for the nbdev 2 mistakes that fail silently (STYLE.md section 3).

- `default_exp` (pitfalls 1, 6 and 7): `#| export` without `#| default_exp` only warns and exports nothing;
  a `default_exp` that differs from the notebook name makes orphan modules likely when either is renamed.
  Numbered notebooks (`NN_x`, `NNa_x`) need exactly one, equal to `x`; `index` and `9N_*` tutorials may have none.
- Magics in export cells (pitfall 4): copied verbatim into the module, which then fails to import.
- Title (first cell): nbdev takes the module docstring and the doc page title from it.
- Noise (pitfall 9): execution counts, cell metadata, `widgets` state (kept by nbdev_clean on purpose),
  oversized images and notebooks; outputs that show this machine's paths (the checkout, a site-packages file) or
  library warnings (`…Warning:` lines): a reader's copy of the docs would carry them.
- Directive lint (pitfall 11): a `#|` line after ordinary code/comment lines is just a comment, `#| Slow`
  is not `slow`, an unknown flag never skips anything, and `tst_flags` is split on whitespace, so the
  nbdev 1 form `notest|slow|gpu` silently stops skipping.

Every message names the notebook and the 0-based cell index.
"""
import difflib
import re

import pytest
from IPython.core.inputtransformer2 import TransformerManager

SKIP_FLAGS = {'notest', 'slow', 'gpu'}
KNOWN_DIRECTIVES = SKIP_FLAGS | {
    'default_exp', 'export', 'exports', 'exporti', 'hide', 'eval:', 'echo:', 'output:', 'code-fold:', 'include:',
    'exec_doc', 'hide_input', 'hide_output', 'filter_stream', 'export_to'}
EXPORT_DIRECTIVES = {'export', 'exports', 'exporti'}
MAX_IMAGE_BYTES = 200 * 1024
MAX_NOTEBOOK_BYTES = 2 * 1024 * 1024

NUMBERED_RE = re.compile(r'^(?P<num>\d+)(?P<letter>[a-z]?)_(?P<stem>.+)\.ipynb$')


def _fail(title, errors):
    if errors: pytest.fail(f'{title}:\n  ' + '\n  '.join(errors), pytrace=False)


@pytest.fixture
def name(nb_path, repo_root, nbtools): return nbtools.nb_rel(repo_root, nb_path)


# ---- default_exp and export cells

def test_default_exp(nb_path, nb, name, nbtools):
    exps = nbtools.default_exps(nb)
    where = ', '.join(f'cell {i}: {m!r}' for i, m in exps)
    m = NUMBERED_RE.match(nb_path.name)
    optional = nb_path.name == 'index.ipynb' or not m or (m['num'].startswith('9') and len(m['num']) == 2)
    expected = m['stem'] if m else nb_path.stem
    errors = [f'{name} cell {i}: `#| default_exp` without a module name' for i, mod in exps if mod is None]
    if len(exps) > 1:
        errors.append(f'{name}: {len(exps)} `#| default_exp` directives ({where}); one notebook = one module')
    elif not exps and not optional:
        errors.append(f'{name}: numbered notebook without `#| default_exp {expected}`')
    errors += [f'{name} cell {i}: `#| default_exp {mod}` but the notebook is named for {expected!r}; '
               f'rename one so they agree (and delete the old module in fisao/)'
               for i, mod in exps if mod is not None and mod != expected]
    _fail('default_exp problems', errors)


def test_no_export_without_default_exp(nb, name, nbtools):
    if nbtools.default_exps(nb): return
    errors = [f'{name} cell {i}: `{d.line.strip()}` but the notebook has no `#| default_exp`: nbdev_export only '
              f'warns and exports nothing' for i, src in nbtools.code_cells(nb)
              for d in nbtools.split_directives(src)[0] if d.name in EXPORT_DIRECTIVES]
    _fail('Export cells in a notebook without default_exp', errors)


_TM = TransformerManager()


def _ipython_only_lines(code: str):
    "Lines of `code` that IPython rewrites (magics, `!cmd`, `x = !cmd`, `obj?`): not valid in a .py module."
    lines = (code if code.endswith('\n') else code + '\n').splitlines(keepends=True)
    for t in _TM.cleanup_transforms: lines = t(lines)
    base = list(lines)
    for t in _TM.line_transforms: lines = t(lines)
    if lines != base: return [base[0].rstrip('\n')]  # a `%%cell_magic` turns the whole cell into one call
    full = _TM.do_token_transforms(lines)
    sm = difflib.SequenceMatcher(a=base, b=full, autojunk=False)
    return [l.rstrip('\n') for op, i1, i2, _, _ in sm.get_opcodes() if op != 'equal' for l in base[i1:i2]]


def test_no_magics_in_export_cells(nb, name, nbtools):
    errors = []
    for i, src in nbtools.code_cells(nb):
        leading, _ = nbtools.split_directives(src)
        if not any(d.name in EXPORT_DIRECTIVES for d in leading): continue
        drop = {d.lineno for d in leading}  # what nbdev writes to the module: the cell minus its directives
        body = '\n'.join(l for n, l in enumerate(src.splitlines(), 1) if n not in drop)
        try: bad = _ipython_only_lines(body)
        except Exception as e: bad = [f'<IPython could not parse the cell: {e}>']
        errors += [f'{name} cell {i}: {l.strip()!r}' for l in bad]
    _fail('IPython magics / shell escapes in #| export cells (copied verbatim into the module, which then '
          'fails to import; move them to a separate cell)', errors)


# ---- title, execution counts, metadata, sizes

def test_first_cell_is_title(nb, name, nbtools):
    cells = nb.get('cells', [])
    i = 0  # an nbdev frontmatter raw cell (`---` YAML) may precede the title
    while (i < len(cells) and cells[i].get('cell_type') == 'raw'
           and nbtools.cell_source(cells[i]).lstrip().startswith('---')):
        i += 1
    if i == len(cells): pytest.fail(f'{name}: the notebook has no cells (besides frontmatter)', pytrace=False)
    c = cells[i]
    src = nbtools.cell_source(c).lstrip()
    if not (c.get('cell_type') == 'markdown' and re.match(r'# \S', src)):
        pytest.fail(f'{name} cell {i}: the first cell must be a markdown title `# Title` (nbdev uses it for the '
                    f'module docstring and the doc page); found a {c.get("cell_type")} cell starting {src[:40]!r}',
                    pytrace=False)


def test_clean_counts_and_metadata(nb, name):
    errors = []
    if 'widgets' in nb.get('metadata', {}):
        errors.append(f'{name}: notebook metadata has a `widgets` key (ipywidgets state; nbdev_clean keeps it): '
                      f'delete it and avoid ipywidgets / tqdm.notebook')
    for i, c in enumerate(nb.get('cells', [])):
        if c.get('execution_count') is not None:
            errors.append(f'{name} cell {i}: execution_count is {c["execution_count"]}')
        for j, o in enumerate(c.get('outputs', [])):
            if o.get('execution_count') is not None:
                errors.append(f'{name} cell {i} output {j}: execution_count is {o["execution_count"]}')
        if c.get('metadata'):
            errors.append(f'{name} cell {i}: cell metadata {sorted(c["metadata"])} (must be empty)')
    _fail('Unclean notebook (run `nbdev_clean`)', errors)


def test_sizes(nb_path, nb, name):
    errors = []
    size = nb_path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        errors.append(f'{name}: file is {size / 1024**2:.2f} MB (limit {MAX_NOTEBOOK_BYTES / 1024**2:.0f} MB)')
    for i, c in enumerate(nb.get('cells', [])):
        for j, o in enumerate(c.get('outputs', [])):
            for mime, data in (o.get('data') or {}).items():
                if not mime.startswith('image/'): continue
                n = len((''.join(data) if isinstance(data, list) else str(data)).encode())
                if n > MAX_IMAGE_BYTES:
                    errors.append(f'{name} cell {i} output {j}: {mime} is {n / 1024:.0f} KB '
                                  f'(limit {MAX_IMAGE_BYTES // 1024} KB): smaller figure, lower dpi, no retina')
    _fail('Oversized notebook outputs', errors)


WARNING_RE = re.compile(r'\b\w*Warning: ')


def _output_text(o) -> str:
    "The text a reader sees of one output: streams, text/plain, text/markdown and tracebacks."
    parts = [o.get('text', '')] + [(o.get('data') or {}).get(m, '') for m in ('text/plain', 'text/markdown')]
    parts += o.get('traceback', [])
    return ''.join(''.join(p) if isinstance(p, list) else str(p) for p in parts)


def test_outputs_show_no_local_paths_or_warnings(nb, name, repo_root):
    errors = []
    for i, c in enumerate(nb.get('cells', [])):
        for j, o in enumerate(c.get('outputs', [])):
            text = _output_text(o)
            for bad, what in ((str(repo_root), 'the checkout\'s absolute path'),
                              ('site-packages', 'a site-packages path'), ('/home/', 'a home directory')):
                if bad in text: errors.append(f'{name} cell {i} output {j}: shows {what}')
            m = WARNING_RE.search(text)
            if m: errors.append(f'{name} cell {i} output {j}: a library warning ({m.group(0).strip()}) — filter it '
                                'where it is expected, or fix its cause')
    _fail('Notebook outputs with local paths or warning noise (filter warnings, print relative paths, re-execute)',
          errors)


# ---- directive lint

def test_directives(nb, name, nbtools, settings):
    tst_flags = set(settings.get('tst_flags', '').split())
    errors = []
    for i, src in nbtools.code_cells(nb):
        leading, late = nbtools.split_directives(src)
        for lineno, line in late:
            errors.append(f'{name} cell {i} line {lineno}: {line.strip()!r} comes after ordinary code/comment lines, '
                          f'so nbdev ignores it; move it into the leading directive block')
        for d in leading:
            if d.name is None: continue
            if d.name != d.name.lower():
                errors.append(f'{name} cell {i} line {d.lineno}: {d.line.strip()!r}: directives are case-sensitive, '
                              f'write {d.name.lower()!r}')
            elif d.name not in KNOWN_DIRECTIVES:
                errors.append(f'{name} cell {i} line {d.lineno}: unknown directive {d.name!r} (test-skip flags are '
                              f'{sorted(SKIP_FLAGS)}; known: {sorted(KNOWN_DIRECTIVES)})')
            elif d.name in SKIP_FLAGS and d.name not in tst_flags:
                errors.append(f'{name} cell {i} line {d.lineno}: flag {d.name!r} is not in settings.ini tst_flags '
                              f'({" ".join(sorted(tst_flags)) or "empty"}), so nbdev_test would run this cell')
    _fail('Directive problems', errors)


def test_tst_flags_whitespace_separated(settings):
    raw = settings.get('tst_flags', '')
    fixed = ' '.join(re.split(r'[|,\s]+', raw.strip()))
    errors = []
    if '|' in raw or ',' in raw:
        errors.append(f'tst_flags = {raw!r}: nbdev 2 splits it on whitespace, so write {fixed!r} '
                      f'(the nbdev 1 `a|b` form silently stops skipping)')
    elif set(raw.split()) - SKIP_FLAGS:
        errors.append(f'tst_flags has {sorted(set(raw.split()) - SKIP_FLAGS)}; '
                      f'test-skip flags are {sorted(SKIP_FLAGS)}')
    _fail('settings.ini', errors)
