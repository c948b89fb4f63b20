"""lmms-eval plugin entry point: makes `--model obv_hf`, `obv_vllm` and `obv_openai` resolve in lmms-eval."""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest


def model_manifests() -> list[ModelManifest]:
    return [
        ModelManifest(model_id="obv_hf", simple_class_path="obv_eval.model_adapters.hf.ObvHF"),
        ModelManifest(model_id="obv_vllm", simple_class_path="obv_eval.model_adapters.vllm.ObvVLLM"),
        ModelManifest(model_id="obv_openai", simple_class_path="obv_eval.model_adapters.openai.ObvOpenAI"),
    ]
