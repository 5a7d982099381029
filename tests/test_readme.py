"""Every Python snippet in the README runs (offline, with the real model) and prints what the README shows.

A snippet shows its output as the trailing comment of each ``print(...)``
line, e.g. ``print(mask.dims)  # ('bands', 'y', 'x')``, or, for long lines, as
comment lines right below the print (one per printed line). The printed lines are
compared with those comments the way doctest compares output: runs of
whitespace are equal, and ``...`` in a comment matches anything (for numbers
that may change, such as timings). A ``print`` without such a comment fails
the test, so the README cannot silently stop showing what a snippet prints.
"""

import ast
import doctest
import io
import re
import tokenize
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
CHECKER = doctest.OutputChecker()
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def shown_output(source: str) -> list:
    """``(line number, shown output)`` for every ``print(...)`` statement.

    The output is the print's trailing comment, else the comment-only lines
    right below it (one per printed line); None if there is neither.
    """
    lines = source.splitlines()
    trailing = {
        token.start[0]: token.string[1:].strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT and lines[token.start[0] - 1].lstrip() != token.string
    }
    prints = [
        node for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name) and node.value.func.id == "print"
    ]
    shown = []
    for node in sorted(prints, key=lambda n: n.lineno):
        text = trailing.get(node.end_lineno)
        if text is None:
            below = []
            for line in lines[node.end_lineno:]:
                if not line.lstrip().startswith("#"):
                    break
                below.append(line.lstrip()[1:].strip())
            text = "\n".join(below) or None
        shown.append((node.lineno, text))
    return shown


def test_readme_has_snippets():
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_shows_what_it_prints(index):
    shown = shown_output(SNIPPETS[index])
    assert shown, f"README snippet {index} prints nothing to compare"
    missing = [line for line, text in shown if not text]
    assert not missing, f"README snippet {index}: print() on line(s) {missing} shows no output as '# ...'"


def test_the_comparison_is_whitespace_and_ellipsis_tolerant():
    assert shown_output("x = 1  # not a print\nprint(x)  # 1\n") == [(2, "1")]
    assert shown_output("print(x,\n      y)\n# 1\n# 2\nz = 3\n# not output\nprint(z)\n") == [(1, "1\n2"), (7, None)]
    assert CHECKER.check_output("('bands', 'y', 'x') [1 2 3 4 5]\n", "('bands', 'y', 'x') [1 2  3 4 5]\n", FLAGS)
    assert CHECKER.check_output("took ... s\n", "took 3.2 s\n", FLAGS)
    assert not CHECKER.check_output("[1 2 3 4 5]\n", "[1 2 3 4]\n", FLAGS)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs_and_prints_what_the_readme_shows(index, capsys):
    capsys.readouterr()
    exec(compile(SNIPPETS[index], f"README.md snippet {index}", "exec"), {})
    printed = capsys.readouterr().out
    want = "".join(f"{text}\n" for _, text in shown_output(SNIPPETS[index]))
    assert CHECKER.check_output(want, printed, FLAGS), (
        f"README snippet {index} printed\n{printed}\nbut the README shows\n{want}"
    )


def quick_start_block() -> str:
    """The summary the README's quick start shows for ``make demo`` (the first plain code block)."""
    return re.findall(r"```\n(openeo-cloudmask demo:.*?)```", README.read_text(), flags=re.S)[0]


PERCENT = re.compile(r"(\d+(?:\.\d+)?) %")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def same_summary(shown: str, printed: str, tolerance: float = 0.3) -> bool:
    """Line by line: the same words and numbers, except that percentages may differ by ``tolerance``
    (onnxruntime's float kernels differ slightly between CPUs), the ``time:`` line's numbers are ignored,
    and paths are compared from ``models/`` on."""
    def lines(text):
        text = re.sub(r"\(\S*?(models/[^)\s]+)\)", r"(\1)", text)
        return [" ".join(line.split()) for line in text.strip().splitlines()]

    shown_lines, printed_lines = lines(shown), lines(printed)
    if len(shown_lines) != len(printed_lines):
        return False
    for a, b in zip(shown_lines, printed_lines):
        if a.startswith("time:"):
            a, b = NUMBER.sub("#", a), NUMBER.sub("#", b)
        if PERCENT.sub("# %", a) != PERCENT.sub("# %", b):
            return False
        if any(abs(float(x) - float(y)) > tolerance for x, y in zip(PERCENT.findall(a), PERCENT.findall(b))):
            return False
    return True


def test_summary_comparison():
    shown = "model: m v1.3.0 (models/m.onnx)\n  1 clear  49.6 %\ntime: 3.2 s (scene 1.3 s)\n"
    assert same_summary(shown, "model: m v1.3.0 (/x/y/models/m.onnx)\n  1 clear   49.7 %\ntime: 9.9 s (scene 5.0 s)\n")
    assert not same_summary(shown, "model: m v1.3.0 (models/m.onnx)\n  1 clear  51.0 %\ntime: 3.2 s (scene 1.3 s)\n")
    assert not same_summary(shown, "model: m v1.4.0 (models/m.onnx)\n  1 clear  49.6 %\ntime: 3.2 s (scene 1.3 s)\n")


@pytest.mark.slow
def test_quick_start_demo_prints_what_the_readme_shows(tmp_path, monkeypatch, capsys):
    from openeo_cloudmask.cli import main

    monkeypatch.chdir(tmp_path)  # the README shows the default output folder, relative to where it runs
    assert main(["demo", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert same_summary(quick_start_block(), printed), (
        f"`make demo` printed\n{printed}\nbut the README's quick start shows\n{quick_start_block()}\n"
        f"A new model or demo scene changes the summary: paste the new one into the README's quick start."
    )
