"""Media files that a run shows the model otherwise than as stored, made deterministically for tests:
16-bit and float images, EXIF-oriented JPEGs, and MP4s whose display matrix turns their frames."""

from __future__ import annotations

import struct
import types
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from obv_eval.data.synth import write_video

EXIF_ORIENTATION = 0x0112

# ISO-BMFF track header matrices (a, b, u, c, d, v, x, y, w; 16.16 fixed point, u/v/w 2.30), keyed by
# what ffprobe reports for them ("displaymatrix: rotation of N degrees", counterclockwise).
_ONE, _W = 1 << 16, 1 << 30
DISPLAY_MATRICES = {
    -90: (0, _ONE, 0, -_ONE, 0, 0, 0, 0, _W),  # a phone held upright: shown turned 90 degrees clockwise
    90: (0, -_ONE, 0, _ONE, 0, 0, 0, 0, _W),  # shown turned 90 degrees counterclockwise
    180: (-_ONE, 0, 0, 0, -_ONE, 0, 0, 0, _W),  # shown upside down
}


def radiograph(height: int = 224, width: int = 280) -> np.ndarray:
    """12-bit detector values in a uint16 array, as DICOM exports store them: a soft-tissue ramp from
    300 to 3300 across the width and a denser band (+700) a third of the way down."""
    x = np.arange(width, dtype=np.int64)
    values = np.broadcast_to(300 + x * 3000 // (width - 1), (height, width)).copy()
    values[height // 3 : height // 2] += 700
    return values.astype(np.uint16)


def write_16bit(path: Path, values: np.ndarray, big_endian: bool = False) -> Path:
    """A 16-bit greyscale PNG or TIFF (Pillow mode I;16, or I;16B for a big-endian TIFF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(">u2" if big_endian else "<u2")).save(path)
    return path


def write_float_tiff(path: Path, values: np.ndarray) -> Path:
    """A 32-bit float TIFF (Pillow mode F)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.float32)).save(path)
    return path


def marked_rgb(height: int = 168, width: int = 280) -> np.ndarray:
    """Grey with a red 40 x 40 block in the top-left corner, to see where a turn puts the corner."""
    rgb = np.full((height, width, 3), 96, dtype=np.uint8)
    rgb[:40, :40] = (255, 0, 0)
    return rgb


def write_exif_jpeg(path: Path, orientation: int, rgb: np.ndarray | None = None) -> Path:
    """A JPEG storing ``rgb`` (default: marked_rgb()) with an EXIF orientation tag."""
    image = Image.fromarray(marked_rgb() if rgb is None else rgb)
    exif = image.getexif()
    exif[EXIF_ORIENTATION] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95, exif=exif)
    return path


def set_display_rotation(path: Path, degrees: int) -> Path:
    """Write the track header matrix that makes FFmpeg report ``degrees`` (see DISPLAY_MATRICES).

    PyAV 15 cannot set a display matrix when writing (FFmpeg 7's MP4 muxer ignores a "rotate" metadata
    tag), so the matrix field of the file's one `tkhd` box is overwritten in place.
    """
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd")
    assert box > 0 and data.find(b"tkhd", box + 4) < 0, "expected exactly one track header"
    version = data[box + 4]
    # After the type: version/flags 4, times and track id, duration, reserved, layer, group, volume.
    offset = box + 4 + (40 if version == 0 else 52)
    data[offset : offset + 36] = struct.pack(">9i", *DISPLAY_MATRICES[degrees])
    path.write_bytes(bytes(data))
    return path


def write_rotated_clip(
    path: Path, degrees: int, num_frames: int = 8, width: int = 112, height: int = 56
) -> Path:
    """A synthetic H.264 clip (4 fps) whose display matrix says ``degrees`` (ffprobe's sense)."""
    write_video(path, num_frames=num_frames, fps=4, width=width, height=height, seed=11)
    return set_display_rotation(path, degrees)


def use_pyav_for_qwen_vl_utils(vision_process: Any, monkeypatch: Any) -> None:
    """qwen-vl-utils' torchvision reader with a PyAV stand-in for ``io.read_video`` (dropped in
    torchvision 0.29) that returns every decoded frame, so its own sampling and resizing code runs
    unchanged. ``vision_process``: the ``qwen_vl_utils.vision_process`` module."""
    import av
    import torch

    def read_video(path: str, **_: object) -> tuple[torch.Tensor, None, dict[str, float]]:
        with av.open(path) as container:
            stream = container.streams.video[0]
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
            fps = float(stream.average_rate or 0)
        return torch.from_numpy(frames).permute(0, 3, 1, 2), None, {"video_fps": fps}

    monkeypatch.setattr(vision_process, "io", types.SimpleNamespace(read_video=read_video))
    monkeypatch.setattr(vision_process, "get_video_reader_backend", lambda: "torchvision")
