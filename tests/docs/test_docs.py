"""Every Python block of README.md and docs/*.md runs, and every `featlab` command line in
them names a real subcommand and real flags, so the docs cannot drift from the code.

The Python blocks of one file run in order in one namespace (like a notebook), in a fresh
temporary working directory; one test per file. A block is changed or prepared only by
HTML comments on the line(s) just before its opening fence (invisible on GitHub):

``<!-- docs-test: replace "A" "B" -->``
    Replace the text A by B before running (repeatable; JSON string escapes). For shrinking
    sizes: the page shows the real size, and its prose gives the full-size time. A
    replacement that no longer matches the block fails the test.
``<!-- docs-test: needs demo -->``
    Run in a working directory whose ``runs/demo`` and ``runs/demo_mqar`` hold finished
    quick demos of the language-model and the MQAR task (copies, so blocks may write into
    them): ``runs/demo_mqar/model``, ``runs/demo_mqar/saes/topk``, ``runs/demo/store``, ...
    The prose must say that the block uses the demo's folder.
``<!-- docs-test: setup NAME -->``
    First run the snippet ``SETUPS[NAME]`` below in the file's namespace, for a fragment that
    continues from context the page describes in words. The prose must say what the
    fragment assumes.
``<!-- docs-test: skip REASON -->``
    Do not run the block (it needs a CUDA GPU, or is a script run with arguments); the
    reason is required, and each skip is reported as a skipped test with it. There is no
    other way to leave a block out.

Plotly's ``Figure.show`` does nothing here; starting the Dash app (``Dash.run``,
``featlab.app.serve``) raises, so a block that serves must be marked ``skip``.
Bash blocks (and unlabelled ones) are not run; their ``featlab ...`` lines are checked
against the typer app: the subcommand exists and every ``--flag`` is one of its options.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages whose owner is rewriting them: their blocks run like every other page's, but a
# failure is expected (strict xfail). Once the page passes, the test fails with XPASS and
# the entry must be removed, so no page stays exempt by accident.

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*$")
DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
QUOTED = r'"((?:[^"\\]|\\.)*)"'
REPLACE = re.compile(rf"^replace\s+{QUOTED}\s+{QUOTED}$")
PYTHON = {"python", "py", "python3"}
SHELL = {"bash", "sh", "shell", "console", ""}

# Named context for fragments, run before a block marked `setup NAME`. Keep it small, and
# describe in the page's prose what each one provides. None is needed today: every block
# is self-contained or starts from the demo's folder (`needs demo`).
SETUPS: dict[str, str] = {}


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    replace: list[tuple[str, str]] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    needs: set[str] = field(default_factory=set)
    skip: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def mode(self) -> str:
        if self.skip is not None:
            return f"skip ({self.skip})"
        parts = [f"needs {n}" for n in sorted(self.needs)]
        parts += [f"setup {n}" for n in self.setup]
        parts += ["replace"] if self.replace else []
        return ", ".join(parts) or "plain"

    def source(self) -> str:
        code = self.code
        for old, new in self.replace:
            if old not in code:
                raise AssertionError(f"{self.where}: replace {old!r} matches nothing in the "
                                     "block; update the docs-test comment")
            code = code.replace(old, new)
        return code


def _parse_directive(block: Block, text: str, where: str) -> None:
    m = REPLACE.match(text)
    if m:
        block.replace.append((json.loads(f'"{m[1]}"'), json.loads(f'"{m[2]}"')))
        return
    word, _, rest = text.partition(" ")
    rest = rest.strip()
    if word == "needs" and rest == "demo":
        block.needs.add(rest)
    elif word == "setup" and rest in SETUPS:
        block.setup.append(rest)
    elif word == "skip":
        if not rest:
            raise AssertionError(f"{where}: `docs-test: skip` needs a reason")
        block.skip = rest
    else:
        raise AssertionError(
            f"{where}: unknown docs-test directive {text!r}; use replace \"A\" \"B\", "
            f"needs demo, setup NAME (one of {sorted(SETUPS)}) or skip REASON")


def parse_blocks(path: Path) -> list[Block]:
    """Every fenced block of `path`, with the docs-test comments just above it."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    pending: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        d = DIRECTIVE.match(lines[i])
        if d:
            pending.append((i + 1, d[1]))
            i += 1
            continue
        m = FENCE.match(lines[i])
        if not m:
            if pending:
                raise AssertionError(f"{path.name}:{pending[0][0]}: a docs-test comment must "
                                     "sit on the line(s) just before a code fence")
            i += 1
            continue
        indent, fence, lang = m[1], m[2], m[3].lower()
        j = i + 1
        while j < len(lines) and not re.match(rf"^\s*{re.escape(fence)}\s*$", lines[j]):
            j += 1
        assert j < len(lines), f"{path.name}:{i + 1}: unclosed code fence"
        body = [ln[len(indent):] if ln.startswith(indent) else ln for ln in lines[i + 1:j]]
        block = Block(path, i + 1, lang, "\n".join(body) + "\n")
        for line_no, text in pending:
            _parse_directive(block, text, f"{path.name}:{line_no}")
        if pending and lang not in PYTHON:
            raise AssertionError(f"{path.name}:{i + 1}: docs-test comments apply to Python "
                                 "blocks only")
        pending = []
        blocks.append(block)
        i = j + 1
    return blocks


ALL = {p: parse_blocks(p) for p in DOCS}
PY = {p: [b for b in bs if b.lang in PYTHON] for p, bs in ALL.items()}
SKIPPED = [b for bs in PY.values() for b in bs if b.skip is not None]


# -- the demo folder ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Finished quick demos of both tasks (about 40 s on 2 cores), built once per session.

    Built as ``runs/demo`` and ``runs/demo_mqar`` relative to their parent folder, as a page
    would run them: the SAE runs record the model folder's path as given, so a demo made
    under another spelling of the path would refuse to load them from the copy."""
    import os

    from featlab.runs import DemoConfig, run_demo

    base = tmp_path_factory.mktemp("docs_demo")
    cwd = os.getcwd()
    os.chdir(base)
    try:
        for task in ("text", "mqar"):
            run_demo(DemoConfig(task=task, quick=True, serve=False, progress=False))
    finally:
        os.chdir(cwd)
    return base / "runs"


# -- running one page --------------------------------------------------------------------
class ServeInDocs(RuntimeError):
    pass


def _no_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    import plotly.graph_objects as go

    def refuse(*_a: object, **_k: object) -> None:
        raise ServeInDocs("a docs block started the app; mark it `docs-test: skip ...`")

    monkeypatch.setattr(go.Figure, "show", lambda self, *a, **k: None)
    import dash

    import featlab.app

    monkeypatch.setattr(dash.Dash, "run", refuse)
    monkeypatch.setattr(featlab.app, "serve", refuse, raising=False)


def _run_block(block: Block, ns: dict[str, object]) -> None:
    for name in block.setup:
        exec(compile(SETUPS[name], f"<docs-test setup {name}>", "exec"), ns)
    code = "\n" * (block.line) + block.source()  # tracebacks show the page's line numbers
    exec(compile(code, str(block.path), "exec"), ns)


def _page_params() -> list[object]:
    return [pytest.param(p, id=p.name) for p in DOCS if PY[p]]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", _page_params())
def test_python_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           request: pytest.FixtureRequest) -> None:
    blocks = [b for b in PY[path] if b.skip is None]
    work = tmp_path / "work"
    work.mkdir()
    # Blocks are written as if run from the repository root: they may import experiments/.
    (work / "experiments").symlink_to(ROOT / "experiments")
    if any("demo" in b.needs for b in blocks):
        shutil.copytree(request.getfixturevalue("quick_demo"), work / "runs", symlinks=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", list(sys.path))
    _no_serving(monkeypatch)
    ns: dict[str, object] = {"__name__": "__docs__"}
    with warnings.catch_warnings():  # a block's warnings.filterwarnings stays in the block
        for block in PY[path]:
            t0 = time.perf_counter()
            if block.skip is None:
                _run_block(block, ns)
            print(f"{block.where:28s} {block.mode():40s} {time.perf_counter() - t0:6.1f} s")


@pytest.mark.parametrize("block", SKIPPED or [None],
                         ids=lambda b: b.where if b else "no-skipped-blocks")
def test_skipped_block(block: Block | None) -> None:
    """One skipped test per skipped block, so `-ra` lists each with its reason."""
    if block is None:
        return
    assert block.skip, f"{block.where}: a skip needs a reason"
    pytest.skip(f"{block.where}: {block.skip}")


def test_every_replace_matches() -> None:
    """Cheap and fast: a stale replacement fails here before the slow run."""
    for bs in PY.values():
        for b in bs:
            b.source()


# -- featlab command lines ---------------------------------------------------------------
def _command_lines(block: Block) -> list[tuple[int, list[str]]]:
    """(line, words after `featlab`) for every featlab command in a shell block."""
    out = []
    text = block.code.replace("\\\n", " ")
    for n, line in enumerate(text.splitlines(), start=block.line + 1):
        line = line.split(" #", 1)[0].strip()
        if line.startswith("#"):
            continue
        for part in re.split(r"&&|;|\|", line):
            try:
                words = shlex.split(part)
            except ValueError:
                continue
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value prefix
                words = words[1:]
            if words and (words[0] == "featlab" or words[0].endswith("/featlab")):
                out.append((n, words[1:]))
    return out


CLI_LINES = [(b, n, words) for bs in ALL.values() for b in bs if b.lang in SHELL
             for n, words in _command_lines(b)]


def test_cli_examples_use_real_commands_and_flags() -> None:
    import typer

    from featlab.cli import app

    root = typer.main.get_command(app)
    root_flags = {o for p in root.params for o in (*p.opts, *p.secondary_opts)}
    assert CLI_LINES, "no featlab command line found in the docs"
    problems = []
    for block, n, words in CLI_LINES:
        words = [w.strip("[]") for w in words if w.strip("[]")]  # `[--flag X]`: optional
        cmd, path = root, ["featlab"]
        while hasattr(cmd, "commands"):  # a group (typer vendors its own click)
            words = [w for w in words if w not in root_flags]  # --debug may come anywhere
            if not words or words[0] not in cmd.commands:
                problems.append(f"{block.path.name}:{n}: `{' '.join(path)}` has no "
                                f"subcommand {words[0] if words else '(none)'!r}; it has "
                                f"{sorted(cmd.commands)}")
                cmd = None
                break
            path.append(words[0])
            cmd, words = cmd.commands[words[0]], words[1:]
        if cmd is None:
            continue
        flags = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | root_flags
        for w in words:
            if w.startswith("--") and w.split("=", 1)[0] not in flags:
                problems.append(f"{block.path.name}:{n}: `{' '.join(path)}` has no option "
                                f"{w.split('=', 1)[0]}")
    assert not problems, "\n".join(problems)
