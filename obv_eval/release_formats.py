"""The benchmarks' original release files, read as their hub schema, and each benchmark's test split.

A local copy may hold a benchmark's original release instead of a hub export:
- PubMedQA `ori_pqal.json` (1,000 labelled items keyed by PMID, upper-case fields);
- VQA-RAD `VQA_RAD Dataset Public.json` (all 2,248 rows; `image_name`, `phrase_type`, `answer_type`);
- MIMICEchoQA `MIMICEchoQA.json` from PhysioNet (MIMIC-IV-ECHO-Ext-MIMICEchoQA 1.0.0: a JSON list of the
  622 test items, each naming its clip in a one-item `videos` list), found in the data folder itself
  or in its `MIMICEchoQA/` folder where no `mimicechoqa/test.*` holds the rows; the rows' clip paths
  are relative to the folder holding the file (see docs/mimicechoqa.md).
Rows are mapped onto the hub schema here, and the test split is selected: VQA-RAD's by `phrase_type`,
PubMedQA's as the 500 PMIDs of the original release's `test_ground_truth.json` (shipped in assets/).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

RELEASE_KEY = "_release_key"  # the key of a row in a release file that is a JSON object of rows
VQARAD_TEST_PHRASE_TYPES = frozenset({"test_freeform", "test_para"})
# Release row files a data folder may hold for a benchmark instead of <benchmark>/test.*, first found wins.
RELEASE_ROW_FILES: dict[str, tuple[str, ...]] = {
    "mimicechoqa": ("MIMICEchoQA.json", "MIMICEchoQA/MIMICEchoQA.json"),
}


@cache
def pubmedqa_test_pmids() -> frozenset[str]:
    """The official 500-item PubMedQA test split (PMIDs of the original release's test ground truth)."""
    path = Path(__file__).parent / "assets" / "pubmedqa_test_pmids.json"
    return frozenset(str(pmid) for pmid in json.loads(path.read_text(encoding="utf-8")))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else ([] if value is None else [value])


def adapt_row(benchmark: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """`row` in the benchmark's hub schema (unchanged when it already is)."""
    out = {k: v for k, v in row.items() if k != RELEASE_KEY}
    if benchmark in ("pubmedqa", "pubmedqa_all") and "QUESTION" in row and "question" not in row:
        out = {
            "pubid": row.get(RELEASE_KEY),
            "question": row.get("QUESTION"),
            "context": {
                "contexts": _as_list(row.get("CONTEXTS")),
                "labels": _as_list(row.get("LABELS")),
                "meshes": _as_list(row.get("MESHES")),
            },
            "long_answer": row.get("LONG_ANSWER"),
            "final_decision": row.get("final_decision"),
        }
    if benchmark == "mimicechoqa" and "video" not in out and "videos" in out:
        # The PhysioNet release names each item's clip in a list (`videos`); the task reads `video`.
        videos = out["videos"]
        if isinstance(videos, list) and len(videos) == 1 and isinstance(videos[0], str):
            out["video"] = videos[0]
        else:
            from obv_eval.tasking import ROW_ERROR_FIELD  # tasking imports this module

            held = f"{len(videos)} items" if isinstance(videos, list) else type(videos).__name__
            out[ROW_ERROR_FIELD] = f"'videos' holds {held}; a MIMICEchoQA item names one clip in a list"
    if benchmark == "vqarad":
        if "image" not in out and "image_name" in out:
            out["image"] = out["image_name"]
        if isinstance(out.get("answer_type"), str):
            out["answer_type"] = out["answer_type"].strip()  # two release values carry a trailing space
    return out


def in_test_split(benchmark: str, row: Mapping[str, Any]) -> bool:
    """Whether a row of a file that may hold more than the test split belongs to it."""
    if benchmark == "vqarad" and row.get("phrase_type") is not None:
        return str(row["phrase_type"]).strip() in VQARAD_TEST_PHRASE_TYPES
    if benchmark == "pubmedqa":
        return str(row.get("pubid", "")).strip() in pubmedqa_test_pmids()
    return True


def release_rows_file(benchmark: str, root: Path) -> Path | None:
    """The benchmark's release row file in the data folder `root` (None: none there).

    The folder holding the file is also the root of the media paths its rows name."""
    for name in RELEASE_ROW_FILES.get(benchmark, ()):
        if (root / name).is_file():
            return root / name
    return None
