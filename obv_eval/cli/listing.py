"""Listing commands: models, tasks, tasks-dir."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence

from tabulate import tabulate

from obv_eval.benchmarks import BENCHMARKS, GROUPS


def cmd_models(argv: Sequence[str]) -> int:
    from obv_eval.registry import availability, family_and_check

    argparse.ArgumentParser(prog="obv-eval models", description="List registry models").parse_args(argv)
    rows = []
    notes: list[str] = []  # where each model is, or why not: below the table, which fits 100 columns
    for name, desc, ok, where in availability():
        family, checked = family_and_check(name)
        where = where.removeprefix(f"{name}: ")
        notes.append(textwrap.fill(f"{name}: {where}", 100, initial_indent="  ", subsequent_indent="    "))
        rows.append((name, family, checked, "yes" if ok else "no", desc))
    headers = ["model", "family", "checked", "here", "description"]
    print(tabulate(rows, headers=headers, maxcolwidths=[None, None, None, None, 34]))
    print("\nwhere / why not:\n" + "\n".join(notes))
    print("\nchecked:\n" + "\n".join(f"  {word}: {meaning}" for word, meaning in CHECKED_MEANINGS.items()))
    print("\nfamilies (obv_eval/models): any checkpoint folder of one works through --model-path:")
    print("\n".join(f"  {family}" for family in _families()))
    return 0


# What the `checked` column says was done with a model here (the values of ModelEntry.checked).
CHECKED_MEANINGS = {
    "run here": "ran on this project's CPU tests (the tiny twins)",
    "run here (GPU)": "ran on a GPU in this project's checks (random weights)",
    "trained here": "obv-train's output, evaluated after training in the tests",
    "obv-train": "made by obv-train from its base checkpoint; found here once trained",
    "resolves": "hub id and architecture checked against public sources; the weights never ran here",
    "unverified": "hub id or architecture from secondary sources only; check before relying on it",
}


def _families() -> list[str]:
    from obv_eval.models import families

    return [f"{f.name} ({f.title}): frames {f.frame_rule.name}" for f in families().values()]


def cmd_tasks(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(prog="obv-eval tasks", description="List benchmarks").parse_args(argv)
    hub = {b.name: b.hub_path or "none: PhysioNet, --data DIR" for b in BENCHMARKS.values()}
    rows = [(b.name, b.task, b.modality, b.title, hub[b.name]) for b in BENCHMARKS.values()]
    print(tabulate(rows, headers=["name", "lmms-eval task", "modality", "benchmark", "hub dataset"]))
    print("\ngroups: " + "; ".join(f"{g} = {' '.join(m)}" for g, m in GROUPS.items()))
    return 0


def cmd_tasks_dir(argv: Sequence[str]) -> int:
    from obv_eval.sources import tasks_package_dir

    argparse.ArgumentParser(
        prog="obv-eval tasks-dir", description="Print the lmms-eval include path"
    ).parse_args(argv)
    print(tasks_package_dir())
    return 0
