"""Compile every code cell of every notebook, after IPython's input transformation.

The nbdev hole this guards (STYLE.md pitfall 3, verified): with execnb 0.1.11, `nbdev_test` ignores
`error_before_exec`, so a cell with a SyntaxError is silently skipped and the notebook "passes"
(execnb #77, fixed upstream only later). Cells are run through IPython's `TransformerManager` first,
exactly as the kernel would, so magics, `!cmd` and top-level `await` are accepted here; the hygiene test
separately forbids magics in `#| export` cells.
"""
import ast

import pytest
from IPython.core.inputtransformer2 import TransformerManager

_TM = TransformerManager()
_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT  # IPython accepts top-level await in cells


def _check(src: str, filename: str):
    "None if the cell compiles, else a one-line description of the error."
    try:
        code = _TM.transform_cell(src)
    except Exception as e:  # the transformer itself choked
        return f'IPython could not transform the cell: {type(e).__name__}: {e}'
    try:
        compile(code, filename, 'exec', flags=_FLAGS, dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        if isinstance(e, SyntaxError):
            line = (e.text or '').rstrip('\n')
            return f'{type(e).__name__}: {e.msg} (line {e.lineno}: {line.strip()!r})'
        return f'{type(e).__name__}: {e}'
    return None


def test_code_cells_compile(nb_path, nb, repo_root, nbtools):
    name = nbtools.nb_rel(repo_root, nb_path)
    lang = nb.get('metadata', {}).get('kernelspec', {}).get('language', 'python')
    if lang != 'python': pytest.skip(f'{name}: kernel language is {lang!r}; nbdev_test does not run it either')
    errors = []
    for i, src in nbtools.code_cells(nb):
        if not src.strip(): continue
        err = _check(src, f'{name}[cell {i}]')
        if err: errors.append(f'{name} cell {i}: {err}')
    if errors:
        pytest.fail('Code cells that do not compile (nbdev_test with execnb 0.1.11 would skip them silently):\n  '
                    + '\n  '.join(errors), pytrace=False)
