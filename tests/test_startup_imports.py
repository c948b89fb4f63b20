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


# A run that cannot start: one line, exit 2, in seconds, before torch or lmms-eval load, nothing written.
_FAILING_RUN = """
import contextlib, io, json, sys, time
started = time.monotonic()
from obv_eval.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    code = main(json.loads(sys.argv[1]))
names = sorted({m.split('.')[0] for m in sys.modules})
print(json.dumps({"code": code, "err": err.getvalue(), "modules": names, "s": time.monotonic() - started}))
"""

_HUB_RUN = ["--model", "tiny-qwen2vl", "--tasks", "medqa", "vqarad", "--data", "hub"]
_HUB_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")


@pytest.mark.parametrize(
    ("argv", "hub", "needle"),
    [
        (["--model", "qwen2vl-7b", "--tasks", "vqarad"], "off", "(hf download Qwen/Qwen2-VL-7B-Instruct)"),
        (_HUB_RUN, "off", "the hub is off (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE)"),
        (_HUB_RUN, "closed", "unreachable"),
        (_HUB_RUN, "silent", "unreachable (no answer within 4 s)"),
    ],
    ids=["missing-weights", "hub-off", "hub-refuses", "hub-silent"],
)
def test_a_run_that_cannot_start_says_so_in_one_line_before_the_heavy_imports(
    tmp_path: Path, argv: list[str], hub: str, needle: str
) -> None:
    import os
    import socket

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _HUB_VARIABLES and "PROXY" not in k.upper()}
    env["HF_HOME"] = str(tmp_path / "hf-home")  # an empty cache: no weights, no datasets
    with socket.socket() as endpoint:
        endpoint.bind(("127.0.0.1", 0))
        if hub == "silent":
            endpoint.listen(1)  # the connection is accepted by the kernel; nothing ever answers
        if hub == "off":
            env["HF_HUB_OFFLINE"] = "1"
        else:
            env["HF_ENDPOINT"] = f"http://127.0.0.1:{endpoint.getsockname()[1]}"
        done = subprocess.run(
            [sys.executable, "-c", _FAILING_RUN, json.dumps(argv)],
            capture_output=True, text=True, timeout=120, env=env, cwd=cwd,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    lines = report["err"].strip().splitlines()
    assert report["code"] == 2 and len(lines) == 1 and needle in lines[0], report["err"]
    assert lines[0].startswith("obv-eval: error: ")
    heavy = sorted(set(report["modules"]) & set(HEAVY))
    assert not heavy, f"imported {heavy} before refusing"
    assert report["s"] < 10, report["s"]  # the probe waits at most 4 s; the rest is start-up
    assert list(cwd.iterdir()) == []  # no results/runs, no empty run folder
