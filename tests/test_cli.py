"""Command-line behaviour that needs no model run: names, exit codes, listings."""

from __future__ import annotations

import pytest

from obv_eval.benchmarks import GROUPS, UnknownTaskError, resolve_task_names
from obv_eval.cli import main


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["surgeryvqa"], ["surgeryvqa"]),
        (["obv_medqa"], ["medqa"]),
        (["video"], ["mimicechoqa", "surgeryvqa"]),
        (["text", "medqa"], ["medqa", "pubmedqa"]),
        (["image,slake"], ["vqarad", "pathvqa", "slake"]),
        (["all"], list(GROUPS["all"])),
    ],
)
def test_task_names_and_groups_expand(names: list[str], expected: list[str]) -> None:
    assert resolve_task_names(names) == expected


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(UnknownTaskError, match=r"unknown task 'nope'; valid: mimicechoqa, surgeryvqa"):
        resolve_task_names(["nope"])


def test_unknown_task_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "tiny-qwen2vl", "--tasks", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "valid:" in err[0] and "surgeryvqa" in err[0]


def test_unknown_model_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "gpt-9", "--tasks", "surgeryvqa"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tiny-qwen2vl" in err[0] and "qwen2vl-7b-obv" in err[0]


def test_bad_flag_exits_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--no-such-flag"])
    assert exit_info.value.code == 2


def test_missing_finetuned_checkpoint_says_how_to_train(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "qwen2vl-7b-obv", "--tasks", "surgeryvqa", "--data", "samples"]) == 2
    err = capsys.readouterr().err
    assert "obv-train" in err and "--model-path" in err


def test_hub_unreachable_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tiny_model_path: object
) -> None:
    assert main(["--model", "tiny-qwen2vl", "--tasks", "medqa", "--data", "hub", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot load GBaker/MedQA-USMLE-4-options" in err and "--data" in err


def test_tasks_dir_points_at_the_task_yamls(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    assert main(["tasks-dir"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert (folder / "surgeryvqa" / "surgeryvqa.yaml").exists()


def test_models_lists_availability(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("tiny-qwen2vl", "qwen2vl-2b", "qwen2vl-7b-obv", "gpt-4o"):
        assert name in out
    assert "OPENAI_API_KEY not set" in out


def test_model_path_hub_id_not_in_cache_says_how_to_get_it(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--model", "qwen2vl-2b", "--model-path", "Qwen/Qwen2-VL-2B-Instruct", "--tasks", "medqa"])
    assert code == 2
    assert "huggingface-cli download Qwen/Qwen2-VL-2B-Instruct" in capsys.readouterr().err


def test_model_path_folder_runs_under_its_own_name(
    tmp_path: object, tiny_model_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    out = Path(str(tmp_path))
    args = [
        "--model",
        "my-model",
        "--model-path",
        str(tiny_model_path),
        "--tasks",
        "medqa",
        "--data",
        "samples",
    ]
    assert main([*args, "--output-dir", str(out), "--run-id", "r", "--no-progress", "--limit", "2"]) == 0
    assert (out / "my-model" / "r" / "results.json").exists()
