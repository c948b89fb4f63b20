"""Images and videos as the model should see them (issue 24): 16-bit and float images keep their
contrast, EXIF orientation and a video's display rotation are applied, `data check` warns about each."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from media_factories import (
    marked_rgb,
    radiograph,
    write_16bit,
    write_exif_jpeg,
    write_float_tiff,
    write_rotated_clip,
)
from PIL import Image

from obv_eval import media
from obv_eval.benchmarks import BENCHMARKS
from obv_eval.cli import main
from obv_eval.data.check import EXIF_ROTATED, HIGH_BIT_DEPTH, ROTATED_VIDEO, check_benchmark
from obv_eval.data.synth import write_video
from obv_eval.media import (
    DECODE_VERSION,
    ImageSettings,
    VideoSettings,
    clear_cache,
    load_image,
    load_image_with_adjustments,
    load_video,
    smart_resize,
)
from obv_eval.sources import SAMPLES_DIR, DataSource

SMALL = VideoSettings(min_pixels=28 * 28)  # keeps small test clips at their native size (no resize)


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OBV_EVAL_FRAME_CACHE", raising=False)
    clear_cache()


def _levels(image: Image.Image) -> np.ndarray:
    rgb = np.asarray(image)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()  # still grey
    return rgb[..., 0]


def _expected(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    # The documented mapping, written out independently: lo -> 0, hi -> 255, round half to even.
    return np.rint((values.astype(np.float64) - lo) / (hi - lo) * 255).astype(np.uint8)


# -- high bit depth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "big_endian", "mode"),
    [("ramp.png", False, "I;16"), ("ramp.tif", False, "I;16"), ("ramp_be.tif", True, "I;16B")],
)
def test_a_16_bit_radiograph_keeps_its_contrast(
    tmp_path: Path, name: str, big_endian: bool, mode: str
) -> None:
    values = radiograph()  # 280 x 224: on the 28 grid, so no resize blurs the comparison
    path = write_16bit(tmp_path / name, values, big_endian)
    assert Image.open(path).mode == mode
    # What Qwen2-VL's own conversion makes of it (qwen-vl-utils to_rgb = convert("RGB")): white.
    assert np.asarray(Image.open(path).convert("RGB")).mean() > 250
    image, adjusted = load_image_with_adjustments(path)
    levels = _levels(image)
    assert len(np.unique(levels)) >= 200  # the acceptance bound
    assert levels.min() == 0 and levels.max() == 255 and 60 < levels.mean() < 190
    assert adjusted.mode == mode and adjusted.value_range == (300.0, 4000.0) and adjusted.changed
    assert (levels == _expected(values, 300, 4000)).all()
    assert (np.diff(levels[0].astype(int)) >= 0).all()  # the ramp stays a ramp
    assert (levels[len(levels) // 3] > levels[0]).all()  # the dense band stays brighter


def test_a_16_bit_image_is_resized_after_mapping(tmp_path: Path) -> None:
    values = radiograph(height=300, width=500)  # off the 28 grid: resized like any image
    image = load_image(write_16bit(tmp_path / "big.png", values), ImageSettings(max_pixels=100_000))
    assert image.size[::-1] == smart_resize(300, 500, max_pixels=100_000)
    assert len(np.unique(_levels(image))) >= 200


def test_a_float_tiff_maps_its_finite_range_and_special_values(tmp_path: Path) -> None:
    values = np.linspace(-1.5, 2.5, 224 * 280, dtype=np.float32).reshape(224, 280)
    values[0, 0], values[0, 1], values[0, 2] = np.nan, np.inf, -np.inf
    path = write_float_tiff(tmp_path / "float.tif", values)
    assert Image.open(path).mode == "F"
    image, adjusted = load_image_with_adjustments(path)
    levels = _levels(image)
    lo, hi = float(values[0, 3]), float(values[-1, -1])  # the finite extremes
    assert adjusted.value_range == (lo, hi)
    assert list(levels[0, :3]) == [0, 255, 0]  # NaN -> 0, +inf -> 255, -inf -> 0
    assert (levels[0, 3:] == _expected(values[0, 3:], lo, hi)).all()
    assert (levels[1:] == _expected(values[1:], lo, hi)).all()
    assert len(np.unique(levels)) == 256


@pytest.mark.parametrize(
    "source",
    [
        Image.fromarray(np.full((56, 56), 3000, dtype=np.uint16)),
        Image.fromarray(np.full((56, 56), 0.25, dtype=np.float32)),
        Image.fromarray(np.full((56, 56), np.nan, dtype=np.float32)),
    ],
    ids=["16-bit", "float", "all-NaN"],
)
def test_a_constant_image_becomes_black_without_dividing_by_zero(source: Image.Image) -> None:
    with np.errstate(all="raise"):
        image, adjusted = load_image_with_adjustments(source)
    assert adjusted.value_range is not None and adjusted.value_range[0] == adjusted.value_range[1]
    assert not np.asarray(image).any()


def test_a_32_bit_integer_image_in_memory_is_mapped_too() -> None:
    hounsfield = np.linspace(-1000, 3000, 56 * 84).reshape(56, 84).astype(np.int32)  # CT units
    source = Image.fromarray(hounsfield)
    assert source.mode == "I"
    image, adjusted = load_image_with_adjustments(source)
    assert adjusted.value_range == (-1000.0, 3000.0)
    assert (_levels(image) == _expected(hounsfield, -1000, 3000)).all()


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA"])
def test_8_bit_images_are_loaded_exactly_as_before(tmp_path: Path, mode: str) -> None:
    """No tag, 8 bits: the old path (qwen-vl-utils' to_rgb, then a bicubic resize), byte for byte."""
    rgb = np.random.default_rng(3).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    path = tmp_path / f"eight_{mode}.png"
    Image.fromarray(rgb).convert(mode).save(path)
    image, adjusted = load_image_with_adjustments(path)
    opened = Image.open(path)
    old = media._to_rgb(opened)  # the unchanged conversion, applied directly
    height, width = smart_resize(old.height, old.width)
    assert np.array_equal(
        np.asarray(image), np.asarray(old.resize((width, height), Image.Resampling.BICUBIC))
    )
    assert not adjusted.changed and adjusted.mode == mode


# -- EXIF orientation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "corner"),
    [(6, "top-right"), (8, "bottom-left"), (3, "bottom-right"), (1, "top-left")],
)
def test_an_exif_oriented_jpeg_is_shown_as_viewers_show_it(
    tmp_path: Path, orientation: int, corner: str
) -> None:
    path = write_exif_jpeg(tmp_path / f"o{orientation}.jpg", orientation)  # stored 280 x 168, red top-left
    image, adjusted = load_image_with_adjustments(path)
    turned = orientation in (6, 8)
    assert image.size == ((168, 280) if turned else (280, 168))  # on the 28 grid: no resize
    assert adjusted.orientation == orientation and adjusted.stored_size == (280, 168)
    rgb = np.asarray(image).astype(int)
    rows = slice(0, 30) if corner.startswith("top") else slice(-30, None)
    cols = slice(0, 30) if corner.endswith("left") else slice(-30, None)
    red = rgb[rows, cols]
    assert red[..., 0].mean() > 220 and red[..., 1].mean() < 40  # the stored top-left corner is here
    # transformers' own loader (load_image: PIL.ImageOps.exif_transpose, then RGB) sees the same pixels.
    from transformers.image_utils import load_image as transformers_load_image

    assert np.array_equal(np.asarray(image), np.asarray(transformers_load_image(str(path))))


def test_an_exif_oriented_pil_image_is_turned_and_left_alone(tmp_path: Path) -> None:
    source = Image.open(write_exif_jpeg(tmp_path / "o6.jpg", 6))
    image = load_image(source)
    assert image.size == (168, 280) and source.size == (280, 168)
    assert source.getexif()[0x0112] == 6  # the caller's image is untouched


def test_an_exif_oriented_tiff_is_reported_once_turned(tmp_path: Path) -> None:
    path = tmp_path / "o6.tif"
    Image.fromarray(marked_rgb()).save(path, tiffinfo={0x0112: 6})  # Pillow's TIFF loader turns it itself
    image, adjusted = load_image_with_adjustments(path)
    assert image.size == (168, 280) and adjusted.orientation == 6
    assert np.asarray(image)[:30, -30:, 0].mean() > 220  # turned once, not twice


# -- video rotation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("degrees", "quarter_turns", "rotation"), [(-90, -1, 270), (90, 1, 90), (180, 2, 180)]
)
@pytest.mark.parametrize("strategy", ["auto", "full"])
def test_a_rotated_video_is_shown_as_players_show_it(
    tmp_path: Path, degrees: int, quarter_turns: int, rotation: int, strategy: str
) -> None:
    plain = write_video(tmp_path / "plain.mp4", num_frames=8, fps=4, width=112, height=56, seed=11)
    turned = write_rotated_clip(tmp_path / "turned.mp4", degrees)  # same bitstream, display matrix set
    stored = load_video(plain, SMALL)
    digest = media._sha256(turned)
    video = media._decode_video(turned, SMALL, digest, strategy=strategy)
    assert video.rotation == rotation and stored.rotation == 0
    assert video.frames.shape == np.rot90(stored.frames, quarter_turns, axes=(1, 2)).shape
    assert np.array_equal(video.frames, np.rot90(stored.frames, quarter_turns, axes=(1, 2)))
    if degrees == -90:  # ffprobe's -90 (a phone held upright): turned clockwise, top-left goes top-right
        assert video.frames.shape[1:3] == (112, 56)
        assert np.array_equal(video.frames[:, 0, -1], stored.frames[:, 0, 0])


def test_rotation_is_applied_before_the_pixel_budget(tmp_path: Path) -> None:
    """Sizes come from the upright frame: a 224 x 112 clip turned a quarter is sized as 112 x 224."""
    turned = write_rotated_clip(tmp_path / "t.mp4", -90, width=224, height=112)
    budget = VideoSettings(min_pixels=28 * 28, max_pixels=12_544)
    video = load_video(turned, budget)
    assert video.frames.shape[1:3] == media.video_frame_size(224, 112, video.num_frames, budget)


def test_the_disk_cache_key_carries_the_decode_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("OBV_EVAL_FRAME_CACHE", str(cache))
    turned = write_rotated_clip(tmp_path / "t.mp4", -90)
    plain = write_video(tmp_path / "plain.mp4", num_frames=8, fps=4, width=112, height=56, seed=11)
    # An entry written before rotation was applied (no decode version in its name) holds sideways frames.
    stale = load_video(plain, SMALL)
    key = (media._sha256(turned), SMALL.fingerprint())
    cache.mkdir(exist_ok=True)
    np.savez(
        cache / f"{key[0]}_{key[1]}.npz",
        frames=stale.frames,
        indices=np.asarray(stale.indices),
        source_fps=np.float64(stale.source_fps),
        total_frames=np.int64(stale.total_frames),
    )
    clear_cache()
    video = load_video(turned, SMALL)
    assert video.rotation == 270 and video.frames.shape[1:3] == (112, 56)
    assert media.cache_stats()["disk_hits"] == 0
    assert (cache / f"{key[0]}_{key[1]}_d{DECODE_VERSION}.npz").is_file()
    clear_cache()
    again = load_video(turned, SMALL)  # from the new entry: same frames, rotation kept
    assert media.cache_stats()["disk_hits"] == 1
    assert again.rotation == 270 and np.array_equal(again.frames, video.frames)


# -- data check -------------------------------------------------------------------------------------


def _vqarad_copy(root: Path, images: list[str]) -> Path:
    template = json.loads((SAMPLES_DIR / "vqarad" / "test.json").read_text())[0]
    rows = [{**template, "qid": 9000 + i, "image_name": name} for i, name in enumerate(images)]
    (root / "vqarad").mkdir(parents=True, exist_ok=True)
    (root / "vqarad" / "test.json").write_text(json.dumps(rows))
    return root / "media" / "vqarad"


def test_data_check_warns_once_per_file_and_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media_dir = _vqarad_copy(tmp_path, ["ramp.png", "ramp.png", "float.tif", "o6.jpg", "plain.png"])
    write_16bit(media_dir / "ramp.png", radiograph())
    write_float_tiff(media_dir / "float.tif", np.linspace(0, 1, 56 * 56).reshape(56, 56))
    write_exif_jpeg(media_dir / "o6.jpg", 6)
    Image.fromarray(marked_rgb()).save(media_dir / "plain.png")
    report = check_benchmark(BENCHMARKS["vqarad"], DataSource("local", tmp_path), progress=False)
    assert report.ok and report.media_checked == 5
    assert report.warning_counts() == {HIGH_BIT_DEPTH: 2, EXIF_ROTATED: 1}
    assert [row for row, _, _ in report.warnings] == [0, 2, 3]  # row 1 reuses row 0's file: no second line
    assert main(["data", "check", "vqarad", "--data", str(tmp_path), "--no-progress"]) == 0  # warnings only
    out = capsys.readouterr().out
    assert f"warnings (items still run): {EXIF_ROTATED}: 1, {HIGH_BIT_DEPTH}: 2" in out
    assert f"row 0: warning: {HIGH_BIT_DEPTH}: {media_dir / 'ramp.png'}: mode I;16, values 300..4000" in out
    assert f"row 2: warning: {HIGH_BIT_DEPTH}: {media_dir / 'float.tif'}: mode F, values 0..1" in out
    assert f"row 3: warning: {EXIF_ROTATED}: {media_dir / 'o6.jpg'}: EXIF orientation 6" in out
    assert "stored 280x168" in out
    assert "plain.png" not in out and sum("warning:" in line for line in out.splitlines()) == 3


def test_data_check_warns_about_a_rotated_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clips = tmp_path / "media" / "surgeryvqa"
    write_rotated_clip(clips / "turned_0_2.mp4", -90)
    write_video(clips / "plain_0_2.mp4", num_frames=8, fps=4, width=112, height=56, seed=11)
    rows = [
        {"id": f"q{i}", "video_id": name.split("_")[0], "video": name, "timestamp": [0, 2],
         "question": "What is shown?", "answer": "A gallbladder.",
         "video_metadata": {"original": {"duration": 2, "fps": 4, "frame_count": 8,
                                         "resolution": {"width": 112, "height": 56}}}}
        for i, name in enumerate(["turned_0_2.mp4", "turned_0_2.mp4", "plain_0_2.mp4"])
    ]  # fmt: skip
    (tmp_path / "surgeryvqa").mkdir()
    (tmp_path / "surgeryvqa" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "check", "surgeryvqa", "--data", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"warnings (items still run): {ROTATED_VIDEO}: 1" in out
    line = next(line for line in out.splitlines() if ROTATED_VIDEO + ":" in line and "row" in line)
    assert line.startswith("  row 0: warning") and "turned_0_2.mp4" in line and "90 degrees clockwise" in line
    assert os.fspath(clips / "plain_0_2.mp4") not in out


def test_a_malformed_exif_block_leaves_the_image_as_stored(tmp_path: Path) -> None:
    path = tmp_path / "bad_exif.jpg"
    block = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff not a directory"
    Image.fromarray(marked_rgb()).save(path, quality=95, exif=block)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pillow says "Corrupt EXIF data"
        image, adjusted = load_image_with_adjustments(path)
    assert image.size == (280, 168) and adjusted.orientation == 1
