"""Fingerprints come from content: a changed gold answer, option, media file or scorer rule is seen,
and the regression gate fails on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from obv_eval.cli import main
from obv_eval.sources import SAMPLES_DIR


def _copy_samples(target: Path) -> Path:
    for name in ("vqarad", "medqa"):
        shutil.copytree(SAMPLES_DIR / name, target / name)
    shutil.copytree(SAMPLES_DIR / "media" / "vqarad", target / "media" / "vqarad")
    return target


def _run(data: Path, out: Path, run_id: str) -> Path:
    args = ["--model", "tiny-qwen2vl", "--tasks", "vqarad", "medqa", "--data", str(data), "--limit", "2"]
    args += ["--max-new-tokens", "2", "--output-dir", str(out), "--run-id", run_id, "--no-progress"]
    assert main(args) == 0
    return out / "tiny-qwen2vl" / run_id


def _prints(run: Path) -> dict[str, dict[str, str]]:
    tasks = json.loads((run / "results.json").read_text())["tasks"]
    return {name: task["fingerprints"] for name, task in tasks.items()}


def _gate(base: Path, run: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["regress", "--baseline", str(base), str(run)])
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("runs")
    data = _copy_samples(tmp_path_factory.mktemp("data"))
    return _run(data, out, "base"), out


def _edit_rows(path: Path, edit: object) -> None:
    rows = json.loads(path.read_text()) if path.suffix == ".json" else None
    if rows is not None:
        edit(rows)  # type: ignore[operator]
        path.write_text(json.dumps(rows))
    else:
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        edit(lines)  # type: ignore[operator]
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_same_row_count_different_tasks_have_different_data_fingerprints(base: tuple[Path, Path]) -> None:
    prints = _prints(base[0])
    assert prints["vqarad"]["data"] != prints["medqa"]["data"]


@pytest.mark.parametrize("change", ["gold", "option", "media"])
def test_a_content_change_moves_its_fingerprint_and_fails_the_gate(
    change: str, base: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _copy_samples(tmp_path / "data")
    if change == "gold":  # the first VQA-RAD item's gold answer
        _edit_rows(data / "vqarad" / "test.json", lambda rows: rows[0].update(answer="infratentorial"))
    elif change == "option":  # one MedQA option's text
        _edit_rows(data / "medqa" / "test.jsonl", lambda rows: rows[0]["options"].update(A="Something else"))
    else:  # the bytes of the first VQA-RAD image, same name
        first = json.loads((data / "vqarad" / "test.json").read_text())[0]["image_name"]
        image = data / "media" / "vqarad" / first
        shutil.copyfile(data / "media" / "vqarad" / sorted(p.name for p in image.parent.iterdir())[-1], image)
    run = _run(data, base[1], f"changed-{change}")
    before, after = _prints(base[0]), _prints(run)
    task = "medqa" if change == "option" else "vqarad"
    other = "vqarad" if task == "medqa" else "medqa"
    assert after[task]["data"] != before[task]["data"]
    assert after[task]["task"] == before[task]["task"]
    assert after[other] == before[other]
    assert (after[task]["prompt"] != before[task]["prompt"]) == (change == "option")
    code, report = _gate(base[0], run, capsys)
    assert code == 1 and "fingerprint:data" in report


def test_a_scorer_rule_change_moves_every_task_fingerprint(
    base: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import obv_eval.scoring.yesno as yesno

    scorer = Path(yesno.__file__).resolve()
    original = Path.read_bytes

    def patched(self: Path) -> bytes:
        data = original(self)
        return data + b"\n# a changed rule\n" if self.resolve() == scorer else data

    monkeypatch.setattr(Path, "read_bytes", patched)
    data = base[0].parent.parent.parent / "scorer-data"
    if not data.exists():
        _copy_samples(data)
    run = _run(data, base[1], "changed-scorer")
    before, after = _prints(base[0]), _prints(run)
    for name in before:
        assert after[name]["task"] != before[name]["task"], name
        assert after[name]["data"] == before[name]["data"], name
    code, report = _gate(base[0], run, capsys)
    assert code == 1 and "fingerprint:task" in report
