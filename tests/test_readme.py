"""README.md is generated from nbs/index.ipynb, stays short, and names only files that exist; so do the docs pages and
the CLI's help texts."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH_RE = re.compile(r'(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.(?:md|ipynb|py|yaml|txt|cff|sh|toml|ini|png))(?![\w/])')
# files a command writes, a user brings, or another repository holds (LisaAnne/Hallucination's utils/chair.py)
NOT_FILES = {'run_llava.sh', 'llava.yaml', 'my.yaml', 'my_grid.yaml', 'config.yaml', 'heat.png',
             'reliability.png', 'vocab.txt', 'synonyms.txt', 'adapter/README.md', 'chair.py', 'NN_x.ipynb'}


def named_files(text: str) -> set:
    "Repository-looking paths named in `text` (outputs a run writes, placeholders and URLs left out)."
    text = re.sub(r'https?://\S+', '', text)
    return {m for m in PATH_RE.findall(text) if not m.startswith(('runs/', 'RUN/', 'DIR/', 'models/', 'data/'))
            and m not in NOT_FILES and m.split('/')[-1] not in NOT_FILES
            and not re.search(r'(^|/)[A-Z_]{3,}\.(json|jsonl|txt|yaml|png)$', m)}  # GEN.jsonl: a placeholder


def repo_files() -> set:
    "The repository's files (tracked, or new and not ignored), relative to its root."
    out = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return set(out.splitlines())


def exists(name: str, files: set) -> bool:
    "`name` is a repository file: its path from the root or from nbs/, or (a bare file name) any file's name."
    return name in files or f'nbs/{name}' in files or ('/' not in name and any(f.endswith('/' + name) for f in files))


def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_is_short():
    n = len((ROOT / 'README.md').read_text(encoding='utf-8').splitlines())
    assert n <= 150, f'README.md has {n} lines (at most 150: the rest belongs in nbs/guide.md)'


def test_every_file_the_docs_name_exists():
    missing, files = [], repo_files()
    for page in ['README.md', 'nbs/guide.md', 'nbs/method.md', 'nbs/eval_protocols.md']:
        text = (ROOT / page).read_text(encoding='utf-8')
        missing += [f'{page}: {n}' for n in sorted(named_files(text)) if not exists(n, files)]
    assert not missing, missing


def test_every_file_a_help_text_names_exists():
    from fisao.cli import build_parser
    texts, todo = [], [build_parser()]
    while todo:
        p = todo.pop()
        texts += [p.description or '', p.epilog or ''] + [a.help or '' for a in p._actions]
        todo += [sp for a in p._actions if isinstance(getattr(a, 'choices', None), dict)
                 for sp in a.choices.values() if hasattr(sp, '_actions')]
    files = repo_files()
    names = {n for t in texts for n in named_files(t) if n.endswith(('.md', '.ipynb', '.sh'))}
    assert names, 'the help texts name no documentation page at all: the walk is broken'
    missing = [n for n in sorted(names) if not exists(n, files)]
    assert not missing, missing


def test_ci_runs_the_readme_test_command():
    "`.ci/run` runs exactly the README's command 2, and both install through constraints.txt."
    readme = (ROOT / 'README.md').read_text(encoding='utf-8')
    commands = re.findall(r'^python3 -m venv .*$', readme, re.M)
    assert len(commands) >= 2 and all('-c constraints.txt' in c for c in commands), commands
    ci = [l for l in (ROOT / '.ci' / 'run').read_text(encoding='utf-8').splitlines() if l.startswith('python3 -m venv')]
    assert ci == [commands[1]], (ci, commands[1])
