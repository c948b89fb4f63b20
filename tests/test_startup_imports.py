"""Start-up stays quick: listing and `--help` commands import none of the heavy libraries.

Each command runs in a fresh interpreter, which then reports which modules ended up in sys.modules.
Not a timing test: the assertion is on what was imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "lmms_eval", "datasets", "matplotlib", "av", "numpy", "pandas", "scipy")

# The probe runs obv_eval.cli.main as the console script does, keeps its output quiet, and prints the
# top-level names of every module imported by then.
_PROBE = """
import contextlib, io, json, sys
from obv_eval.cli import main
argv = json.loads(sys.argv[1])
out, err = io.StringIO(), io.StringIO()
code = 0
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
names = sorted({m.split('.')[0] for m in sys.modules})
print(json.dumps({"code": code, "out": out.getvalue(), "modules": names}))
"""


def _subcommands() -> list[str]:
    from obv_eval.cli import HANDLERS

    return sorted(HANDLERS)


def _probe(argv: list[str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


COMMANDS = [
    ["--help"],
    ["models"],
    ["tasks"],
    ["tasks-dir"],
    *[[name, "--help"] for name in _subcommands()],
    ["data", "check", "--help"],
    ["data", "prepare", "--help"],
    ["data", "overlap", "--help"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_command_imports_nothing_heavy(argv: list[str]) -> None:
    report = _probe(argv)
    assert report["code"] in (0, None), report
    assert report["out"], f"{argv} printed nothing"
    loaded = set(report["modules"])  # type: ignore[arg-type]
    assert "obv_eval" in loaded  # the probe really ran the CLI
    heavy = sorted(loaded & set(HEAVY))
    assert not heavy, f"obv-eval {' '.join(argv)} imported {heavy}"


def test_probe_detects_a_heavy_import() -> None:
    # The check can fail: a command that really needs numpy (a leaderboard write) shows it.
    done = subprocess.run(
        [sys.executable, "-c", "import sys, obv_eval.stats; print('numpy' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "True"


def test_a_run_without_a_judge_loads_no_judge_client(tmp_path: Path) -> None:
    # A transformers run with no judge configured: the OpenAI client (~0.6 s) and scikit-learn
    # (only judge-agreement's kappa) stay unloaded, and the run still writes its records.
    argv = ["--model", "tiny-qwen2vl", "--tasks", "pubmedqa", "--data", "samples", "--limit", "2"]
    argv += ["--max-new-tokens", "2", "--no-progress", "--output-dir", str(tmp_path), "--run-id", "r"]
    report = _probe(argv)
    assert report["code"] == 0, report
    assert (tmp_path / "tiny-qwen2vl" / "r" / "samples.jsonl").read_text().count("\n") == 2
    loaded = set(report["modules"])  # type: ignore[arg-type]
    assert {"torch", "lmms_eval"} <= loaded  # the probe really ran the model
    assert not loaded & {"openai", "sklearn"}, sorted(loaded & {"openai", "sklearn"})


def _imported_modules(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_module_imports_back_from_the_cli() -> None:
    # The CLI sits on top: library modules (including ones that define a command of their own, like
    # obv_eval.data.dicom) take their shared pieces from obv_eval.usage, never from obv_eval.cli.
    package = Path(__file__).resolve().parent.parent / "obv_eval"
    outside = [path for path in sorted(package.rglob("*.py")) if path.relative_to(package).parts[0] != "cli"]
    offenders = [
        str(path.relative_to(package.parent))
        for path in outside
        if any(name.split(".")[:2] == ["obv_eval", "cli"] for name in _imported_modules(path))
    ]
    assert not offenders, offenders
    # the check can fail: the CLI's own modules do import from it
    assert "obv_eval.cli.args" in _imported_modules(package / "cli" / "run.py")
