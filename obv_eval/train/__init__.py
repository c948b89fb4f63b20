"""`obv-train`: supervised fine-tuning of Qwen2-VL on OpenBiomedVid, the study's recipe by default.

config.py (settings and shipped YAMLs), data.py (rows -> samples -> tokens and labels), packing.py
(measuring, bin packing, position ids), trainer.py (transformers Trainer, PEFT, output folder),
manifest.py (obv_manifest.json), cli.py (argument parsing). See docs/training.md.
"""
