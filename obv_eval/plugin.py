"""lmms-eval plugin entry point: makes `--model obv_hf` resolve in plain lmms-eval."""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest


def model_manifests() -> list[ModelManifest]:
    return [
        ModelManifest(model_id="obv_hf", simple_class_path="obv_eval.model_adapters.hf.ObvHF"),
    ]
