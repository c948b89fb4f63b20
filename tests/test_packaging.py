"""A non-editable install carries the tasks, samples, adapters, reference numbers and training configs."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_everything_a_plain_install_needs(tmp_path: Path) -> None:
    # setuptools builds in the source tree (build/, *.egg-info) unless told otherwise: the extra config
    # puts both under tmp_path, so the test writes nothing into the work tree
    extra = tmp_path / "setuptools.cfg"
    extra.write_text(f"[build]\nbuild_base = {tmp_path / 'build'}\n[egg_info]\negg_base = {tmp_path}\n")
    had_build = (ROOT / "build").exists()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=600, env={**os.environ, "DIST_EXTRA_CONFIG": str(extra)},
    )  # fmt: skip
    assert had_build or not (ROOT / "build").exists()
    assert (tmp_path / "build").is_dir()  # the setting took effect
    (wheel,) = tmp_path.glob("obv_eval-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    repo_files = [
        *(ROOT / "obv_eval").rglob("*.py"),  # every subpackage listed in pyproject (e.g. obv_eval.cli)
        *(ROOT / "tasks").rglob("*.yaml"),
        *(ROOT / "tasks").rglob("*.py"),
        *(ROOT / "tasks" / "samples").rglob("*.*"),
        *(ROOT / "model_adapters").glob("*.py"),
        *(ROOT / "obv_eval" / "train" / "configs").rglob("*.*"),
        ROOT / "results" / "reference" / "study_figure.json",
    ]
    packaged = {
        "tasks": "obv_eval/tasks",
        "model_adapters": "obv_eval/model_adapters",
        "results/reference": "obv_eval/reference",
        "obv_eval": "obv_eval",
    }
    missing = []
    for path in (p for p in repo_files if p.is_file()):
        relative = path.relative_to(ROOT).as_posix()
        prefix = next(p for p in packaged if relative.startswith(p + "/"))
        if "__pycache__" not in relative and packaged[prefix] + relative[len(prefix) :] not in names:
            missing.append(relative)
    assert not missing, missing
    entry_points = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )
    assert "obv = obv_eval.plugin:model_manifests" in entry_points and "obv-train" in entry_points
