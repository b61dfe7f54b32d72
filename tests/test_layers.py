"""The package's layers: imports point down only, and no module imports another in a circle.

The layer order is written once, here (DESIGN.md "Layers" says why; the notebooks' overview in index.ipynb shows it).
A module may import modules on lower layers, or on its own layer where no cycle forms; never one above. The graph is
built from the source with `ast`: module-level *and* function-local imports (a function-local import only moves a cycle
from import time to call time, it does not remove it)."""
import ast
import collections
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / 'fisao'

LAYERS = [  # bottom first
    ['core'],
    ['config', 'shapeworld', 'data', 'chair', 'models'],
    ['pretrain', 'fixtures'],
    ['rewards', 'verifier', 'ppo'],
    ['workspace'],
    ['trainconfig', 'presets', 'rundir', 'trainer'],
    ['eval', 'scorers', 'baselines', 'viz', 'score'],
    ['demo', 'ablate'],
    ['cli'],
    ['__main__'],
]
LAYER = {m: i for i, ms in enumerate(LAYERS) for m in ms}


def import_graph(pkg: Path = PKG) -> dict:
    "`{module: {imported fisao module: [line numbers]}}` for every fisao/*.py, module-level and function-local imports."
    mods = {p.stem for p in pkg.glob('*.py')}
    graph = {}
    for p in sorted(pkg.glob('*.py')):
        edges = collections.defaultdict(list)
        for n in ast.walk(ast.parse(p.read_text(encoding='utf-8'))):
            targets = []
            if isinstance(n, ast.ImportFrom):
                parts = (n.module or '').split('.')
                if n.level == 1: targets = [parts[0]] if n.module else [a.name for a in n.names]
                elif parts[0] == 'fisao': targets = [parts[1]] if len(parts) > 1 else [a.name for a in n.names]
            elif isinstance(n, ast.Import):
                targets = [a.name.split('.')[1] for a in n.names if a.name.startswith('fisao.')]
            for t in targets:
                if t in mods and t != p.stem: edges[t].append(n.lineno)
        graph[p.stem] = dict(edges)
    return graph


def cycles(graph: dict) -> list:
    "The strongly connected components of more than one module (Tarjan)."
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in graph.get(v, {}):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in graph:
        if v not in index: visit(v)
    return out


def upward_imports(graph: dict) -> list:
    "`(module, imported, lines)` for every import of a module on a higher layer."
    return [(m, t, lines) for m, edges in graph.items() for t, lines in edges.items() if LAYER[t] > LAYER[m]]


def test_every_module_has_a_layer():
    missing = sorted(set(import_graph()) - set(LAYER) - {'__init__', '_modidx'})
    assert not missing, f"modules without a layer in tests/test_layers.py: {missing}"


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, f"import cycles among fisao modules: {found}"


def test_imports_point_down():
    up = upward_imports(import_graph())
    assert not up, 'imports of a higher layer: ' + '; '.join(f'{m} imports {t} (lines {ls})' for m, t, ls in up)


def test_nothing_imports_the_cli():
    users = sorted(m for m, edges in import_graph().items() if 'cli' in edges and m != '__main__')
    assert not users, f"library modules import fisao.cli: {users}"


@pytest.mark.parametrize('graph, want', [({'a': {'b': [1]}, 'b': {'a': [2]}, 'c': {'a': [3]}}, [['a', 'b']]),
                                         ({'a': {'b': [1]}, 'b': {}}, [])])
def test_cycle_finder(graph, want):
    assert cycles(graph) == want


def test_lines_fit():
    """Every line of the package, tests, benchmarks and scripts fits in 120 characters (nbdev's generated `__all__`
    line aside)."""
    root, long = PKG.parent, []
    dirs = ('fisao', 'tests', 'benchmarks', 'fisao/assets/scripts', 'tools')
    files = [p for d in dirs for p in sorted((root / d).glob('*.py'))
             if p.name != '_modidx.py']
    for p in files:
        for i, line in enumerate(p.read_text(encoding='utf-8').splitlines(), 1):
            if len(line) > 120 and not line.startswith('__all__ = ['):
                long.append(f'{p.relative_to(root)}:{i} ({len(line)})')
    assert not long, f'{len(long)} lines over 120 characters: ' + ', '.join(long[:20])
