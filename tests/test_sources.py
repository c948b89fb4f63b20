"""Rows load from every local-copy format in the published schema; task groups are lmms-eval groups."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from obv_eval.benchmarks import BENCHMARKS, GROUPS
from obv_eval.release_formats import adapt_row, in_test_split
from obv_eval.sources import SAMPLES_DIR, DataSourceError, parse_data_source, tasks_package_dir
from obv_eval.tasking import ROW_ERROR_FIELD, load_rows, read_json_rows


def _jsonl_rows(benchmark: str) -> list[dict[str, object]]:
    """The sample's test rows in the hub schema (PubMedQA's sample is in the original release format)."""
    path = next(SAMPLES_DIR.joinpath(benchmark).glob("test.json*"))
    rows = [adapt_row(benchmark, row) for row in read_json_rows(path)]
    return [row for row in rows if in_test_split(benchmark, row)]


@pytest.mark.parametrize("benchmark", ["surgeryvqa", "mimicechoqa", "medqa", "pubmedqa"])
@pytest.mark.parametrize("layout", ["parquet", "save_to_disk", "json_list"])
def test_local_copies_in_every_format_read_the_same_rows(tmp_path: Path, benchmark: str, layout: str) -> None:
    rows = _jsonl_rows(benchmark)
    folder = tmp_path / benchmark
    folder.mkdir()
    if layout == "parquet":
        datasets.Dataset.from_list(rows).to_parquet(str(folder / "test.parquet"))
    elif layout == "save_to_disk":
        datasets.Dataset.from_list(rows).save_to_disk(str(folder / "test"))
    else:
        (folder / "test.json").write_text(json.dumps(rows))
    loaded = load_rows(BENCHMARKS[benchmark], parse_data_source(str(tmp_path)))
    assert len(loaded) == len(rows)
    for original, row in zip(rows, loaded, strict=True):
        assert row[ROW_ERROR_FIELD] is None
        for field, value in original.items():  # every published field, with its value, nested ones too
            assert row[field] == value, (field, row[field], value)


def test_a_folder_without_rows_says_what_it_expected(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"no rows in .*expected test\.jsonl"):
        load_rows(BENCHMARKS["medqa"], parse_data_source(str(tmp_path)))


def test_an_unknown_source_is_refused() -> None:
    with pytest.raises(DataSourceError, match="neither 'hub', 'samples' nor an existing folder"):
        parse_data_source("/no/such/folder")


def test_groups_are_lmms_eval_groups(samples_source: None) -> None:
    from lmms_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(tasks_package_dir()), include_defaults=False, verbosity="ERROR")
    for group in GROUPS:
        assert f"obv_{group}" in manager.all_groups
    loaded = manager.load_task_or_group(["obv_video"])
    names = {getattr(key, "group_name", key) for key in loaded}
    assert names == {"obv_video"}
    assert {f"obv_{name}" for name in GROUPS["video"]} <= set(next(iter(loaded.values())))


def test_unknown_option_letter_fails_the_item_and_empty_reply_is_unparsed() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "echo_utils", tasks_package_dir() / "mimicechoqa" / "utils.py"
    )
    assert spec and spec.loader
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    row = next(r for r in _jsonl_rows("mimicechoqa") if r.get("option_C"))
    bad = utils.process_results({**row, "correct_option": "E", ROW_ERROR_FIELD: None}, ["A"])["accuracy"]
    assert bad["status"] == "failed" and "'E' is not one of the options" in bad["reason"]
    assert "score" in bad and bad["score"] == 0.0
    empty = utils.process_results({**row, ROW_ERROR_FIELD: None}, [""])["accuracy"]
    assert empty["status"] == "ok" and empty["unparsed"] and empty["score"] == 0.0
