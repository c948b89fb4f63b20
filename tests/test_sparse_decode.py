"""Sparse decoding: seeking to keyframes gives exactly the frames a full decode gives.

Sources are written with PyAV in tmp_path: short and long keyframe intervals, B-frames, an open GOP
and a variable frame rate, sampled sparsely (frame caps) and densely (2 fps).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from obv_eval import media
from obv_eval.media import VideoSettings, cache_stats, clear_cache


def _write(
    path: Path,
    frames: int,
    *,
    gop: int,
    bframes: int = 2,
    fps: int = 30,
    vfr: bool = False,
    open_gop: bool = False,
) -> Path:
    rng = np.random.default_rng(frames + gop)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
        stream.options = {"x264-params": params + (":open-gop=1" if open_gop else ""), "preset": "ultrafast"}
        stream.codec_context.time_base = Fraction(1, fps * 100)
        pts = 0
        base = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
        for i in range(frames):
            image = np.roll(base, i, axis=1)
            image[:8, :8] = (i * 7) % 256  # every frame differs from its neighbours
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = pts
            frame.time_base = Fraction(1, fps * 100)
            pts += 100 * (1 + (i % 3 if vfr else 0))  # variable gaps: 1x, 2x, 3x the nominal one
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _both(path: Path, settings: VideoSettings) -> tuple[media.Video, media.Video, int]:
    clear_cache()
    full = media._decode_video(path, settings, "x", strategy="full")
    clear_cache()
    sparse = media._decode_video(path, settings, "x", strategy="auto")
    return full, sparse, cache_stats()["seeks"]


CASES = {
    "short-gop-bframes": {"frames": 300, "gop": 10},
    "long-gop-bframes": {"frames": 300, "gop": 120},
    "no-bframes": {"frames": 240, "gop": 30, "bframes": 0},
    "open-gop": {"frames": 300, "gop": 40, "open_gop": True},
    "variable-frame-rate": {"frames": 300, "gop": 30, "vfr": True},
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("nframes", [8, None], ids=["sparse-8", "dense-2fps"])
def test_seeking_gives_the_full_decodes_frames(tmp_path: Path, name: str, nframes: int | None) -> None:
    path = _write(tmp_path / f"{name}.mp4", **CASES[name])  # type: ignore[arg-type]
    settings = VideoSettings(nframes=nframes) if nframes else VideoSettings(fps=2.0)
    full, sparse, seeks = _both(path, settings)
    assert sparse.indices == full.indices
    assert sparse.total_frames == full.total_frames and sparse.source_fps == full.source_fps
    assert np.array_equal(sparse.frames, full.frames)
    # Sparse sampling over many keyframes seeks; with a long GOP or dense sampling it decodes through.
    index = media._frame_index(path)
    assert index is not None
    gaps_with_keyframes = sum(
        1
        for a, b in zip((-1, *full.indices), full.indices, strict=False)
        if any(a < k <= b and k - a > media.SEEK_MIN_SKIP for k in index.keyframes)
    )
    assert seeks == gaps_with_keyframes
    if name == "short-gop-bframes" and nframes:
        assert seeks > 0


def test_frames_differ_between_neighbours(tmp_path: Path) -> None:
    # The check above could pass on a source whose frames are all alike: they are not.
    path = _write(tmp_path / "v.mp4", 60, gop=10)
    video = media._decode_video(path, VideoSettings(nframes=60), "x", strategy="full")
    assert all(not np.array_equal(a, b) for a, b in zip(video.frames, video.frames[1:], strict=False))


def test_unusual_stream_falls_back_to_a_full_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "v.mp4", 120, gop=10)
    monkeypatch.setattr(media, "_frame_index", lambda _path: None)  # e.g. packets without timestamps
    full, sparse, seeks = _both(path, VideoSettings(nframes=4))
    assert seeks == 0 and np.array_equal(sparse.frames, full.frames)
