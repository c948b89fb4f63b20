"""Deterministic synthetic media for tests and the bundled sample data.

Every pixel comes from a seeded numpy generator and integer arithmetic, so the same arguments give
byte-identical files on any machine with the same PyAV build (PyAV wheels bundle FFmpeg and x264).

Each video frame carries its own index as a readable marker: the left half of the frame is a uniform
grey block whose level is ``marker_level(index)``. A flat block survives lossy H.264 coding and any
resize almost exactly, so tests can tell which source frames a sampler picked (``read_marker``).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

__all__ = [
    "MARKER_BASE",
    "MARKER_PERIOD",
    "MARKER_STEP",
    "marker_level",
    "read_marker",
    "synthetic_frame",
    "write_image",
    "write_video",
]

# Marker level = 10 + 8 * index, wrapping every 30 frames (levels 10..242): steps of 8 grey levels are
# far apart compared with the +-2 error that H.264 at CRF 18 puts on a flat block.
MARKER_BASE = 10
MARKER_STEP = 8
MARKER_PERIOD = 30


# Encoder settings. One thread and FFmpeg's bitexact flags keep the output a function of the input.
# "asm=0" makes x264 use its plain C code: with its SIMD code the bitstream occasionally (about 1 build in
# 20 here, on an AVX-512 machine) depended on what the process had run before; the C code was stable over
# 55 differently-warmed processes and does not depend on the CPU's instruction set. Tiny clips encode fast.
X264_OPTIONS: dict[str, str] = {
    "crf": "18",
    "preset": "medium",
    "threads": "1",
    "flags": "+bitexact",
    "x264-params": "asm=0",
}
MPEG4_OPTIONS: dict[str, str] = {"qscale": "2", "threads": "1", "flags": "+bitexact"}


def marker_level(index: int) -> int:
    """Grey level (0-255) of the marker block in frame ``index``."""
    return MARKER_BASE + (MARKER_STEP * index) % (MARKER_STEP * MARKER_PERIOD)


def read_marker(frame: np.ndarray) -> int:
    """Frame index modulo ``MARKER_PERIOD`` read back from an RGB frame (H, W, 3) of any size.

    Reads the middle of the marker block (the left half), away from edges that resizing blurs.
    """
    height, width = frame.shape[:2]
    core = frame[height // 4 : height - height // 4, width // 8 : (3 * width) // 8]
    level = float(core.astype(np.float64).mean())
    return round((level - MARKER_BASE) / MARKER_STEP) % MARKER_PERIOD


def _scene(width: int, height: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Static background, moving-disc colour and disc trajectory parameters for one video/image."""
    rng = np.random.default_rng(seed)
    # Warm tissue-like tones: a diagonal gradient between two seeded colours plus faint fixed texture.
    c0 = rng.integers(90, 200, size=3)
    c1 = rng.integers(40, 140, size=3)
    yy, xx = np.mgrid[0:height, 0:width]
    t = (xx + yy) / max(width + height - 2, 1)
    background = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    background = background + rng.integers(-6, 7, size=(height, width, 1))
    disc_colour = rng.integers(150, 256, size=3)
    # Start position (fractions of the frame) and velocity (fractions per frame) of the moving disc.
    motion = rng.uniform([0.55, 0.2, -0.04, -0.05], [0.85, 0.8, 0.04, 0.05])
    return np.clip(background, 0, 255).astype(np.uint8), disc_colour.astype(np.uint8), motion


def synthetic_frame(index: int, width: int, height: int, seed: int) -> np.ndarray:
    """RGB frame ``index`` (uint8, H x W x 3): seeded background, a moving disc, and the index marker."""
    background, disc_colour, motion = _scene(width, height, seed)
    frame = background.copy()
    # The disc moves on the right half and bounces between its edges (triangle wave), so it never
    # touches the marker block.
    cx0, cy0, vx, vy = motion
    half = width // 2
    fx = _bounce(cx0 + vx * index, 0.6, 0.9)
    fy = _bounce(cy0 + vy * index, 0.15, 0.85)
    radius = max(2.0, min(width - half, height) * 0.12)
    yy, xx = np.mgrid[0:height, 0:width]
    inside = (xx - fx * width) ** 2 + (yy - fy * height) ** 2 <= radius**2
    frame[inside] = disc_colour
    frame[:, :half] = marker_level(index)
    return frame


def _bounce(value: float, low: float, high: float) -> float:
    span = high - low
    phase = (value - low) % (2 * span)
    return low + (phase if phase <= span else 2 * span - phase)


def _rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV 4:2:0 planes stacked as PyAV's yuv420p ndarray layout (H*3/2, W).

    Integer arithmetic here (rather than FFmpeg's swscale, whose SIMD paths vary by CPU) keeps the
    encoder input identical on every machine.
    """
    height, width = rgb.shape[:2]
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128
    v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128

    def subsample(plane: np.ndarray) -> np.ndarray:
        blocks = plane.reshape(height // 2, 2, width // 2, 2)
        return (blocks.sum(axis=(1, 3)) + 2) // 4

    planes = [y.ravel(), subsample(u).ravel(), subsample(v).ravel()]
    return np.concatenate(planes).clip(0, 255).astype(np.uint8).reshape(height * 3 // 2, width)


def write_video(path: str | Path, num_frames: int, fps: int, width: int, height: int, seed: int) -> Path:
    """Write a synthetic H.264 (yuv420p) mp4 and return its path.

    Falls back to MPEG-4 Part 2 when this PyAV build lacks libx264. Single-threaded encoding and
    FFmpeg's bitexact flags make the bytes a pure function of the arguments.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if fps < 1:
        raise ValueError(f"fps must be a positive integer, got {fps}")
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise ValueError(f"yuv420p needs even width and height >= 2, got {width}x{height}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    codec_options = dict(X264_OPTIONS if codec == "libx264" else MPEG4_OPTIONS)
    with av.open(str(out), mode="w", format="mp4", container_options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=fps, options=codec_options)
        assert isinstance(stream, av.video.stream.VideoStream)  # narrows the type for mypy
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        for index in range(num_frames):
            rgb = synthetic_frame(index, width, height, seed)
            frame = av.VideoFrame.from_ndarray(_rgb_to_yuv420p(rgb), format="yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


def write_image(path: str | Path, width: int, height: int, seed: int) -> Path:
    """Write a synthetic image and return its path: PNG, or JPEG when the name ends in .jpg/.jpeg.

    The image is frame 0 of the synthetic video scene without the marker block, so it has some
    structure (gradient, disc) for a vision model to look at.
    """
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    background, disc_colour, motion = _scene(width, height, seed)
    pixels = background.copy()
    yy, xx = np.mgrid[0:height, 0:width]
    radius = max(2.0, min(width, height) * 0.15)
    inside = (xx - motion[0] * width) ** 2 + (yy - motion[1] * height) ** 2 <= radius**2
    pixels[inside] = disc_colour
    image = Image.fromarray(pixels, mode="RGB")
    if out.suffix.lower() in {".jpg", ".jpeg"}:
        # Baseline JPEG without EXIF or timestamps is a pure function of the pixels.
        image.save(out, format="JPEG", quality=90, optimize=False, progressive=False)
    else:
        image.save(out, format="PNG", optimize=False, compress_level=9)
    return out
