"""Frame policies: which frames, at which sizes, each model is given (`--frames`, model_args `frames=`).

* ``native`` (the default; ``default`` is its old spelling): each model family's own rule, the one of its
  official utilities (``Family.frame_rule``); fps / min_frames / max_frames given explicitly override it.
  A model that is no known family's checkpoint (an API model) gets qwen-vl-utils' defaults, as before.
* ``common`` / ``common:fps=F,max_frames=N,max_pixels=P``: one rule for every model, for controlled
  comparisons across families. The frame indices depend only on F and N (qwen-vl-utils' sampler: F fps,
  4..N frames in pairs, evenly spaced), so every model sees the same moments of a clip; each frame is
  resized within the same P pixels, in multiples of the family's own factor (28 for Qwen2/2.5-VL, 32
  for Qwen3-VL). Families whose processor sizes frames itself (fixed tiles: LLaVA-OneVision, InternVL3,
  Gemma 3) get these same frames, sized within P, which their processor then scales to its input, so
  no model sees more detail than P pixels a frame. Images keep each family's rule.
* ``train``: the study's training frames (obv_eval.train.config.STUDY_TRAIN_VIDEO), in the family's factor.

This module parses and validates specs without importing numpy or the media stack (the CLI checks
`--frames` before anything loads); the settings themselves are built by `video_settings` /
`image_settings`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from obv_eval.media import ImageSettings, VideoSettings
    from obv_eval.models import Family

PolicyName = Literal["native", "common", "train"]
NATIVE: PolicyName = "native"
COMMON: PolicyName = "common"
TRAIN: PolicyName = "train"
ALIASES = {"default": NATIVE}  # --frames default (the name before families had rules of their own)

# The common policy's defaults. 1 fps: the study's training rate, and one frame a second is the
# coarsest rate that still sees every second of a surgical or echo clip. 32 frames: what LLaVA-OneVision
# and InternVL3 are evaluated with in lmms-eval, and 16 temporal pairs for the Qwen families. 448 x 448
# pixels per frame: InternVL3's tile, a whole number of merged patches in both Qwen factors (16 x 16 of
# 28 px, 14 x 14 of 32 px) and above LLaVA-OneVision's 384 x 384; 32 frames of it fit every family's
# context (Qwen2-VL: 16 pairs x 256 tokens = 4,096 visual tokens).
COMMON_FPS = 1.0
COMMON_MAX_FRAMES = 32
COMMON_MAX_PIXELS = 448 * 448
COMMON_KEYS = ("fps", "max_frames", "max_pixels")
# A frame must hold one merged patch of the largest factor (32 x 32); qwen-vl-utils caps a frame at 768
# merged patches (602,112 pixels at 28 px, the smallest cap of the families that resize).
MIN_PIXELS = 32 * 32
MAX_PIXELS = 768 * 28 * 28  # = obv_eval.models.qwen_vl_utils.VIDEO_MAX_PIXELS (a test keeps them equal)
MAX_FRAMES_LIMIT = 768  # qwen-vl-utils' FPS_MAX_FRAMES


class FramePolicyError(ValueError):
    """A --frames value that cannot be used; the message is one line saying what to write instead."""


@dataclass(frozen=True)
class FramePolicy:
    name: PolicyName
    fps: float = COMMON_FPS  # the common policy's values; unused by native and train
    max_frames: int = COMMON_MAX_FRAMES
    max_pixels: int = COMMON_MAX_PIXELS

    @property
    def spec(self) -> str:
        """The one spelling of the policy (recorded; parse_frames(spec) gives it back)."""
        if self.name != COMMON:
            return self.name
        return f"common:fps={self.fps:g},max_frames={self.max_frames},max_pixels={self.max_pixels}"

    def settings(self) -> dict[str, Any]:
        """What the policy fixes, as recorded in results (the common values; nothing for the others)."""
        if self.name != COMMON:
            return {}
        return {"fps": self.fps, "max_frames": self.max_frames, "max_pixels": self.max_pixels}


def policy_name(spec: str) -> PolicyName:
    """native, common or train, from a policy's spelling (FramePolicy.spec), without re-validating it;
    what Family.describe(frame_policy=...) records."""
    name = spec.partition(":")[0]
    name = ALIASES.get(name, name)
    if name not in (NATIVE, COMMON, TRAIN):
        raise FramePolicyError(f"frames {spec!r}: not a frame policy's spelling")
    return name


def parse_frames(value: str | None) -> FramePolicy:
    """native | default | train | common | common:fps=F,max_frames=N,max_pixels=P (any of the three keys;
    ';' also separates them, for lmms-eval's comma-separated --model_args)."""
    text = str(value if value is not None else NATIVE).strip().strip("'\"").strip()
    name, colon, rest = text.partition(":")
    name = ALIASES.get(name.strip(), name.strip())
    if name in (NATIVE, TRAIN) and not colon:
        return FramePolicy(name)
    if name != COMMON:
        raise FramePolicyError(
            f"frames {text!r}: expected native (default), train, common or "
            "common:fps=F,max_frames=N,max_pixels=P"
        )
    given: dict[str, str] = {}
    for part in rest.replace(";", ",").split(",") if colon else ():
        key, equals, number = (s.strip() for s in part.partition("="))
        if key not in COMMON_KEYS or not equals or not number:
            raise FramePolicyError(
                f"frames {text!r}: {part.strip()!r} is not one of fps=F, max_frames=N, max_pixels=P"
            )
        if key in given:
            raise FramePolicyError(f"frames {text!r}: {key} is given twice")
        given[key] = number
    try:
        fps = float(given.get("fps", COMMON_FPS))
        max_frames = int(given.get("max_frames", COMMON_MAX_FRAMES))
        max_pixels = int(given.get("max_pixels", COMMON_MAX_PIXELS))
    except ValueError:
        raise FramePolicyError(
            f"frames {text!r}: fps must be a number, max_frames and max_pixels whole numbers"
        ) from None
    if not (math.isfinite(fps) and fps > 0):
        raise FramePolicyError(f"frames {text!r}: fps must be a positive number, got {fps:g}")
    if not 2 <= max_frames <= MAX_FRAMES_LIMIT:
        raise FramePolicyError(
            f"frames {text!r}: max_frames must be between 2 and {MAX_FRAMES_LIMIT} (frames go in pairs)"
        )
    if not MIN_PIXELS <= max_pixels <= MAX_PIXELS:
        raise FramePolicyError(
            f"frames {text!r}: max_pixels must be between {MIN_PIXELS} and {MAX_PIXELS} "
            "(32 x 32 up to qwen-vl-utils' per-frame cap)"
        )
    return FramePolicy(COMMON, fps, max_frames, max_pixels)


def video_settings(
    policy: FramePolicy,
    family: Family | None = None,
    fps: float | None = None,
    min_frames: int | None = None,
    max_frames: int | None = None,
) -> VideoSettings:
    """The frame sampler's settings for a family (None: qwen-vl-utils' defaults) under the policy.

    fps / min_frames / max_frames are explicit model_args: they override the native rule, are not
    used by train (as before), and are refused with common, whose spec says them.
    """
    from obv_eval.media import VideoSettings

    native = family.frame_rule.video() if family is not None else VideoSettings()
    if policy.name == NATIVE:
        given = {"fps": fps, "min_frames": min_frames, "max_frames": max_frames}
        overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if "fps" in overrides:
            overrides["fps"] = float(overrides["fps"])
        for key in ("min_frames", "max_frames"):
            if key in overrides:
                overrides[key] = int(overrides[key])
        return dataclasses.replace(native, **overrides) if overrides else native
    # Under train and common every family's frames are sized here, in multiples of its own factor; a
    # family whose processor sizes frames itself (resize off natively) then scales these to its input.
    if policy.name == TRAIN:
        from obv_eval.train.config import STUDY_TRAIN_VIDEO

        return dataclasses.replace(STUDY_TRAIN_VIDEO, factor=native.factor)
    from obv_eval.media import VIDEO_MIN_PIXELS, VIDEO_TOTAL_PIXELS
    from obv_eval.models.qwen_vl_utils import video_max_pixels

    cap = video_max_pixels(native.factor)
    if policy.max_pixels > cap:
        title = family.title if family is not None else "this model"
        raise FramePolicyError(
            f"frames {policy.spec}: max_pixels above {title}'s per-frame cap {cap} (its factor "
            f"{native.factor}); use at most {cap}"
        )
    return VideoSettings(
        fps=policy.fps,
        min_frames=min(4, policy.max_frames),
        max_frames=policy.max_frames,
        min_pixels=min(VIDEO_MIN_PIXELS, policy.max_pixels),
        max_pixels=policy.max_pixels,
        # Large enough that the per-frame budget is max_pixels for every frame count up to max_frames.
        total_pixels=max(VIDEO_TOTAL_PIXELS, policy.max_pixels * policy.max_frames),
        factor=native.factor,
    )


def image_settings(policy: FramePolicy, family: Family | None = None) -> ImageSettings:
    """Images follow the family's rule under every policy (a frame policy is about video frames)."""
    from obv_eval.media import ImageSettings

    return family.frame_rule.image() if family is not None else ImageSettings()


# ---------------------------------------------------------------------------------------------------
# What a run recorded


def recorded_policy(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The frame policy a results document's run used: {"policy": native | common | train, ...}.

    Written into results.json as provenance.frame_policy; for results made before policies existed it is
    worked out from provenance.media (a common run's media settings name their spec; --frames train
    runs are recognised by their sampling, the training frames' 1 fps and 420 frames).
    """
    stored = provenance.get("frame_policy")
    if isinstance(stored, Mapping) and stored.get("policy"):
        return dict(stored)
    media = provenance.get("media") or {}
    family = (provenance.get("backend") or {}).get("model_family") or {}
    spec = media.get("frame_policy")
    if spec:
        policy = parse_frames(str(spec))
    elif _is_training_frames(media.get("video") or {}):
        policy = FramePolicy(TRAIN)
    else:
        policy = FramePolicy(NATIVE)
    out: dict[str, Any] = {"policy": policy.name, **policy.settings()}
    if policy.name == NATIVE and family.get("frame_rule"):
        out["rule"] = family["frame_rule"]
    return out


def _is_training_frames(video: Mapping[str, Any]) -> bool:
    from obv_eval.train.config import STUDY_TRAIN_VIDEO

    sampling = ("fps", "min_frames", "max_frames", "nframes")
    return bool(video) and all(video.get(k) == getattr(STUDY_TRAIN_VIDEO, k) for k in sampling)


def policy_label(recorded: Mapping[str, Any]) -> str:
    """One short phrase for tables and notes, e.g. "native (qwen-vl-utils-0.0.14)",
    "common (1 fps, at most 32 frames, 200704 pixels a frame)"."""
    name = str(recorded.get("policy", NATIVE))
    if name == COMMON:
        return (
            f"common ({float(recorded['fps']):g} fps, at most {recorded['max_frames']} frames, "
            f"{recorded['max_pixels']} pixels a frame)"
        )
    if name == NATIVE and recorded.get("rule"):
        return f"native ({recorded['rule']})"
    if name == TRAIN:
        return "train (the study's training frames)"
    return name
