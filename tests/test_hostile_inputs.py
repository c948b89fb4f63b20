"""Hostile inputs (issue 12): each bad row, file or argument fails alone or is refused in one line."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from fake_chat_server import FakeChatServer
from PIL import Image, ImageFile

from obv_eval.backends.base import GenerationOutput
from obv_eval.benchmarks import BENCHMARKS
from obv_eval.cli import main
from obv_eval.generation_log import GenerationLog
from obv_eval.media import MediaError, load_image, resolve_media_path
from obv_eval.redaction import REDACTED, redact, redact_value
from obv_eval.sources import SAMPLES_DIR, normalize_rows, parse_data_source
from obv_eval.tasking import ROW_ERROR_FIELD, load_rows

SECRET = "sk-Hostile-Key-0123456789abcdef"


def _medqa_rows() -> list[dict[str, Any]]:
    lines = (SAMPLES_DIR / "medqa" / "test.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]


# -- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "leak",
    [SECRET, SECRET.lower(), SECRET.upper(), SECRET[:8], SECRET[5:17], SECRET[-10:].swapcase()],
)
def test_every_case_variant_and_long_fragment_of_a_key_is_redacted(leak: str) -> None:
    text = f"Incorrect API key provided: {leak}. Check it."
    out = redact(text, [SECRET])
    assert leak.lower() not in out.lower() and REDACTED in out
    assert out.startswith("Incorrect API key provided: ") and out.endswith(". Check it.")


def test_short_fragments_and_other_text_stay() -> None:
    assert redact(f"prefix {SECRET[:7]} suffix", [SECRET]) == f"prefix {SECRET[:7]} suffix"
    nested = redact_value({"a": [f"x{SECRET.lower()}y", 3], SECRET: None}, [SECRET])
    assert nested == {"a": [f"x{REDACTED}y", 3], REDACTED: None}


# -- command line: one line, exit 2, before any model loads ----------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--limit", "0"], "--limit must be at least 1"),
        (["--limit", "-1"], "--limit must be at least 1"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
        (["--max-new-tokens", "-5"], "--max-new-tokens must be at least 1"),
        (["--device", "cuda:99"], "--device cuda:99"),
        (["--device", "banana"], "--device 'banana'"),
        (["--run-id", "../../x"], "is not a plain name"),
        (["--run-id", "/tmp/abs"], "is not a plain name"),
        (["--run-id", ".."], "is not a plain name"),
        (["--max-failed", "2"], "--max-failed must be a fraction"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_before_the_model_loads(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
) -> None:
    import obv_eval.runner

    def no_run(*_: Any, **__: Any) -> None:
        raise AssertionError("the run started despite a bad argument")

    monkeypatch.setattr(obv_eval.runner, "run", no_run)
    out = tmp_path / "out"
    assert main(["--tasks", "medqa", "--output-dir", str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "x").exists() and not Path("/tmp/abs").exists()


def test_an_output_dir_that_is_a_file_or_under_a_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import obv_eval.runner

    monkeypatch.setattr(obv_eval.runner, "run", lambda *a, **k: pytest.fail("run started"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for target in (blocker, blocker / "below"):
        assert main(["--tasks", "medqa", "--output-dir", str(target), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--output-dir" in err[0], err


# -- rows: mixed types, oversized text ------------------------------------------------------------


def test_mixed_types_are_coerced_or_fail_their_row_alone() -> None:
    base = _medqa_rows()[0]
    options = base["options"]
    rows = [
        {**base, "year": 2019},
        {**base, "year": "2019"},
        {**base, "options": json.dumps(options)},  # JSON text beside dicts: parsed
        {**base, "options": "not json at all"},  # fails alone
        {**base, "options": 42},  # a number where the others have objects: fails alone
        {**base, "meta_info": ["a", "list"]},  # a list where the others have text: fails alone
    ]
    out = normalize_rows(rows, ROW_ERROR_FIELD)
    assert [r.get("year") for r in out] == ["2019", "2019", None, None, None, None]
    assert out[2]["options"] == options and not out[2].get(ROW_ERROR_FIELD)
    failed = {i: r[ROW_ERROR_FIELD] for i, r in enumerate(out) if r.get(ROW_ERROR_FIELD)}
    assert set(failed) == {3, 4, 5}
    assert "'options'" in failed[3] and "not JSON" in failed[3]
    assert "'meta_info'" in failed[5] and "a list" in failed[5]


@pytest.mark.parametrize("layout", ["jsonl", "json", "csv"])
def test_a_local_copy_with_mixed_columns_loads_and_marks_only_bad_rows(tmp_path: Path, layout: str) -> None:
    base = _medqa_rows()[:3]
    rows = [{**base[0], "year": 2019}, {**base[1], "year": "2019"}, {**base[2], "options": "{broken"}]
    folder = tmp_path / "medqa"
    folder.mkdir()
    if layout == "jsonl":
        _write_jsonl(folder / "test.jsonl", rows)
    elif layout == "json":
        (folder / "test.json").write_text(json.dumps(rows))
    else:
        import csv

        with (folder / "test.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=sorted({k for r in rows for k in r}))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()})
    dataset = load_rows(BENCHMARKS["medqa"], parse_data_source(str(tmp_path)))
    assert len(dataset) == 3
    errors = dataset[ROW_ERROR_FIELD]
    assert errors[0] is None and errors[1] is None
    if layout != "csv":  # CSV keeps options as text: the task's own parsing meets it (data check lists it)
        assert errors[2] is not None and "options" in errors[2]


def test_an_oversized_question_fails_alone_before_the_backend() -> None:
    base = _medqa_rows()[0]
    from obv_eval.tasking import rows_to_dataset

    dataset = rows_to_dataset([base, {**base, "question": "why? " * 40_000}])
    from obv_eval.tasking import mark_invalid_rows

    marked = mark_invalid_rows(dataset, BENCHMARKS["medqa"])
    assert marked[ROW_ERROR_FIELD][0] is None
    reason = marked[ROW_ERROR_FIELD][1]
    assert "200,0" in reason and "'question'" in reason and "limit" in reason


# -- media: truncated images, symlink escape ---------------------------------------------------------


def _png(path: Path) -> bytes:
    image = Image.radial_gradient("L").convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def test_a_truncated_png_fails_even_with_lmms_evals_pillow_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _png(tmp_path / "good.png")
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as lmms-eval sets it at import
    assert load_image("good.png", root=tmp_path).size[0] > 0
    with pytest.raises(MediaError, match="corrupt"):
        load_image("cut.png", root=tmp_path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the inherited policy is restored


def test_a_symlink_out_of_the_media_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    _png(outside / "secret.png")
    _png(root / "inside.png")
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    (root / "ok.png").symlink_to(root / "inside.png")
    with pytest.raises(MediaError, match="escapes the media root"):
        resolve_media_path("link.png", root)
    with pytest.raises(MediaError, match="escapes the media root"):
        resolve_media_path("linkdir/secret.png", root)
    assert resolve_media_path("ok.png", root) == root / "ok.png"
    linked_root = tmp_path / "rootlink"
    linked_root.symlink_to(root, target_is_directory=True)
    assert resolve_media_path("inside.png", linked_root) == linked_root / "inside.png"


# -- the generation log's torn tail ------------------------------------------------------------------


def _output(doc: int, text: str) -> GenerationOutput:
    return GenerationOutput(("obv_medqa", doc), text, prompt="p", prompt_tokens=1, output_tokens=1)


def test_a_torn_last_line_is_cut_before_the_next_append(tmp_path: Path) -> None:
    log = GenerationLog(tmp_path / "generations.jsonl")
    log.append_batch([_output(0, "A"), _output(1, "B")])
    log.append_batch([_output(2, "C"), _output(3, "D")])
    raw = log.path.read_bytes()
    cut = raw[: len(raw) - len(raw.splitlines()[-1]) // 2 - 1]  # a kill in the middle of the last line
    log.path.write_bytes(cut)
    assert not cut.endswith(b"\n")
    assert set(log.load()) == {("obv_medqa", 0), ("obv_medqa", 1)}  # the torn batch does not count
    log.append_batch([_output(2, "C"), _output(3, "D")])
    lines = log.path.read_bytes().splitlines()
    assert log.path.read_bytes().endswith(b"\n")
    parsed = [json.loads(line) for line in lines[:2] + lines[-2:]]  # every complete line still parses
    assert [p["output"]["text"] for p in parsed] == ["A", "B", "C", "D"]
    assert sum(1 for line in lines if line.startswith(b"{")) == len(lines)
    assert set(log.load()) == {("obv_medqa", d) for d in range(4)}
    assert log.repair_tail() == 0  # nothing left to repair


# -- runs with the tiny model: exit codes and counts -----------------------------------------------


def _run(tmp_path: Path, run_id: str, *args: str) -> tuple[int, Path]:
    code = main(
        ["--model", "tiny-qwen2vl", "--output-dir", str(tmp_path / "runs"), "--run-id", run_id,
         "--no-progress", *args]
    )  # fmt: skip
    return code, tmp_path / "runs" / "tiny-qwen2vl" / run_id


def test_failed_items_beyond_the_budget_exit_1_and_within_it_0(
    tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _medqa_rows()
    bad = {**rows[0], "answer_idx": "E"}  # a gold letter outside the options
    huge = {**rows[1], "question": "x" * 200_000}
    mixed = {**rows[2], "options": "{not json", "year": 2019}
    _write_jsonl(tmp_path / "data" / "medqa" / "test.jsonl", [*rows, bad, huge, mixed])
    code, run = _run(tmp_path, "bad", "--tasks", "medqa", "--data", str(tmp_path / "data"))
    assert code == 1
    err = capsys.readouterr().err
    assert "error budget exceeded: medqa: 3/" in err and "items failed" in err
    task = json.loads((run / "results.json").read_text())["tasks"]["medqa"]
    assert task["n"] == len(rows) + 3 and task["failed"] == 3
    reasons = sorted(r["reason"] for r in _records(run) if r["status"] == "failed")
    assert any("'E'" in r for r in reasons) and any("200,000" in r for r in reasons)
    assert any("options" in r for r in reasons)

    # The same run within a generous budget exits 0 (resume: nothing is generated again).
    code, _ = _run(
        tmp_path, "bad", "--tasks", "medqa", "--data", str(tmp_path / "data"), "--max-failed", "0.5"
    )
    assert code == 0

    # data check lists every item the run failed (a superset, by row).
    capsys.readouterr()
    assert main(["data", "check", "medqa", "--data", str(tmp_path / "data"), "--no-progress"]) == 1
    out = capsys.readouterr().out
    failed_rows = {r["doc_id"] for r in _records(run) if r["status"] == "failed"}
    listed = {int(line.split()[1].rstrip(":")) for line in out.splitlines() if line.startswith("  row ")}
    assert failed_rows <= listed
    assert "gold answer outside the options: 1" in out and "oversized item: 1" in out


def test_data_check_lists_duplicate_ids_and_truncated_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = json.loads((SAMPLES_DIR / "vqarad" / "test.json").read_text())[:3]
    media = tmp_path / "media" / "vqarad"
    shutil.copytree(SAMPLES_DIR / "media" / "vqarad", media)
    name = rows[0].get("image") or rows[0]["image_name"]
    data = (media / name).read_bytes()
    (media / "cut.jpg").write_bytes(data[: len(data) // 2])
    key = "image" if "image" in rows[0] else "image_name"
    rows = [rows[0], {**rows[1], "qid": rows[0]["qid"]}, {**rows[2], key: "cut.jpg"}]
    (tmp_path / "vqarad").mkdir()
    (tmp_path / "vqarad" / "test.json").write_text(json.dumps(rows))
    assert main(["data", "check", "vqarad", "--data", str(tmp_path), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "duplicate id: 1" in out and "row 1: duplicate id" in out
    assert "unreadable media: 1" in out and "row 2: unreadable media" in out


def test_every_generation_failing_with_http_401_exits_1_and_leaks_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeChatServer(api_key="the-right-key") as server:
        code = main(
            ["--model", "fake-model", "--base-url", server.base_url, "--tasks", "medqa", "--data", "samples",
             "--output-dir", str(tmp_path), "--run-id", "r", "--no-progress", "--max-failed", "1"]
        )  # fmt: skip
    assert code == 1
    captured = capsys.readouterr()
    assert "every item failed" in captured.err and "HTTP 401" in captured.err
    run = tmp_path / "fake-model" / "r"
    assert all(r["status"] == "failed" and "401" in r["reason"] for r in _records(run))
    for path in run.iterdir():
        text = path.read_text(encoding="utf-8", errors="replace").lower()
        assert SECRET.lower()[:8] not in text and SECRET.lower()[-8:] not in text, path
    streams = (captured.out + captured.err).lower()
    assert SECRET.lower()[:8] not in streams and SECRET.lower()[-8:] not in streams


def test_a_model_echoing_the_key_in_any_case_leaves_no_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    replies = [SECRET.lower(), SECRET.upper()[:12], f"A {SECRET[3:20]}"]

    def reply(request: dict[str, Any]) -> str:
        return replies[len(json.dumps(request)) % len(replies)]

    with FakeChatServer(reply) as server:
        main(
            ["--model", "fake-model", "--base-url", server.base_url, "--tasks", "medqa", "--data", "samples",
             "--output-dir", str(tmp_path), "--run-id", "r", "--no-progress"]
        )  # fmt: skip
    run = tmp_path / "fake-model" / "r"
    assert (run / "samples.jsonl").exists() and (run / "generations.jsonl").exists()
    for path in run.iterdir():
        text = path.read_text(encoding="utf-8", errors="replace").lower()
        for i in range(len(SECRET) - 8):
            assert SECRET.lower()[i : i + 8] not in text, (path, i)
    captured = capsys.readouterr()
    assert SECRET.lower()[:8] not in (captured.out + captured.err).lower()


def test_a_judged_vqarad_run_counts_only_open_items_against_the_judge_budget(
    tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    rows = json.loads((SAMPLES_DIR / "vqarad" / "test.json").read_text())[:4]
    open_questions = [r["question"] for r in rows if str(r.get("answer_type", "")).strip().upper() == "OPEN"]
    assert open_questions and len(open_questions) < len(rows), "the first 4 sample rows need closed and open"
    trigger = open_questions[0]

    def verdict(request: dict[str, Any]) -> str:
        # The judge's reply for one item quotes the key (lower-cased, cut): no verdict, never written.
        if trigger in request["messages"][-1]["content"]:
            return f"I cannot use {SECRET.lower()[:20]}"
        return json.dumps({"verdict": 1})

    with FakeChatServer(verdict) as server:
        judge = ["--judge-base-url", server.base_url, "--judge-model", "j", "--judge-api-key-env",
                 "JUDGE_KEY", "--judge-cache", str(tmp_path / "c.sqlite"),
                 "--judge-retries", "0"]  # fmt: skip
        code, run = _run(tmp_path, "judged", "--tasks", "vqarad", "--limit", "4", *judge)
    records = _records(run)
    open_items = [r for r in records if "judge" in r["scores"]]
    assert len(open_items) == len(open_questions) and len(records) == 4
    unscored = [r for r in open_items if r["scores"]["judge"] is None]
    assert [r["question"] for r in unscored] == [trigger]
    assert code == 1  # 1 of the judged items is over the 5% budget; closed items are not counted
    err = capsys.readouterr().err
    assert f"vqarad: 1/{len(open_questions)} judged items unscored by the judge" in err
    assert REDACTED in unscored[0]["judge_reason"]
    texts = [p.read_text(encoding="utf-8", errors="replace").lower() for p in run.iterdir()]
    cache = (tmp_path / "c.sqlite").read_bytes().decode("utf-8", errors="replace").lower()
    for text in [*texts, cache, err.lower()]:
        for i in range(len(SECRET) - 8):
            assert SECRET.lower()[i : i + 8] not in text


def test_a_fully_judged_vqarad_run_exits_0(tmp_path: Path, tiny_model_path: Path) -> None:
    with FakeChatServer(lambda request: json.dumps({"verdict": 1})) as server:
        code, run = _run(
            tmp_path, "ok", "--tasks", "vqarad", "--limit", "4", "--judge-base-url", server.base_url,
            "--judge-model", "j",
            "--judge-cache", str(tmp_path / "c.sqlite"),
        )  # fmt: skip
    task = json.loads((run / "results.json").read_text())["tasks"]["vqarad"]
    closed = task["categories"]["answer_type"].get("closed", {}).get("n", 0)
    assert closed > 0 and code == 0
    assert server.calls == task["n"] - closed - task["failed"]


def test_env_is_left_clean() -> None:
    assert os.environ.get("OPENAI_API_KEY") is None


# -- issue 24, points 3, 4, 5 and 8: markup in a report, bad files and paths, counts, extraction -----

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "runs" / "qwen2vl-2b" / "fixture-base"


def _run_copy(tmp_path: Path, name: str = "run") -> Path:
    run = tmp_path / name
    shutil.copytree(FIXTURE_RUN, run)
    return run


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line a refused command ends with (after any progress lines), never a traceback."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err), err
    assert [line for line in err if "error" in line.lower()] == err[-1:], err
    assert err[-1].startswith("obv-eval: error: "), err
    return err[-1]


def test_report_embeds_markup_in_any_field_as_valid_json(tmp_path: Path) -> None:
    from test_report import embedded, synthetic_records, write_run

    from obv_eval.report import ASSETS, write_report

    hostile = ["<!-- open", "</script><b>x</b>", '<img src=x onerror="alert(1)">', "a & b \u2028 c"]
    records = synthetic_records(6)
    for record, text in zip(records, hostile * 2, strict=False):
        record.update(question=text, prediction=text, target=text)
    page = write_report(write_run(tmp_path / "r", records, model="m <!--"), tmp_path / "r.html").read_text()
    data = embedded(page)  # json.loads: the page's JSON.parse sees the same valid JSON
    assert [item["q"] for item in data["items"][:4]] == hostile and data["runs"][0]["model"] == "m <!--"
    script = page.split('<script id="report-data" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert not {"<", ">", "&", "\u2028"} & set(script)
    assert "</script" not in (ASSETS / "report.js").read_text().lower()  # the inlined code cannot end early


def test_a_nul_byte_in_a_media_path_fails_only_its_item(tmp_path: Path, tiny_model_path: Path) -> None:
    with pytest.raises(MediaError, match="NUL byte"):
        resolve_media_path("scan\x00.png", tmp_path)
    with pytest.raises(MediaError, match="NUL byte"):
        load_image("scan\x00.png", root=None)
    rows = json.loads((SAMPLES_DIR / "vqarad" / "test.json").read_text())[:3]
    key = "image" if "image" in rows[0] else "image_name"
    rows[1] = {**rows[1], key: "bad\x00name.jpg"}
    shutil.copytree(SAMPLES_DIR / "media" / "vqarad", tmp_path / "data" / "media" / "vqarad")
    (tmp_path / "data" / "vqarad").mkdir(parents=True)
    (tmp_path / "data" / "vqarad" / "test.json").write_text(json.dumps(rows))
    code, run = _run(
        tmp_path, "nul", "--tasks", "vqarad", "--data", str(tmp_path / "data"), "--max-failed", "1"
    )
    assert code == 0
    records = sorted(_records(run), key=lambda r: r["doc_id"])
    assert [r["status"] for r in records] == ["ok", "failed", "ok"]
    assert "NUL byte" in records[1]["reason"]


def test_a_full_disk_is_one_line_and_leaves_every_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    run = _run_copy(tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    real_open = Path.open

    def full_disk_open(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, mode, *args, **kwargs)
        if "w" in mode and self.name.endswith(".partial"):  # every atomic write: the disk fills on write

            def write(_: Any) -> int:
                raise OSError(errno.ENOSPC, "No space left on device", str(self))

            handle.write = write
        return handle

    monkeypatch.setattr(Path, "open", full_disk_open)
    for argv in (["rescore", str(run), "--no-progress"], ["report", str(run), "--no-media"]):
        assert main(argv) == 2
        line = _one_error_line(capsys)
        assert "No space left on device" in line and "free some space" in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing half written, nothing left


def test_a_disk_filling_up_during_a_run_is_one_line_and_the_run_resumes(
    tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    real_append = GenerationLog.append_batch
    appended: list[int] = []

    def fills_up(self: GenerationLog, outputs: Any) -> None:
        if appended:  # the first batch is written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        appended.append(len(outputs))
        real_append(self, outputs)

    monkeypatch.setattr(GenerationLog, "append_batch", fills_up)
    args = ("--tasks", "medqa", "--limit", "3", "--data", "samples", "--batch-size", "1")
    code, run = _run(tmp_path, "full", *args)
    assert code == 2
    line = _one_error_line(capsys)
    assert "generations.jsonl: No space left on device" in line and "resumes" in line
    monkeypatch.setattr(GenerationLog, "append_batch", real_append)
    code, run = _run(tmp_path, "full", *args)
    assert code == 0 and sorted(r["doc_id"] for r in _records(run)) == [0, 1, 2]
    counts = json.loads((run / "results.json").read_text())["provenance"]["run"]
    assert (counts["outputs_reused"], counts["outputs_generated"]) == (appended[0], 3 - appended[0])


def test_out_onto_an_existing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_copy(tmp_path)
    blocker = tmp_path / "taken"
    blocker.write_text("mine")
    for argv in (
        ["report", str(run), "--no-media", "--out", str(blocker / "report.html")],
        ["report", str(run), "--no-media", "--out", str(tmp_path)],  # a folder, not a file
        ["leaderboard", str(run), "--out", str(blocker)],
    ):
        assert main(argv) == 2, argv
        assert str(tmp_path) in _one_error_line(capsys)
    assert blocker.read_text() == "mine"


def _damage(run: Path, how: str) -> None:
    samples = run / "samples.jsonl"
    lines = samples.read_bytes().splitlines(keepends=True)
    if how == "binary results.json":
        (run / "results.json").write_bytes(bytes(range(256)) * 4)
    elif how == "latin-1 samples.jsonl":
        samples.write_bytes(lines[0] + '{"question": "café"}\n'.encode("latin-1") + b"".join(lines[1:]))
    elif how == "duplicated record":
        samples.write_bytes(b"".join(lines) + lines[3])
    elif how == "empty samples.jsonl":
        samples.write_bytes(b"")


@pytest.mark.parametrize("how", ["binary results.json", "latin-1 samples.jsonl", "duplicated record",
                                 "empty samples.jsonl"])  # fmt: skip
@pytest.mark.parametrize("command", ["compare", "report", "regress", "rescore"])
def test_a_damaged_run_folder_is_one_line_in_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, how: str
) -> None:
    good, run = _run_copy(tmp_path, "good"), _run_copy(tmp_path, "bad")
    _damage(run, how)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    argv = {
        "compare": ["compare", str(good), str(run)],
        "report": ["report", str(run), "--no-media", "--out", str(tmp_path / "r.html")],
        "regress": ["regress", "--baseline", str(good), str(run)],
        "rescore": ["rescore", str(run), "--no-progress"],
    }[command]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert str(run) in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # refused: nothing rewritten
    assert not (tmp_path / "r.html").exists()


def test_a_duplicated_record_is_named_with_both_lines(tmp_path: Path) -> None:
    from obv_eval.results import ResultsError, read_samples

    run = _run_copy(tmp_path)
    _damage(run, "duplicated record")
    with pytest.raises(
        ResultsError, match=r"samples.jsonl:101: a second record of item .* \(first at line 4\)"
    ):
        read_samples(run)


@pytest.mark.parametrize("layout", ["json list", "jsonl", "csv"])
def test_a_utf8_bom_is_read_as_such(tmp_path: Path, layout: str) -> None:
    import csv

    rows = _medqa_rows()
    folder = tmp_path / "medqa"
    folder.mkdir()
    if layout == "json list":
        (folder / "test.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(rows, indent=1).encode())
    elif layout == "jsonl":
        (folder / "test.jsonl").write_bytes(
            b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode()
        )
    else:
        with (folder / "test.csv").open("w", newline="", encoding="utf-8-sig") as handle:  # a BOM, as Excel
            names = ["question", "options", "answer_idx", "answer", "meta_info"]
            writer = csv.DictWriter(handle, fieldnames=names, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({**r, "options": json.dumps(r["options"])} for r in rows)
    dataset = load_rows(BENCHMARKS["medqa"], parse_data_source(str(tmp_path)))
    assert len(dataset) == len(rows)
    assert dataset[ROW_ERROR_FIELD] == [None] * len(rows)
    assert dataset["question"] == [r["question"] for r in rows]


def test_a_keyed_pubmedqa_release_file_that_is_cut_or_odd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from obv_eval.release_formats import pubmedqa_test_pmids
    from obv_eval.sources import DataSourceError
    from obv_eval.tasking import read_json_rows

    pmids = sorted(pubmedqa_test_pmids())[:3]
    item = {"QUESTION": "Does it work?", "CONTEXTS": ["It does."], "LABELS": ["R"], "MESHES": [],
            "LONG_ANSWER": "Yes.", "final_decision": "yes"}  # fmt: skip
    keyed = {pmids[0]: item, pmids[1]: "not an item", pmids[2]: item}
    path = tmp_path / "pubmedqa" / "test.json"
    path.parent.mkdir()
    path.write_text(json.dumps(keyed))
    rows = read_json_rows(path)
    assert [bool(r.get(ROW_ERROR_FIELD)) for r in rows] == [False, True, False]  # the odd entry fails alone
    path.write_text(json.dumps(keyed)[:-40])  # cut short
    with pytest.raises(DataSourceError, match=r"test\.json: not a JSON object of rows"):
        read_json_rows(path)
    code = main(
        ["--tasks", "pubmedqa", "--data", str(tmp_path), "--output-dir", str(tmp_path / "o"), "--no-progress"]
    )
    assert code == 2 and str(path) in _one_error_line(capsys)


def test_medqa_options_stored_as_key_value_structs(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from obv_eval.tasks.medqa import utils

    rows = _medqa_rows()[:3]
    structs = [{**r, "options": [{"key": k, "value": v} for k, v in r["options"].items()]} for r in rows]
    structs[2]["options"] = []  # nothing to choose from: fails alone
    (tmp_path / "medqa").mkdir()
    pq.write_table(pa.Table.from_pylist(structs), tmp_path / "medqa" / "test.parquet")
    dataset = load_rows(BENCHMARKS["medqa"], parse_data_source(str(tmp_path)))
    for row, original in zip(dataset, rows[:2], strict=False):
        assert utils.options(row) == {k: v.strip() for k, v in original["options"].items()}
        gold = original["answer_idx"]
        record = utils.process_results(row, [f"The answer is {gold}."])["accuracy"]
        assert record["status"] == "ok" and record["score"] == 1.0
    failed = utils.process_results(dataset[2], ["A"])["accuracy"]
    assert failed["status"] == "failed" and "options" in failed["reason"]
    # a map column (pyarrow's own dict type), which `datasets` cannot hold: one line naming the file
    as_map = pa.array([[("A", "x")]], type=pa.map_(pa.string(), pa.string()))
    table = pa.table({"question": ["q"], "answer_idx": ["A"], "options": as_map})
    pq.write_table(table, tmp_path / "medqa" / "test.parquet")
    from obv_eval.sources import DataSourceError

    with pytest.raises(DataSourceError, match=r"test\.parquet: cannot be read as parquet rows"):
        load_rows(BENCHMARKS["medqa"], parse_data_source(str(tmp_path)))


@pytest.mark.parametrize(
    ("reply", "options", "expected"),
    [
        ("Not the left atrium (A); it is C.", {"A": "Left atrium", "B": "Aorta", "C": "Right atrium"}, "C"),
        ("A: incorrect. B: incorrect. C: correct. D: incorrect.", {k: k.lower() * 3 for k in "ABCD"}, "C"),
        (
            "Pericardial effusion (B) rather than pleural effusion (A).",
            {"A": "Pleural effusion", "B": "Pericardial effusion"},
            "B",
        ),
        ("Yes, no or maybe? Maybe: the trial was small.", None, "maybe"),
        ("A: wrong. B: wrong. C: wrong.", {k: k.lower() * 3 for k in "ABC"}, None),  # rules all out: unparsed
    ],
)
def test_answers_named_after_ruling_others_out(
    reply: str, options: dict[str, str] | None, expected: str | None
) -> None:
    from obv_eval.scoring import extract_choice, extract_yes_no

    extraction = (
        extract_yes_no(reply, allow_maybe=True) if options is None else extract_choice(reply, options)
    )
    assert extraction.value == expected
    assert (extraction.reason is None) == (expected is not None)


# -- images and videos shown otherwise than as stored (issue 24, point 2) ---------------------------


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("16-bit PNG radiograph", "high-bit-depth image"),
        ("16-bit big-endian TIFF", "high-bit-depth image"),
        ("float TIFF", "high-bit-depth image"),
        ("EXIF-rotated JPEG", "EXIF-rotated image"),
        ("rotated video", "rotated video"),
    ],
)
def test_media_shown_otherwise_than_stored_load_right_and_are_warned_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, kind: str
) -> None:
    import numpy as np
    from media_factories import (
        radiograph,
        write_16bit,
        write_exif_jpeg,
        write_float_tiff,
        write_rotated_clip,
    )

    from obv_eval.media import VideoSettings, load_video

    video = case == "rotated video"
    task = "surgeryvqa" if video else "vqarad"
    media = tmp_path / "media" / task
    if video:
        name = "turned_0_2.mp4"
        frames = load_video(write_rotated_clip(media / name, -90), VideoSettings(min_pixels=784)).frames
        assert frames.shape[1:3] == (112, 56)  # stored 112 x 56, shown turned a quarter clockwise
        meta = {"duration": 2, "fps": 4, "frame_count": 8, "resolution": {"width": 112, "height": 56}}
        row = {"id": "q0", "video_id": "turned", "video": name, "timestamp": [0, 2], "question": "What?",
               "answer": "A clip.", "video_metadata": {"original": meta}}  # fmt: skip
        _write_jsonl(tmp_path / task / "test.jsonl", [row, {**row, "id": "q1"}])  # two rows, one file
    else:
        name = {
            "16-bit PNG radiograph": "r.png",
            "16-bit big-endian TIFF": "r.tif",
            "float TIFF": "f.tif",
        }.get(case, "o.jpg")
        if case == "float TIFF":
            write_float_tiff(media / name, np.linspace(-2.0, 5.0, 56 * 84).reshape(56, 84))
        elif case == "EXIF-rotated JPEG":
            write_exif_jpeg(media / name, 6)
        else:
            write_16bit(media / name, radiograph(), big_endian=case.endswith("TIFF"))
        image = load_image(media / name)
        if case == "EXIF-rotated JPEG":
            assert image.size == (168, 280)  # stored 280 x 168
        else:
            assert len(np.unique(np.asarray(image))) >= 200  # contrast kept, not clipped to white
        template = json.loads((SAMPLES_DIR / "vqarad" / "test.json").read_text())[0]
        rows = [{**template, "qid": 900 + i, "image_name": name} for i in range(2)]  # two rows, one file
        (tmp_path / task).mkdir()
        (tmp_path / task / "test.json").write_text(json.dumps(rows))
    # A warning, not a failure: the items still run, and the model sees what a viewer shows.
    assert main(["data", "check", task, "--data", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"warnings (items still run): {kind}: 1" in out
    lines = [line for line in out.splitlines() if "warning:" in line]
    assert len(lines) == 1 and lines[0].startswith(f"  row 0: warning: {kind}: ") and name in lines[0]


# -- issue 24 points 6 and 7: the judge URL checked up front, no part of a secret shown; SIGTERM --------

_BAD_JUDGE_URLS = [
    (f"http://user:{SECRET}@127.0.0.1:8000/v1", "holds credentials"),
    (f"http://{SECRET}@127.0.0.1:8000/v1", "holds credentials"),
    (f"http://127.0.0.1:{SECRET}/v1", "malformed host or port"),
    ("http://127.0.0.1:99999/v1", "malformed host or port"),
    (f"https://judge.example/v1?api_key={SECRET}", "has a query or fragment"),
    (f"ftp://{SECRET}.example/v1", "must start with http:// or https://"),
    (f"http://127.0.0.1:8000/v1 {SECRET}", "not a URL"),
    (f"http:///{SECRET}", "has no host"),
]


def _shows_part_of_the_secret(text: str) -> bool:
    lowered = text.lower()
    return any(SECRET.lower()[i : i + 5] in lowered for i in range(len(SECRET) - 4))


@pytest.mark.parametrize(("url", "needle"), _BAD_JUDGE_URLS)
@pytest.mark.parametrize("given", ["flag", "env"])
def test_a_bad_judge_url_is_one_line_before_the_model_and_shows_no_secret(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    needle: str,
    given: str,
) -> None:
    import obv_eval.runner

    monkeypatch.setattr(obv_eval.runner, "run", lambda *a, **k: pytest.fail("the run started"))
    # qwen2vl-7b has no weights here: were the URL checked after the model, the error would name them
    args = ["--model", "qwen2vl-7b", "--tasks", "surgeryvqa", "--output-dir", str(tmp_path / "out")]
    if given == "flag":
        args += ["--judge-base-url", url]
    else:
        monkeypatch.setenv("OBV_EVAL_JUDGE_BASE_URL", url)
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "--judge-base-url" in err[0] and needle in err[0], err
    assert not _shows_part_of_the_secret(captured.out + captured.err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("url", "needle"), _BAD_JUDGE_URLS)
def test_the_judge_config_refuses_a_bad_url_without_quoting_it(url: str, needle: str) -> None:
    # rescore and judge-agreement (MODEL@URL) build their judges through JudgeConfig: the same rule
    from obv_eval.judge import JudgeConfig

    with pytest.raises(ValueError, match="base URL") as refused:
        JudgeConfig(base_url=url)
    assert needle in str(refused.value) and not _shows_part_of_the_secret(str(refused.value))


def test_a_good_judge_url_is_accepted() -> None:
    from obv_eval.judge import JudgeConfig

    for url in ("http://127.0.0.1:8000/v1", "https://api.openai.com/v1/", "http://[::1]:8000/v1"):
        assert JudgeConfig(base_url=url).endpoint.startswith("http")


def test_sigterm_ends_a_command_in_one_line_with_143(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal
    import time

    import obv_eval.cli

    def terminated_while_working(argv: Any) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        return 0

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setitem(obv_eval.cli.HANDLERS, "models", terminated_while_working)
    started = time.monotonic()
    assert main(["models"]) == 143
    assert time.monotonic() - started < 4
    assert capsys.readouterr().err.strip().splitlines() == ["obv-eval: terminated"]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is main's only


def test_sigterm_during_a_real_run_exits_143_with_terminated(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "obv_eval.cli", "--tasks", "medqa", "--limit", "2", "--no-progress"]
    process = subprocess.Popen(
        [*command, "--output-dir", str(tmp_path)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    first = process.stderr.readline()  # the run's first stage line: arguments checked, the model loading
    assert first.startswith("obv-eval: model tiny-qwen2vl"), first
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 143, rest
    assert rest.strip().splitlines()[-1] == "obv-eval: terminated" and "Traceback" not in rest, rest


# -- issue 24 point 7: names in the leaderboard cannot inject formulas, markup or terminal escapes ------

_HOSTILE_MODEL_NAMES = [
    '=HYPERLINK("http://evil.example","click")',  # a spreadsheet formula
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1+1",  # a tab or CR first: spreadsheets drop it and read the formula
    "\r=1+1",  # and a lone CR would start a new CSV row
    "a|b",  # splits a Markdown cell
    "a\\|b",
    "<script>alert(1)</script>",  # markup in Markdown and HTML
    "$\\frac{1}{0}$",  # mathtext for matplotlib
    "x\x1b[2Jy",  # a terminal escape (clears the screen)
]


def _markdown_cells(line: str) -> list[str]:
    """A GFM table row's cells: split on every | that no backslash escapes."""
    cells, cell, escaped = [], "", False
    for ch in line.strip().strip("|"):
        if ch == "|" and not escaped:
            cells.append(cell)
            cell = ""
        else:
            cell += ch
        escaped = ch == "\\" and not escaped
    return [*cells, cell]


def test_a_hostile_model_name_stays_a_name_in_every_leaderboard_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv
    import html

    for i, name in enumerate(_HOSTILE_MODEL_NAMES):
        run = _run_copy(tmp_path, f"run{i}")
        results = json.loads((run / "results.json").read_text())
        results["model"] = name
        (run / "results.json").write_text(json.dumps(results))
    out = tmp_path / "board"
    runs = [str(tmp_path / f"run{i}") for i in range(len(_HOSTILE_MODEL_NAMES))]
    assert main(["leaderboard", *runs, "--out", str(out), "--no-reference"]) == 0  # the chart too
    printed = capsys.readouterr().out
    assert not any(ch in printed for ch in "\x1b\r\t"), "a control character reached the terminal"
    assert max(map(len, printed.splitlines()[:-1])) <= 100

    with (out / "leaderboard.csv").open(newline="", encoding="utf-8") as handle:
        cells = [row[0] for row in csv.reader(handle)]
    assert len(cells) == 1 + len(_HOSTILE_MODEL_NAMES)  # one row each: no CR started another
    lines = (out / "leaderboard.md").read_text(encoding="utf-8").splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    rows = [line for line in lines if line.startswith("| ") and "20.0 [" in line]
    assert len(rows) == len(_HOSTILE_MODEL_NAMES)
    page = (out / "leaderboard.html").read_text(encoding="utf-8")
    assert "<script" not in page
    for name in _HOSTILE_MODEL_NAMES:
        # CSV: a cell a spreadsheet would run as a formula starts with a quote (OWASP), the rest as written
        expected = "'" + name if name[0] in "=+-@\t\r" else name
        assert "".join(" " if ord(ch) < 32 else ch for ch in expected) in cells, name
        # HTML: escaped, never markup
        assert html.escape(name.strip()) in page, name
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    # Markdown: every row keeps as many cells as the header (the names' | escaped)
    assert all(len(_markdown_cells(row)) == len(_markdown_cells(header)) for row in rows)
