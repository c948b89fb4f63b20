"""Frame policies (obv_eval.frame_policy): native per family, common across families, recorded in results
and the leaderboard, and a bad spec refused in one line."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from conftest import run_obv_eval
from obv_eval.model_adapters.base import media_settings

from obv_eval.backends.base import MediaSettings
from obv_eval.data.synth import write_video
from obv_eval.frame_policy import (
    COMMON_FPS,
    COMMON_MAX_FRAMES,
    COMMON_MAX_PIXELS,
    FramePolicyError,
    parse_frames,
    policy_name,
    recorded_policy,
)
from obv_eval.media import VideoSettings, load_video, sample_frame_indices
from obv_eval.models import Family, families

FAMILIES = sorted(families())


def checkpoint(folder: Path, family: Family) -> Path:
    """A checkpoint folder as far as family lookup reads it: its config.json's model_type."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": family.model_types[0]}))
    return folder


@pytest.mark.parametrize("name", FAMILIES)
def test_native_is_the_family_rule_and_explicit_arguments_override_it(tmp_path: Path, name: str) -> None:
    family = families()[name]
    path = checkpoint(tmp_path / name, family)
    native = media_settings(frames="native", model_path=path)
    assert native.video == family.frame_rule.video() and native.image == family.frame_rule.image()
    assert media_settings(frames="default", model_path=path) == native  # the old spelling, same settings
    assert "frame_policy" not in native.to_dict()  # a native record is as it was before policies
    tuned = media_settings(fps=0.5, max_frames=16, model_path=path).video
    assert (tuned.fps, tuned.max_frames) == (0.5, 16)
    assert (
        tuned.factor == family.frame_rule.video().factor
        and tuned.sampler == family.frame_rule.video().sampler
    )


def test_the_pixel_cap_is_qwen_vl_utils() -> None:
    from obv_eval.frame_policy import MAX_PIXELS
    from obv_eval.media import VIDEO_MAX_PIXELS

    assert MAX_PIXELS == VIDEO_MAX_PIXELS  # written out there so that checking --frames imports no numpy


def test_qwen2vl_native_settings_and_record_are_todays(tmp_path: Path) -> None:
    path = checkpoint(tmp_path / "q", families()["qwen2_vl"])
    before = json.dumps(MediaSettings().to_dict(), sort_keys=True)
    # what the adapters pass today (VideoSettings' defaults), with and without the checkpoint
    for settings in (media_settings(2.0, 4, 768, "native"), media_settings(2.0, 4, 768, model_path=path)):
        assert json.dumps(settings.to_dict(), sort_keys=True) == before


@pytest.mark.parametrize("name", FAMILIES)
def test_common_settings_are_the_spec_in_the_family_factor(tmp_path: Path, name: str) -> None:
    family = families()[name]
    path = checkpoint(tmp_path / name, family)
    common = media_settings(frames="common", model_path=path)
    video = common.video
    assert (video.fps, video.max_frames, video.max_pixels) == (
        COMMON_FPS,
        COMMON_MAX_FRAMES,
        COMMON_MAX_PIXELS,
    )
    assert video.sampler == "qwen-vl-utils" and video.nframes is None and video.resize
    assert video.factor == family.frame_rule.video().factor
    assert common.image == family.frame_rule.image()  # images keep the family's rule
    assert common.to_dict()["frame_policy"] == "common:fps=1,max_frames=32,max_pixels=200704"
    spec = media_settings(frames="common:fps=4,max_frames=8,max_pixels=50176", model_path=path).video
    assert (spec.fps, spec.max_frames, spec.max_pixels) == (4.0, 8, 50176)


def test_common_gives_every_family_the_same_frames_within_the_same_budget(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", num_frames=120, fps=12, width=640, height=360, seed=3)
    for spec, expected in (("common", 10), ("common:fps=4,max_frames=8,max_pixels=50176", 8)):
        budget = parse_frames(spec).max_pixels
        indices: dict[str, tuple[int, ...]] = {}
        for name in FAMILIES:
            family = families()[name]
            settings = media_settings(frames=spec, model_path=checkpoint(tmp_path / name, family)).video
            video = load_video(clip, settings)
            height, width = video.frames.shape[1:3]
            assert height * width <= budget and height % settings.factor == 0 == width % settings.factor
            assert list(video.indices) == sample_frame_indices(120, 12.0, settings)
            indices[name] = video.indices
        assert len(set(indices.values())) == 1, indices  # the same moments of the clip for every family
        assert len(next(iter(indices.values()))) == expected
    native = media_settings(model_path=checkpoint(tmp_path / "qwen2_vl", families()["qwen2_vl"])).video
    assert load_video(clip, native).num_frames == 20  # Qwen2-VL's own rule: 2 fps


def test_the_recorded_policy_is_worked_out_from_the_media_settings() -> None:
    family = {"backend": {"model_family": {"frame_rule": "qwen-vl-utils-0.0.14"}}}
    native = {"media": media_settings(2.0, 4, 768).to_dict(), **family}
    assert recorded_policy(native) == {"policy": "native", "rule": "qwen-vl-utils-0.0.14"}
    for budget in (None, 512):  # the training frames, with or without a token budget
        train = {"media": media_settings(2.0, 4, 768, "train", budget).to_dict()}
        assert recorded_policy(train) == {"policy": "train"}
    common = {"media": media_settings(frames="common:max_frames=8").to_dict(), **family}
    assert recorded_policy(common) == {"policy": "common", "fps": 1.0, "max_frames": 8, "max_pixels": 200704}
    assert [policy_name(s) for s in ("native", "default", "train", "common:fps=2")] == [
        "native",
        "native",
        "train",
        "common",
    ]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("sometimes", "expected native (default), train, common"),
        ("common:fps=0", "fps must be a positive number"),
        ("common:fps=nan", "fps must be a positive number"),
        ("common:max_frames=1", "max_frames must be between 2 and 768"),
        ("common:max_pixels=10", "max_pixels must be between 1024 and 602112"),
        ("common:max_pixels=9999999", "max_pixels must be between 1024 and 602112"),
        ("common:fps=two", "fps must be a number"),
        ("common:size=3", "'size=3' is not one of fps=F, max_frames=N, max_pixels=P"),
        ("common:fps=1,fps=2", "fps is given twice"),
        ("native:fps=1", "expected native (default), train, common"),
    ],
)
def test_a_bad_spec_is_refused_in_one_line(spec: str, words: str) -> None:
    with pytest.raises(FramePolicyError, match="frames") as refused:
        parse_frames(spec)
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_model_args_spelling_and_clashes() -> None:
    from lmms_eval.utils import simple_parse_args_string

    # lmms-eval splits --model_args at commas: ';' separates the spec's keys there
    args = simple_parse_args_string("pretrained=tiny-qwen2vl,frames=common:fps=2;max_frames=8")
    settings = media_settings(frames=args["frames"])
    assert settings.video.max_frames == 8
    assert pickle.loads(pickle.dumps(settings)).to_dict() == settings.to_dict()  # as scale-out actors get it
    assert parse_frames(args["frames"]).spec == "common:fps=2,max_frames=8,max_pixels=200704"
    with pytest.raises(FramePolicyError, match="fps and frames=common both set the frames"):
        media_settings(fps=3.0, frames="common")
    with pytest.raises(FramePolicyError, match="max_visual_tokens does not combine"):
        media_settings(frames="common", max_visual_tokens=512)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--frames", "common:fps=-1"], "--frames: frames 'common:fps=-1': fps must be a positive number"),
        (["--frames", "common", "--max-visual-tokens", "512"], "--max-visual-tokens does not combine"),
    ],
)
def test_the_cli_refuses_a_bad_spec_in_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    from obv_eval.cli import main

    assert main(["--tasks", "surgeryvqa", "--output-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("obv-eval: error: ") and words in err[0], err
    assert not any(tmp_path.iterdir())  # refused before anything was written


def _run(out: Path, model: str, run_id: str, *frames: str) -> dict[str, Any]:
    run_obv_eval("--model", model, "--tasks", "surgeryvqa", "--limit", "1", "--output-dir", str(out),
                 "--run-id", run_id, "--no-progress", *frames)  # fmt: skip
    folder = out / model / run_id
    results: dict[str, Any] = json.loads((folder / "results.json").read_text())
    results["records"] = [json.loads(line) for line in (folder / "samples.jsonl").open()]
    return results


def test_common_runs_record_their_policy_and_the_leaderboard_flags_a_mix(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    from obv_eval.leaderboard import FRAME_POLICY_MIXED, load_runs, write_leaderboard

    out = tmp_path / "runs"
    spec = "common:fps=1,max_frames=4,max_pixels=50176"
    common = {m: _run(out, m, "common", "--frames", spec) for m in ("tiny-qwen2vl", "tiny-qwen2.5-vl")}
    native = _run(out, "tiny-qwen2vl", "native")
    for results in common.values():
        provenance = results["provenance"]
        assert provenance["frame_policy"] == {
            "policy": "common",
            "fps": 1.0,
            "max_frames": 4,
            "max_pixels": 50176,
        }
        assert provenance["media"]["frame_policy"] == spec
        assert provenance["backend"]["model_family"]["frame_policy"] == "common"
        assert recorded_policy(provenance) == provenance["frame_policy"]
    assert native["provenance"]["frame_policy"] == {"policy": "native", "rule": "qwen-vl-utils-0.0.14"}
    # the same number of frames for both families; the native rule (2 fps) samples others
    frames = {m: [r["frames"] for r in results["records"]] for m, results in common.items()}
    assert frames["tiny-qwen2vl"] == frames["tiny-qwen2.5-vl"] and frames["tiny-qwen2vl"][0] == [4]
    assert [r["frames"] for r in native["records"]] != frames["tiny-qwen2vl"]

    runs = {(r.model, r.run_id): r for r in load_runs([out])}
    same = [runs[("tiny-qwen2vl", "common")], runs[("tiny-qwen2.5-vl", "common")]]
    mixed = [runs[("tiny-qwen2vl", "native")], runs[("tiny-qwen2.5-vl", "common")]]
    text = write_leaderboard(tmp_path / "same", same, reference=False)["markdown"].read_text()
    assert "common (1 fps, at most 4 frames, 50176 pixels a frame)" in text and FRAME_POLICY_MIXED not in text
    paths = write_leaderboard(tmp_path / "mixed", mixed, reference=False)
    for kind in ("markdown", "html", "text"):
        shown = " ".join(paths[kind].read_text().split())  # the terminal text wraps its lines
        assert FRAME_POLICY_MIXED in shown, kind
        assert "tiny-qwen2vl (native): native (qwen-vl-utils-0.0.14)" in shown, kind

    # compare says so too: the same model under two policies differs by what it was shown
    from obv_eval.cli import main

    native_run, common_run = out / "tiny-qwen2vl" / "native", out / "tiny-qwen2vl" / "common"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["compare", str(native_run), str(common_run)]) == 0
    shown = " ".join(printed.getvalue().split())
    assert "note: the runs used different frame policies" in shown
    assert "native (qwen-vl-utils-0.0.14); tiny-qwen2vl: common (1 fps" in shown
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["compare", str(common_run), str(out / "tiny-qwen2.5-vl" / "common")]) == 0
    assert "different frame policies" not in printed.getvalue()


def test_the_adapters_give_a_family_its_native_rule_and_a_common_policy(tmp_path: Path) -> None:
    """lmms-eval's obv_hf (what obv-eval runs) on a tiny twin whose native rule is not qwen-vl-utils'
    defaults: frames=native gives the family's rule, fps= overrides it, frames=common the common one."""
    from obv_eval.model_adapters.hf import ObvHF

    family = next(f for f in families().values() if f.tiny_name and f.frame_rule.video() != VideoSettings())
    native = ObvHF(pretrained=family.tiny_name, progress=False).backend.media
    assert native.video == family.frame_rule.video() and native.image == family.frame_rule.image()
    tuned = ObvHF(pretrained=family.tiny_name, fps=1, progress=False).backend.media.video
    assert tuned == dataclasses.replace(family.frame_rule.video(), fps=1.0)
    spec = "common:max_frames=8"
    common = ObvHF(pretrained=family.tiny_name, frames=spec, progress=False).backend.media
    assert common.video == media_settings(frames=spec, model_path=checkpoint(tmp_path, family)).video
    assert common.video.factor == family.frame_rule.video().factor


def test_a_served_models_family_gives_its_native_rule_to_the_openai_adapter() -> None:
    """obv_openai against a vLLM server: the served model's family (here named by family=, as for a server
    whose model name no registry entry knows) picks the frames it is sent; unknown: qwen-vl-utils'."""
    from obv_eval.model_adapters.openai import ObvOpenAI

    internvl = families()["internvl"]
    served = ObvOpenAI(
        pretrained="my-served-model", base_url="http://127.0.0.1:9/v1", server="vllm", family="internvl"
    )
    assert served.backend.media.video == internvl.frame_rule.video()
    assert served.backend.family is internvl
    by_name = ObvOpenAI(pretrained="internvl3-8b", base_url="http://127.0.0.1:9/v1", server="vllm")
    assert by_name.backend.media.video == internvl.frame_rule.video()  # the registry entry's family
    unknown = ObvOpenAI(pretrained="my-served-model", base_url="http://127.0.0.1:9/v1", server="vllm")
    assert unknown.backend.media.video == VideoSettings() and unknown.backend.family is None
