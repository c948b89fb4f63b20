"""Tests for obv_eval.media (frame sampling, sizing, decoding, cache, errors) and obv_eval.data.synth."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import itertools
import json
import shutil
import types
import uuid
from pathlib import Path

import av
import numpy as np
import pytest
from media_factories import use_pyav_for_qwen_vl_utils
from PIL import Image

from obv_eval import media
from obv_eval.data.synth import marker_level, read_marker, synthetic_frame, write_image, write_video
from obv_eval.media import (
    ImageSettings,
    MediaError,
    VideoSettings,
    cache_stats,
    clear_cache,
    frame_count,
    load_image,
    load_video,
    resolve_media_path,
    sample_frame_indices,
    smart_resize,
    video_frame_size,
)


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OBV_EVAL_FRAME_CACHE", raising=False)
    monkeypatch.delenv("OBV_EVAL_FRAME_CACHE_BYTES", raising=False)
    clear_cache()


# ---------------------------------------------------------------------------------------------------
# Frame indices. Expected values worked out by hand: n = floor_2(clamp(total / video_fps * fps,
# ceil_2(min_frames), floor_2(max_frames), total)), indices = round(i * (total - 1) / (n - 1)).

INDEX_TABLE = [
    # (total, video_fps, settings, count, indices) ; comment says why the row is there
    # 10 s at 30 fps, defaults: 2 fps -> 20 frames, step 299/19 = 15.74
    (
        300,
        30.0,
        VideoSettings(),
        20,
        [0, 16, 31, 47, 63, 79, 94, 110, 126, 142, 157, 173, 189, 205, 220, 236, 252, 268, 283, 299],
    ),
    # 3 frames: min_frames 4 is clamped to the 3 frames there are, then floored to 2
    (3, 30.0, VideoSettings(), 2, [0, 2]),
    # 1 s at 4 fps: 2 wanted, raised to min_frames 4 = every frame
    (4, 4.0, VideoSettings(), 4, [0, 1, 2, 3]),
    # 4.5 s at 10 fps: 9 wanted is odd -> floored to 8, step 44/7 = 6.29
    (45, 10.0, VideoSettings(), 8, [0, 6, 13, 19, 25, 31, 38, 44]),
    # 100 s at 30 fps wants 200, capped at max_frames 8, step 2999/7 = 428.43
    (3000, 30.0, VideoSettings(max_frames=8), 8, [0, 428, 857, 1285, 1714, 2142, 2571, 2999]),
    # odd max_frames 7 floors to 6, step 299/5 = 59.8
    (300, 30.0, VideoSettings(max_frames=7), 6, [0, 60, 120, 179, 239, 299]),
    # odd min_frames 5 ceils to 6 (2 s at 30 fps wants only 4), step 59/5 = 11.8
    (60, 30.0, VideoSettings(min_frames=5), 6, [0, 12, 24, 35, 47, 59]),
    # nframes 7 rounds (half to even) to 8, step 99/7 = 14.14
    (100, 25.0, VideoSettings(nframes=7), 8, [0, 14, 28, 42, 57, 71, 85, 99]),
    # nframes 5 rounds (half to even) to 4, step 3
    (10, 25.0, VideoSettings(nframes=5), 4, [0, 3, 6, 9]),
    # sampling faster than the source (8 fps from 4 fps) is capped at every frame
    (8, 4.0, VideoSettings(fps=8.0), 8, [0, 1, 2, 3, 4, 5, 6, 7]),
    # 1 fps from 30 fps over 5 s: 5 -> 4, step 149/3 = 49.67
    (150, 30.0, VideoSettings(fps=1.0), 4, [0, 50, 99, 149]),
]


@pytest.mark.parametrize(("total", "video_fps", "settings", "count", "indices"), INDEX_TABLE)
def test_frame_indices_table(
    total: int, video_fps: float, settings: VideoSettings, count: int, indices: list[int]
) -> None:
    assert frame_count(total, video_fps, settings) == count
    assert sample_frame_indices(total, video_fps, settings) == indices


def test_long_clip_is_capped_at_768_frames() -> None:
    # One hour at 30 fps wants 7,200 frames at 2 fps; Qwen2-VL's default cap is 768.
    indices = sample_frame_indices(108_000, 30.0, VideoSettings())
    assert len(indices) == 768
    assert indices[0] == 0 and indices[-1] == 107_999
    assert all(b > a for a, b in itertools.pairwise(indices))


def test_frame_count_rejects_impossible_requests() -> None:
    with pytest.raises(MediaError, match="at least 2"):
        frame_count(1, 30.0, VideoSettings())
    with pytest.raises(MediaError, match="at most 10"):
        frame_count(10, 30.0, VideoSettings(nframes=12))
    with pytest.raises(MediaError, match="frame rate"):
        frame_count(100, 0.0, VideoSettings())


def test_indices_match_qwen_vl_utils() -> None:
    vp = pytest.importorskip("qwen_vl_utils.vision_process")
    torch = pytest.importorskip("torch")
    cases = [
        (total, video_fps, fps, min_frames, max_frames)
        for total in (2, 3, 5, 17, 48, 121, 299, 1000, 4501, 12_000)
        for video_fps in (1.0, 4.0, 23.976, 30.0, 60.0)
        for fps in (0.5, 1.0, 2.0, 8.0)
        for min_frames, max_frames in ((4, 768), (5, 9), (2, 64))
    ]
    for total, video_fps, fps, min_frames, max_frames in cases:
        settings = VideoSettings(fps=fps, min_frames=min_frames, max_frames=max_frames)
        ele = {"fps": fps, "min_frames": min_frames, "max_frames": max_frames}
        expected_n = vp.smart_nframes(ele, total_frames=total, video_fps=video_fps)
        assert frame_count(total, video_fps, settings) == expected_n, (total, video_fps, ele)
        expected = torch.linspace(0, total - 1, expected_n).round().long().tolist()
        assert sample_frame_indices(total, video_fps, settings) == expected, (total, video_fps, ele)
    for total, nframes in itertools.product((4, 9, 30, 301), (2, 3, 4, 5, 7, 30)):
        if round(nframes / 2) * 2 > total:
            continue
        expected_n = vp.smart_nframes({"nframes": nframes}, total_frames=total, video_fps=30.0)
        assert frame_count(total, 30.0, VideoSettings(nframes=nframes)) == expected_n


# ---------------------------------------------------------------------------------------------------
# Sizes


@pytest.mark.parametrize(
    ("height", "width", "min_pixels", "max_pixels", "expected"),
    [
        (56, 56, 3136, 12_845_056, (56, 56)),  # already on the 28 grid and inside the bounds
        (100, 200, 3136, 12_845_056, (112, 196)),  # 3.57 -> 4 and 7.14 -> 7 patches
        (56, 84, 100_352, 602_112, (280, 392)),  # tiny video frame scaled up to the video minimum
        (1080, 1920, 3136, 602_112, (560, 1008)),  # HD frame scaled down under the per-frame cap
        (10, 10, 3136, 12_845_056, (56, 56)),  # below min: sqrt(3136/100) = 5.6 -> ceil to 2 patches
    ],
)
def test_smart_resize_table(
    height: int, width: int, min_pixels: int, max_pixels: int, expected: tuple[int, int]
) -> None:
    assert smart_resize(height, width, 28, min_pixels, max_pixels) == expected


def test_smart_resize_rejects_extreme_aspect_ratio() -> None:
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2100)


def test_smart_resize_matches_qwen_vl_utils() -> None:
    vp = pytest.importorskip("qwen_vl_utils.vision_process")
    sizes = [1, 27, 28, 29, 42, 56, 99, 224, 480, 481, 720, 1080, 1920, 4000]
    bounds = [(3136, 12_845_056), (100_352, 602_112), (3136, 50_176), (100_352, 235_200.0)]
    for height, width in itertools.product(sizes, sizes):
        if max(height, width) / min(height, width) > 200:
            continue
        for lo, hi in bounds:
            assert smart_resize(height, width, 28, lo, hi) == vp.smart_resize(height, width, 28, lo, hi)


def test_video_frame_size_shares_the_budget_between_frames() -> None:
    settings = VideoSettings()
    # 8 frames: the per-frame cap (768 tokens) binds.
    assert video_frame_size(1080, 1920, 8, settings) == (560, 1008)
    # 768 frames: 90,316,800 / 768 * 2 = 235,200 pixels per frame.
    assert video_frame_size(1080, 1920, 768, settings) == (336, 644)
    # A small total budget never pushes the cap below 1.05 x min_pixels (105,369).
    assert video_frame_size(1080, 1920, 100, VideoSettings(total_pixels=1_000_000)) == (224, 420)
    # max_pixels only lowers the budget.
    assert video_frame_size(1080, 1920, 8, VideoSettings(min_pixels=3136, max_pixels=50_176)) == (168, 280)


def test_settings_validation_and_fingerprints() -> None:
    with pytest.raises(ValueError, match="per-frame cap"):
        VideoSettings(max_pixels=media.VIDEO_MAX_PIXELS + 1)
    with pytest.raises(ValueError, match="min_frames"):
        VideoSettings(min_frames=10, max_frames=4)
    with pytest.raises(ValueError, match="fps"):
        VideoSettings(fps=0.0)
    with pytest.raises(ValueError, match="min_pixels"):
        ImageSettings(min_pixels=10, max_pixels=5)
    assert VideoSettings().fingerprint() == VideoSettings().fingerprint()
    assert VideoSettings(fps=1.0).fingerprint() != VideoSettings().fingerprint()
    assert VideoSettings(nframes=8).fingerprint() != VideoSettings().fingerprint()
    assert ImageSettings().fingerprint() != ImageSettings(max_pixels=50_176).fingerprint()
    # Pinned: a change here silently invalidates every on-disk frame cache, so make it on purpose.
    assert VideoSettings().fingerprint() == "b49fd31cea256dad"


def test_defaults_are_qwen_vl_utils_defaults() -> None:
    vp = pytest.importorskip("qwen_vl_utils.vision_process")
    settings = VideoSettings()
    assert settings.fps == vp.FPS
    assert settings.min_frames == vp.FPS_MIN_FRAMES
    assert settings.max_frames == vp.FPS_MAX_FRAMES
    assert settings.min_pixels == vp.VIDEO_MIN_TOKEN_NUM * 28 * 28
    assert settings.max_pixels == vp.VIDEO_MAX_TOKEN_NUM * 28 * 28
    assert settings.total_pixels == int(vp.MODEL_SEQ_LEN * 28 * 28 * 0.9)
    assert ImageSettings().min_pixels == vp.IMAGE_MIN_TOKEN_NUM * 28 * 28
    assert ImageSettings().max_pixels == vp.IMAGE_MAX_TOKEN_NUM * 28 * 28


# ---------------------------------------------------------------------------------------------------
# Decoding real files


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    # 3 s at 10 fps, 84x56: defaults sample 6 frames.
    return write_video(tmp_path / "clip.mp4", num_frames=30, fps=10, width=84, height=56, seed=7)


def test_load_video_samples_the_right_frames(clip: Path) -> None:
    video = load_video(clip)
    assert video.indices == (0, 6, 12, 17, 23, 29)  # step 29/5 = 5.8
    assert video.frames.shape == (6, 280, 392, 3)  # (56, 84) scaled up to the 100,352-pixel minimum
    assert video.frames.dtype == np.uint8
    # Each frame's marker block encodes its source index: these are the frames that were sampled.
    assert [read_marker(frame) for frame in video.frames] == [0, 6, 12, 17, 23, 29]
    assert video.total_frames == 30
    assert video.source_fps == pytest.approx(10.0)
    assert video.duration_s == pytest.approx(3.0)
    assert video.sampled_fps == pytest.approx(2.0)
    assert video.content_hash == hashlib.sha256(clip.read_bytes()).hexdigest()
    assert not video.frames.flags.writeable  # shared through the cache


def test_load_video_keeps_native_size_under_a_small_budget(clip: Path) -> None:
    settings = VideoSettings(nframes=4, min_pixels=784, max_pixels=784 * 6)
    video = load_video(clip, settings)
    assert video.indices == (0, 10, 19, 29)
    assert video.frames.shape == (4, 56, 84, 3)
    assert video.sampled_fps == pytest.approx(4 / 3)
    # No resize: the marker block comes back within H.264's small error of the level written.
    for frame, index in zip(video.frames, video.indices, strict=True):
        assert abs(int(frame[28, 20, 0]) - marker_level(index)) <= 3
    # And the moving disc is where the synthetic frame put it (coarse check on the right half).
    expected = synthetic_frame(29, 84, 56, seed=7).astype(int)
    assert np.abs(video.frames[-1].astype(int) - expected).mean() < 4


def test_load_video_counts_frames_when_the_container_has_no_count(clip: Path, tmp_path: Path) -> None:
    # Matroska headers carry no frame count (stream.frames == 0): frames must be counted.
    mkv = tmp_path / "clip.mkv"
    with av.open(str(clip)) as source, av.open(str(mkv), "w") as target:
        in_stream = source.streams.video[0]
        out_stream = target.add_stream_from_template(in_stream)
        for packet in source.demux(in_stream):
            if packet.dts is not None:
                packet.stream = out_stream
                target.mux(packet)
    with av.open(str(mkv)) as container:
        assert container.streams.video[0].frames == 0
    video = load_video(mkv)
    assert video.total_frames == 30
    assert video.indices == (0, 6, 12, 17, 23, 29)
    assert [read_marker(frame) for frame in video.frames] == [0, 6, 12, 17, 23, 29]


def test_load_video_matches_qwen_vl_utils_fetch_video(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vp = pytest.importorskip("qwen_vl_utils.vision_process")
    torch = pytest.importorskip("torch")

    use_pyav_for_qwen_vl_utils(vp, monkeypatch)  # torchvision 0.29 dropped io.read_video
    cases: list[tuple[dict[str, float], VideoSettings]] = [
        ({}, VideoSettings()),
        ({"nframes": 8}, VideoSettings(nframes=8)),
        (
            {"fps": 1.0, "min_pixels": 3136, "max_pixels": 12_544},
            VideoSettings(fps=1.0, max_pixels=12_544, min_pixels=3136),
        ),
    ]
    for ele, settings in cases:
        (reference, metadata), sample_fps = vp.fetch_video(
            {"video": str(clip), **ele}, return_video_sample_fps=True, return_video_metadata=True
        )
        video = load_video(clip, settings)
        assert list(video.indices) == metadata["frames_indices"].tolist()
        assert video.sampled_fps == pytest.approx(sample_fps)
        theirs = reference.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        assert theirs.shape == video.frames.shape
        # PIL's and torchvision's bicubic filters differ by a grey level or two at most.
        assert np.abs(theirs.astype(int) - video.frames.astype(int)).max() <= 3


# ---------------------------------------------------------------------------------------------------
# Cache


def test_second_load_hits_the_cache(clip: Path, tmp_path: Path) -> None:
    first = load_video(clip)
    assert cache_stats()["decodes"] == 1
    second = load_video(clip)
    assert second is first
    # Same bytes under another name: keyed by content, so still no decode.
    copy = tmp_path / "renamed.mp4"
    shutil.copyfile(clip, copy)
    assert load_video(copy) is first
    stats = cache_stats()
    assert (stats["decodes"], stats["hits"], stats["misses"], stats["entries"]) == (1, 2, 1, 1)
    assert stats["bytes"] == first.frames.nbytes
    # Different settings are a different entry.
    load_video(clip, VideoSettings(nframes=4))
    assert cache_stats()["decodes"] == 2


def test_cache_evicts_least_recently_used_within_the_byte_budget(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = VideoSettings(nframes=4, min_pixels=784, max_pixels=784 * 6)  # 4 x 56 x 84 x 3 = 56,448 bytes
    other = write_video(tmp_path / "other.mp4", num_frames=30, fps=10, width=84, height=56, seed=8)
    monkeypatch.setenv("OBV_EVAL_FRAME_CACHE_BYTES", str(56_448 + 1000))
    load_video(clip, small)
    load_video(other, small)  # evicts clip
    assert cache_stats()["entries"] == 1
    load_video(clip, small)
    assert cache_stats()["decodes"] == 3
    load_video(clip, small)
    assert cache_stats()["decodes"] == 3


def test_disk_cache_survives_clearing_memory(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBV_EVAL_FRAME_CACHE", str(tmp_path / "frames"))
    first = load_video(clip)
    assert len(list((tmp_path / "frames").glob("*.npz"))) == 1
    clear_cache()
    again = load_video(clip)
    stats = cache_stats()
    assert (stats["decodes"], stats["disk_hits"]) == (0, 1)
    assert np.array_equal(again.frames, first.frames)
    assert (again.indices, again.total_frames, again.sampled_fps) == (
        first.indices,
        first.total_frames,
        first.sampled_fps,
    )


def test_decoding_is_deterministic(clip: Path) -> None:
    first = load_video(clip).frames.copy()
    clear_cache()
    assert np.array_equal(load_video(clip).frames, first)


# ---------------------------------------------------------------------------------------------------
# Errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"not found: .*nope\.mp4; check the path and the media root"):
        load_video("nope.mp4", root=tmp_path)


def test_zero_length_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(MediaError, match=r"empty \(0 bytes\).*re-create it"):
        load_video(tmp_path / "empty.mp4")


def test_garbage_bytes_named_mp4(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match="corrupt or not a video"):
        load_video(garbage)


def test_file_without_video_stream(tmp_path: Path) -> None:
    audio = tmp_path / "audio.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(MediaError, match="no video stream"):
        load_video(audio)


def test_single_frame_video(tmp_path: Path) -> None:
    one = write_video(tmp_path / "one.mp4", num_frames=1, fps=4, width=56, height=56, seed=0)
    with pytest.raises(MediaError, match="at least 2"):
        load_video(one)


def test_path_escaping_the_media_root(tmp_path: Path, clip: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    with pytest.raises(MediaError, match="escapes the media root"):
        load_video("../clip.mp4", root=root)
    with pytest.raises(MediaError, match="escapes the media root"):
        load_image(str(clip), root=root)  # absolute path outside the root


def test_wrong_kind_of_media(tmp_path: Path, clip: Path) -> None:
    png = write_image(tmp_path / "a.png", 56, 56, seed=0)
    with pytest.raises(MediaError, match="is an image, not a video; load it with load_image"):
        load_video(png)
    with pytest.raises(MediaError, match="is a video, not an image; load it with load_video"):
        load_image(clip)
    with pytest.raises(MediaError, match="unsupported image input of type int"):
        load_image(3)  # type: ignore[arg-type]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(MediaError, match="corrupt or not an image"):
        load_image(broken)


def test_resolve_media_path(tmp_path: Path) -> None:
    root = tmp_path / "media"
    assert resolve_media_path("a/b.mp4", root) == root / "a" / "b.mp4"
    assert resolve_media_path("a/../b.mp4", root) == root / "b.mp4"  # '..' that stays inside is fine
    assert resolve_media_path("file://" + str(root / "c.png"), root) == root / "c.png"
    assert resolve_media_path("rel/x.mp4", None) == Path("rel/x.mp4")
    with pytest.raises(MediaError, match="empty media path"):
        resolve_media_path("", root)


# ---------------------------------------------------------------------------------------------------
# Images


def test_load_image_resizes_to_the_28_grid(tmp_path: Path) -> None:
    path = write_image(tmp_path / "scan.png", 100, 60, seed=3)
    image = load_image("scan.png", root=tmp_path)
    assert image.mode == "RGB"
    assert image.size == (112, 56)  # width 100 -> 4 patches, height 60 -> 2 patches
    # Over max: scale by sqrt(6000 / 2352) = 1.6, then floor to the grid: 60 -> 28, 100 -> 56.
    small = load_image(path, ImageSettings(min_pixels=784, max_pixels=784 * 3))
    assert small.size == (56, 28)


def test_load_image_composites_transparency_on_white_and_leaves_input_alone() -> None:
    rgba = Image.new("RGBA", (56, 56), (200, 10, 10, 0))
    out = load_image(rgba)
    assert out.getpixel((10, 10)) == (255, 255, 255)
    assert rgba.mode == "RGBA" and rgba.getpixel((10, 10)) == (200, 10, 10, 0)


def test_load_image_matches_qwen_vl_utils_fetch_image(tmp_path: Path) -> None:
    vp = pytest.importorskip("qwen_vl_utils.vision_process")
    for width, height, name in [(100, 60, "a.png"), (57, 83, "b.jpg"), (300, 20, "c.png")]:
        path = write_image(tmp_path / name, width, height, seed=width)
        ours = load_image(path)
        theirs = vp.fetch_image({"image": str(path)})
        assert ours.size == theirs.size
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))


# ---------------------------------------------------------------------------------------------------
# Synthetic media


def test_synthetic_media_is_byte_identical_for_the_same_arguments(tmp_path: Path) -> None:
    a = write_video(tmp_path / "a.mp4", num_frames=12, fps=4, width=56, height=56, seed=1)
    b = write_video(tmp_path / "b.mp4", num_frames=12, fps=4, width=56, height=56, seed=1)
    c = write_video(tmp_path / "c.mp4", num_frames=12, fps=4, width=56, height=56, seed=2)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    for name in ("x.png", "y.png", "x.jpg", "y.jpg"):
        write_image(tmp_path / name, 64, 48, seed=5)
    assert (tmp_path / "x.png").read_bytes() == (tmp_path / "y.png").read_bytes()
    assert (tmp_path / "x.jpg").read_bytes() == (tmp_path / "y.jpg").read_bytes()
    with av.open(str(a)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height, stream.frames) == ("h264", 56, 56, 12)
        assert stream.format.name == "yuv420p"


def test_synthetic_video_rejects_odd_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even width and height"):
        write_video(tmp_path / "odd.mp4", num_frames=4, fps=4, width=55, height=56, seed=0)


# ---------------------------------------------------------------------------------------------------
# Bundled sample data (tasks/samples, written by scripts/make_samples.py)

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "tasks" / "samples"
SMALL = VideoSettings(min_pixels=784, max_pixels=784 * 8)  # keeps the decode checks fast


def _rows(name: str, split: str = "test") -> list[dict]:
    with (SAMPLES / name / f"{split}.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@functools.cache
def _make_samples() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("make_samples", REPO / "scripts" / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p.name != "README.md"}


def test_bundled_samples_are_reproducible(tmp_path: Path) -> None:
    """The synthetic samples (no real data needed): two builds are byte-identical, their rows equal the
    committed ones, and they are every committed sample file that is not a real release's."""
    make = _make_samples()
    make.build(tmp_path / "a", realdata=None)
    make.build(tmp_path / "b", realdata=None)
    files = sorted(_files(tmp_path / "a"))
    assert set(files) == {rel for rel in _files(SAMPLES) if not make._is_real(rel)}
    assert len(files) > 20
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
        # Rows must match the committed copy exactly; media bytes depend on the encoder build, so the
        # committed media are checked by decoding them (below) rather than byte for byte.
        if rel.suffix == ".jsonl":
            committed = SAMPLES / rel
            assert committed.read_bytes() == (tmp_path / "a" / rel).read_bytes(), (
                f"{rel} is stale: run python scripts/make_samples.py"
            )


def test_bundled_real_samples_are_rebuilt_from_the_releases(tmp_path: Path, realdata: Path) -> None:
    """The real samples (VQA-RAD, SLAKE, MedQA, PubMedQA) are rebuilt from the releases byte for byte:
    rows and images are copied verbatim, so even the media must equal the committed files."""
    make = _make_samples()
    for builder in make.REAL_BUILDERS:
        builder(tmp_path, realdata)
    files = _files(tmp_path)
    assert {rel.parts[0] if rel.parts[0] != "media" else rel.parts[1] for rel in files} == set(
        make.REAL_BENCHMARKS
    )
    assert files == {rel for rel in _files(SAMPLES) if make._is_real(rel)}
    for rel in sorted(files):
        assert (SAMPLES / rel).read_bytes() == (tmp_path / rel).read_bytes(), (
            f"{rel} is stale: run python scripts/make_samples.py"
        )


def test_bundled_video_samples_match_their_rows() -> None:
    surgery = _rows("surgeryvqa")
    for row in surgery:
        start, end = row["timestamp"]
        assert row["video"] == f"{row['video_id']}_{start}_{end}.mp4"
        assert uuid.UUID(row["id"]).version == 4
        original = row["video_metadata"]["original"]
        video = load_video(row["video"], SMALL, root=SAMPLES / "media" / "surgeryvqa")
        assert video.total_frames == original["frame_count"]
        assert video.source_fps == pytest.approx(original["fps"])
        assert video.duration_s == pytest.approx(original["duration"])
        assert video.frames.shape[1:3] == (original["resolution"]["height"], original["resolution"]["width"])
    assert len({row["id"] for row in surgery}) == len(surgery)
    assert len({row["video_id"] for row in surgery}) == 3
    clips_per_video = {
        vid: {r["video"] for r in surgery if r["video_id"] == vid} for vid in {r["video_id"] for r in surgery}
    }
    assert max(len(clips) for clips in clips_per_video.values()) >= 2
    assert all(sum(r["video"] == clip for r in surgery) >= 2 for clip in {r["video"] for r in surgery})

    for row in _rows("mimicechoqa"):
        load_video(row["video"], SMALL, root=SAMPLES / "media" / "mimicechoqa")
        load_image(row["image"], root=SAMPLES / "media" / "mimicechoqa")
        assert row["answer"] == row[f"option_{row['correct_option']}"]

    training = _rows("openbiomedvid", "train")
    assert not {r["video_id"] for r in training} & {r["video_id"] for r in surgery}
    for row in training:
        video = load_video(row["video"], SMALL, root=SAMPLES / "media" / "openbiomedvid")
        assert video.total_frames == row["video_metadata"]["original"]["frame_count"]
        assert row["qa_pairs"] and all(set(pair) == {"question", "answer"} for pair in row["qa_pairs"])


def test_bundled_image_samples_load() -> None:
    pathvqa = _rows("pathvqa")
    assert sum(row["answer"] in {"yes", "no"} for row in pathvqa) * 2 == len(pathvqa)
    for row in pathvqa:
        assert load_image(row["image"], root=SAMPLES / "media" / "pathvqa").mode == "RGB"
    # VQA-RAD and SLAKE samples are real rows in their releases' JSON, with their real images.
    vqarad = json.loads((SAMPLES / "vqarad" / "test.json").read_text(encoding="utf-8"))
    assert {row["answer_type"].strip() for row in vqarad} == {"CLOSED", "OPEN"}
    for row in vqarad:
        assert load_image(row["image_name"], root=SAMPLES / "media" / "vqarad").mode == "RGB"
    slake = json.loads((SAMPLES / "slake" / "test.json").read_text(encoding="utf-8"))
    assert [row["q_lang"] for row in slake].count("zh") == 1
    for row in slake:
        assert load_image(row["img_name"], root=SAMPLES / "media" / "slake" / "imgs").mode == "RGB"
