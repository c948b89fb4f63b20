"""obv-train under `accelerate launch`: two data-parallel processes on CPU take two steps together."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from obv_eval.train.config import CONFIG_DIR
from obv_eval.train.manifest import read_manifest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_cpu_processes_train_one_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(CONFIG_DIR / "accelerate" / "cpu_2proc.yaml"),
        "--main_process_port", str(_free_port()),
        "-m", "obv_eval.train.cli",
        "--config", "tiny_cpu", "--max-steps", "2", "--output-dir", str(out), "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = read_manifest(out)
    training = manifest["training"]
    # The packed sequences are shared by the 2 processes (batch 1 each): an epoch is ceil(sequences / 2)
    # steps, however many sequences the real tokenizer's lengths pack into.
    steps_per_epoch = math.ceil(manifest["packing"]["sequences"] / 2)
    assert (training["world_size"], training["global_steps"]) == (2, 2)
    assert training["epochs"] == pytest.approx(2 / steps_per_epoch)
    assert done.stdout.count("wrote ") == 1  # the main process alone reports and writes
    # obv-eval's output policy (issue 25): our lines, none of the libraries' logs, bars or warnings
    library = ("INFO", "Map", "Loading weights", "Writing model shards", "[transformers]", "it/s]", "warn(")
    found = [marker for marker in library if marker in done.stdout + done.stderr]
    assert not found, f"library output {found}:\n{done.stderr[-3000:]}"
    assert "overlap check" in done.stdout and "samples: " in done.stdout
