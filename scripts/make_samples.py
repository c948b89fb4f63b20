"""Generate the bundled sample data under tasks/samples/ (deterministic).

Every benchmark gets a handful of rows in its published schema, so tasks, adapters and training run
end to end on a CPU without network. VQA-RAD, SLAKE, MedQA and PubMedQA samples are real rows with
their real images, copied from the redistributable releases in ../shared/realdata; the others
(MIMICEchoQA, SurgeryVideoQA, PathVQA, OpenBiomedVid) cannot be redistributed and stay synthetic.

    python scripts/make_samples.py            # (re)write tasks/samples/
    python scripts/make_samples.py --check    # exit 1 if the committed files differ from a fresh build

Re-running gives byte-identical files (media: with the same PyAV build, which bundles FFmpeg and x264):
ids come from seeded generators, media from obv_eval.data.synth. Video metadata in the rows describes
the bundled clips themselves.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import random
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # so the script runs from a checkout without installing

from obv_eval.data.synth import write_image, write_video  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "tasks" / "samples"

# Tiny media keep a random-weight test model fast on CPU.
VIDEO_FPS = 4
SURGERY_SIZE = (84, 56)  # width, height: landscape like YouTube
OBV_SIZE = (84, 56)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def uuid_stream(seed: int) -> Iterator[str]:
    """Deterministic version-4 UUID strings (the published ids are uuid4)."""
    rng = random.Random(seed)
    while True:
        yield str(uuid.UUID(bytes=rng.randbytes(16), version=4))


def youtube_clip(video_id: str, start: int, end: int, width: int, height: int) -> tuple[str, dict[str, Any]]:
    """Clip file name and video_metadata as the SurgeryVideoQA / OpenBiomedVid rows carry them.

    The metadata describes the bundled clip itself (so data checks that compare rows with files pass):
    duration = end - start seconds at VIDEO_FPS frames per second.
    """
    duration = end - start
    metadata = {
        "original": {
            "duration": duration,
            "fps": VIDEO_FPS,
            "frame_count": duration * VIDEO_FPS,
            "resolution": {"width": width, "height": height},
        }
    }
    return f"{video_id}_{start}_{end}.mp4", metadata


# --------------------------------------------------------------------------------------------------
# SurgeryVideoQA: open-ended short answers, several questions per clip, several clips per video.
# Invented YouTube ids; one contains "_" and one starts with "-", as real ids do, so that code which
# parses "<video_id>_<start>_<end>.mp4" must split from the right.
SURGERY_CLIPS: list[tuple[str, int, int, list[tuple[str, str]]]] = [
    (
        "Qm7_vB2xKpL",
        112,
        115,
        [
            ("What structure is retracted to expose the gallbladder?", "Liver edge."),
            ("Which instrument is used to clip the cystic artery?", "Clip applier."),
        ],
    ),
    (
        "Qm7_vB2xKpL",
        240,
        244,
        [
            ("What is divided after the clips are placed?", "Cystic duct."),
            ("How is the gallbladder removed from the abdomen?", "Retrieval bag."),
        ],
    ),
    (
        "-t4RkW9sHn0",
        35,
        38,
        [
            ("What layer is closed with a running suture?", "Fascia."),
            ("Which suture material is used for skin closure?", "Nylon 4-0."),
        ],
    ),
    (
        "Zc81dJqYw3e",
        308,
        310,
        [
            ("What nerve is identified and preserved during the dissection?", "Recurrent laryngeal nerve."),
            ("Which gland is mobilized medially?", "Thyroid gland."),
        ],
    ),
]


def make_surgeryvqa(out: Path) -> None:
    ids = uuid_stream(seed=101)
    rows = []
    width, height = SURGERY_SIZE
    for clip_number, (video_id, start, end, questions) in enumerate(SURGERY_CLIPS):
        video, metadata = youtube_clip(video_id, start, end, width, height)
        write_video(
            out / "media" / "surgeryvqa" / video,
            num_frames=(end - start) * VIDEO_FPS,
            fps=VIDEO_FPS,
            width=width,
            height=height,
            seed=1000 + clip_number,
        )
        for question, answer in questions:
            rows.append(
                {
                    "id": next(ids),
                    "video_id": video_id,
                    "video_url": f"https://www.youtube.com/watch?v={video_id}",
                    "video": video,
                    "timestamp": [start, end],
                    "question": question,
                    "answer": answer,
                    "video_metadata": metadata,
                }
            )
    write_jsonl(out / "surgeryvqa" / "test.jsonl", rows)


# --------------------------------------------------------------------------------------------------
# MIMICEchoQA: closed-ended questions on echocardiogram clips, several per study. Paths follow the
# PhysioNet MIMIC-IV-ECHO layout files/p<first 2 digits>/p<subject>/s<study>/<study>_<clip>.mp4 with
# invented subject and study numbers.
#
# Unverified against the real data (credentialed access): the Yes/No encoding (option_A "Yes",
# option_B "No", option_C/option_D null, correct_option "A"/"B"), messages_id as an integer, study as the
# study number string, and image as the path of a still frame beside the clip.
ECHO_CLIPS: list[tuple[str, str, str, int]] = [
    # (subject, study, clip number, duration s)
    ("10452318", "93817254", "0012", 3),
    ("10452318", "93817254", "0031", 2),
    ("11873604", "90264417", "0007", 4),
    ("12290475", "95531088", "0044", 3),
    ("13068851", "91742960", "0019", 2),
]
# (clip index, view, structure, question, options A-D or None for Yes/No, answer, report)
ECHO_ITEMS: list[tuple[int, str, str, str, tuple[str, str, str, str] | None, str, str]] = [
    (
        0,
        "A4C",
        "Left Ventricle",
        "How would you grade the left ventricular systolic function?",
        ("Normal", "Mildly reduced", "Moderately reduced", "Severely reduced"),
        "Moderately reduced",
        "The left ventricle is mildly dilated. Overall left ventricular systolic function is moderately "
        "depressed (LVEF 35-40%) with inferior and inferolateral hypokinesis.",
    ),
    (
        0,
        "A4C",
        "Mitral Valve",
        "Is there mitral regurgitation?",
        None,
        "Yes",
        "Mild to moderate (1-2+) mitral regurgitation is seen. The mitral valve leaflets are mildly "
        "thickened.",
    ),
    (
        1,
        "PLAX",
        "Aortic Valve",
        "What is the severity of aortic stenosis?",
        ("None", "Mild", "Moderate", "Severe"),
        "None",
        "The aortic valve leaflets (3) are mildly thickened but aortic stenosis is not present. No aortic "
        "regurgitation is seen.",
    ),
    (
        2,
        "PSAX",
        "Left Ventricle",
        # The answer starts with "A" but is option B: a prefix test would score a correct reply as "A".
        "Which left ventricular wall segment is akinetic?",
        ("Inferior", "Anterior", "Lateral", "Septal"),
        "Anterior",
        "Regional left ventricular wall motion is abnormal with akinesis of the mid and distal anterior "
        "wall. The remaining segments contract normally.",
    ),
    (
        2,
        "PSAX",
        "Pericardium",
        "Is there a pericardial effusion?",
        None,
        "No",
        "There is no pericardial effusion.",
    ),
    (
        3,
        "A2C",
        "Left Atrium",
        "What is the size of the left atrium?",
        ("Normal", "Mildly dilated", "Moderately dilated", "Severely dilated"),
        "Severely dilated",
        "The left atrium is severely dilated. The right atrium is moderately dilated.",
    ),
    (
        3,
        "A2C",
        "Right Ventricle",
        "Is right ventricular systolic function normal?",
        None,
        "Yes",
        "Right ventricular chamber size and free wall motion are normal.",
    ),
    (
        4,
        "Subcostal",
        "Inferior Vena Cava",
        "What does the inferior vena cava suggest about right atrial pressure?",
        ("Normal (0-5 mmHg)", "Intermediate (5-10 mmHg)", "High (15 mmHg)", "Cannot be assessed"),
        "High (15 mmHg)",
        "The inferior vena cava is dilated (>2.1 cm) with <50% decrease during respiration, suggesting "
        "elevated right atrial pressure (15 mmHg).",
    ),
]


# The clips are real echo video: pydicom's examples_ybr_color.dcm (MIT; a SonoSite cine, 30 frames of
# 320x240 YBR_FULL_422 JPEG baseline at FrameTime 33.333 ms, a reduced copy of pydicom-data's
# color3d_jpeg_baseline.dcm) converted by obv_eval.data.dicom as `data prepare mimicechoqa` converts
# DICOM, here cut to ECHO_SAMPLE_FRAMES frames from 4 * clip number on and halved to 160x120 to keep
# the repository and the CPU runs small. bitexact: x264's plain C code, so the bytes are stable.
ECHO_DICOM = "examples_ybr_color.dcm"
ECHO_SAMPLE_FRAMES = 12
ECHO_DOWNSCALE = 2


def write_echo_sample(video: Path, still: Path, first_frame: int) -> None:
    import pydicom
    from PIL import Image
    from pydicom.data import get_testdata_file

    from obv_eval.data.dicom import _downscale, convert_dicom, rgb_frames

    source = Path(str(get_testdata_file(ECHO_DICOM, download=False)))
    video.parent.mkdir(parents=True, exist_ok=True)
    convert_dicom(
        source,
        video,
        first_frame=first_frame,
        max_frames=ECHO_SAMPLE_FRAMES,
        downscale=ECHO_DOWNSCALE,
        bitexact=True,
    )
    frame = _downscale(rgb_frames(pydicom.dcmread(source), [first_frame]), ECHO_DOWNSCALE)[0]
    Image.fromarray(frame, mode="RGB").save(still, format="PNG", optimize=False, compress_level=9)


def make_mimicechoqa(out: Path) -> None:
    media = out / "media" / "mimicechoqa"
    clip_paths = []
    for number, (subject, study, clip, _duration) in enumerate(ECHO_CLIPS):
        rel = f"mimic-iv-echo/0.1/files/p{subject[:2]}/p{subject}/s{study}/{study}_{clip}.mp4"
        still = rel.removesuffix(".mp4") + ".png"
        write_echo_sample(media / rel, media / still, first_frame=4 * number)
        clip_paths.append((rel, still, study))
    rows = []
    for messages_id, (clip_index, view, structure, question, options, answer, report) in enumerate(
        ECHO_ITEMS
    ):
        rel, still, study = clip_paths[clip_index]
        choices: tuple[str | None, ...] = options if options is not None else ("Yes", "No", None, None)
        letter = "ABCD"[choices.index(answer)]
        rows.append(
            {
                "messages_id": messages_id,
                "video": rel,
                "question": question,
                "answer": answer,
                "option_A": choices[0],
                "option_B": choices[1],
                "option_C": choices[2],
                "option_D": choices[3],
                "correct_option": letter,
                "structure": structure,
                "view": view,
                "report": report,
                "study": study,
                "image": still,
            }
        )
    write_jsonl(out / "mimicechoqa" / "test.jsonl", rows)


PATHVQA_ITEMS: list[tuple[str, str, str]] = [
    ("test_00001.png", "are granulomas present in this section?", "yes"),
    ("test_00001.png", "what do the multinucleated giant cells surround?", "caseous necrosis"),
    ("test_00002.png", "is the epithelium intact?", "no"),
    ("test_00002.png", "what type of epithelium lines the surface?", "squamous"),
    ("test_00003.png", "does this image show fibrosis?", "yes"),
    ("test_00003.png", "what stain highlights the collagen?", "trichrome"),
    ("test_00004.png", "are mitotic figures seen?", "no"),
    ("test_00004.png", "what organ is shown?", "kidney"),
]


def _image_vqa(out: Path, name: str, items: list[tuple[str, str, str]], size: int, seed: int) -> None:
    for number, image in enumerate(dict.fromkeys(image for image, _, _ in items)):
        write_image(out / "media" / name / image, size, size, seed=seed + number)
    rows = [{"image": image, "question": question, "answer": answer} for image, question, answer in items]
    write_jsonl(out / name / "test.jsonl", rows)


def make_pathvqa(out: Path) -> None:
    _image_vqa(out, "pathvqa", PATHVQA_ITEMS, size=56, seed=3100)


# --------------------------------------------------------------------------------------------------
# OpenBiomedVid (training): captions and question/answer pairs per clip. Video ids differ from the
# SurgeryVideoQA ones, as the real training set must not overlap the benchmark. One clip starts at a
# fractional second: the file name truncates it, as in the published data.
OBV_CLIPS: list[tuple[str, float, float, str, str, str, list[tuple[str, str]]]] = [
    (
        "Hn3wYc_0pRt",
        30.5,
        33.5,
        "Ultrasound",
        "Abdomen",
        "A transabdominal ultrasound of the right upper quadrant shows the gallbladder with a thickened "
        "wall and several mobile echogenic foci with posterior acoustic shadowing, consistent with "
        "gallstones. The presenter notes pericholecystic fluid.",
        [
            ("What do the echogenic foci with acoustic shadowing represent?", "Gallstones"),
            ("What finding surrounds the gallbladder?", "Pericholecystic fluid"),
        ],
    ),
    (
        "Hn3wYc_0pRt",
        96.0,
        99.0,
        "Ultrasound",
        "Abdomen",
        "The probe is moved to the right kidney. The renal cortex appears normal in thickness and there is "
        "no hydronephrosis.",
        [("Is hydronephrosis present in the right kidney?", "No")],
    ),
    (
        "b2K9-LmQx7s",
        12.0,
        16.0,
        "CT",
        "Chest",
        "An axial contrast-enhanced CT of the chest in the pulmonary arterial phase shows a filling defect "
        "in the right lower lobe pulmonary artery. The lecturer scrolls through the slices to show the "
        "extent of the embolus.",
        [
            ("What does the filling defect in the pulmonary artery indicate?", "Pulmonary embolism"),
            ("Which lobe's artery contains the filling defect?", "Right lower lobe"),
            ("Which contrast phase is used?", "Pulmonary arterial phase"),
        ],
    ),
    (
        "b2K9-LmQx7s",
        140.0,
        143.0,
        "CT",
        "Chest",
        "Lung windows show ground-glass opacities in the periphery of both lower lobes.",
        [("Where are the ground-glass opacities distributed?", "Peripheral lower lobes")],
    ),
    (
        "Vx0dTe5uGa1",
        204.0,
        206.0,
        "Surgical and Procedural",
        "Skin and Integumentary System",
        "The surgeon excises an elliptical segment of skin around a pigmented lesion with 2 mm margins and "
        "closes the defect with interrupted sutures.",
        [
            ("What shape of excision is performed?", "Elliptical"),
            ("How is the defect closed?", "Interrupted sutures"),
        ],
    ),
    (
        "Vx0dTe5uGa1",
        260.0,
        264.0,
        "Surgical and Procedural",
        "Skin and Integumentary System",
        "The excised specimen is oriented with a suture at the superior pole before being sent for "
        "histopathology.",
        [("Why is a suture placed on the specimen?", "To orient it for pathology")],
    ),
]


def make_openbiomedvid(out: Path) -> None:
    width, height = OBV_SIZE
    rows = []
    for number, (video_id, start, end, modality, region, caption, qa_pairs) in enumerate(OBV_CLIPS):
        # Duration from the exact timestamps; the name truncates them to whole seconds.
        duration = end - start
        video = f"{video_id}_{int(start)}_{int(end)}.mp4"
        num_frames = round(duration * VIDEO_FPS)
        write_video(
            out / "media" / "openbiomedvid" / video, num_frames, VIDEO_FPS, width, height, seed=4000 + number
        )
        rows.append(
            {
                "id": video.removesuffix(".mp4"),
                "video_id": video_id,
                "video_url": f"https://www.youtube.com/watch?v={video_id}",
                "video": video,
                "timestamp": [start, end],
                "caption": caption,
                "qa_pairs": [{"question": q, "answer": a} for q, a in qa_pairs],
                "modality": modality,
                "anatomical_region": region,
                "video_metadata": {
                    "original": {
                        "duration": duration,
                        "fps": VIDEO_FPS,
                        "frame_count": num_frames,
                        "resolution": {"width": width, "height": height},
                    }
                },
            }
        )
    write_jsonl(out / "openbiomedvid" / "train.jsonl", rows)


# ---------------------------------------------------------------------------------------------------
# Real rows (VQA-RAD, SLAKE, MedQA, PubMedQA): small subsets of the redistributable releases in
# ../shared/realdata (see tasks/samples/README.md for sources and licences), copied verbatim in each
# release's own schema with their real images. Chosen by a fixed rule (smallest images first), so a
# rebuild picks the same rows. Without the real-data folder these files are left as committed.

REALDATA = Path(os.environ.get("OBV_EVAL_REALDATA", REPO_ROOT.parent / "shared" / "realdata"))
REAL_BENCHMARKS = ("vqarad", "slake", "medqa", "pubmedqa")


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def make_real_vqarad(out: Path, realdata: Path) -> None:
    release = realdata / "vqarad"
    rows = json.loads((release / "VQA_RAD Dataset Public.json").read_text(encoding="utf-8"))
    test = [r for r in rows if r["phrase_type"] in ("test_freeform", "test_para")]
    images = sorted(
        {r["image_name"] for r in test},
        key=lambda n: ((release / "VQA_RAD Image Folder" / n).stat().st_size, n),
    )
    # The smallest image with a closed item whose gold is not yes/no ("X or Y?"), then the smallest others.
    either_or = next(
        n
        for n in images
        if any(
            r["image_name"] == n
            and r["answer_type"].strip() == "CLOSED"
            and r["answer"].strip().lower() not in ("yes", "no")
            for r in test
        )
    )
    chosen: list[dict[str, Any]] = []
    for name in [either_or, *[n for n in images if n != either_or]]:
        chosen += [r for r in test if r["image_name"] == name][:3]
        if len(chosen) >= 8:
            break
    # Two training rows too: the loader must keep only the test split.
    train = [r for r in rows if r["image_name"] == chosen[0]["image_name"] and r not in test][:2]
    write_json(out / "vqarad" / "test.json", chosen + train)
    for name in dict.fromkeys(r["image_name"] for r in chosen):
        _copy(release / "VQA_RAD Image Folder" / name, out / "media" / "vqarad" / name)


def make_real_slake(out: Path, realdata: Path) -> None:
    release = realdata / "slake"
    rows = json.loads((release / "test.json").read_text(encoding="utf-8"))
    images = sorted(
        {r["img_name"] for r in rows if r["q_lang"] == "en"},
        key=lambda n: ((release / "imgs" / n).stat().st_size, n),
    )
    chosen: list[dict[str, Any]] = []
    for name in images:
        mine = [r for r in rows if r["img_name"] == name and r["q_lang"] == "en"]
        closed = [r for r in mine if r["answer_type"] == "CLOSED"][:1]
        chosen += closed + [r for r in mine if r["answer_type"] == "OPEN"][: 3 - len(closed)]
        if len(chosen) >= 8:
            break
    chosen = chosen[:8]
    # One Chinese row of a chosen image: the English-only task must drop it.
    shown = {c["img_name"] for c in chosen}
    chinese = min(
        (r for r in rows if r["q_lang"] == "zh"), key=lambda r: (r["img_name"] not in shown, r["qid"])
    )
    write_json(out / "slake" / "test.json", [*chosen, chinese])
    for name in dict.fromkeys(r["img_name"] for r in [*chosen, chinese]):
        _copy(release / "imgs" / name, out / "media" / "slake" / "imgs" / name)


def make_real_medqa(out: Path, realdata: Path) -> None:
    lines = (realdata / "medqa" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    write_jsonl(out / "medqa" / "test.jsonl", [json.loads(line) for line in lines[:6]])


def make_real_pubmedqa(out: Path, realdata: Path) -> None:
    release = realdata / "pubmedqa"
    items = json.loads((release / "ori_pqal.json").read_text(encoding="utf-8"))
    truth = json.loads((release / "test_ground_truth.json").read_text(encoding="utf-8"))
    wanted = {"yes": 3, "no": 2, "maybe": 1}
    chosen: dict[str, Any] = {}
    for pmid in sorted(truth, key=int):
        if wanted.get(truth[pmid], 0) > 0:
            wanted[truth[pmid]] -= 1
            chosen[pmid] = items[pmid]
    # One labelled item outside the official test split: the benchmark must leave it out.
    outside = min((p for p in items if p not in truth), key=int)
    chosen[outside] = items[outside]
    write_json(out / "pubmedqa" / "test.json", chosen)


REAL_BUILDERS = [make_real_vqarad, make_real_slake, make_real_medqa, make_real_pubmedqa]


BUILDERS = [
    make_surgeryvqa,
    make_mimicechoqa,
    make_pathvqa,
    make_openbiomedvid,
]


def build(out: Path, realdata: Path | None = REALDATA) -> None:
    for builder in BUILDERS:
        builder(out)
    if realdata is not None and realdata.is_dir():
        for real_builder in REAL_BUILDERS:
            real_builder(out, realdata)


def _is_real(rel: Path) -> bool:
    parts = rel.parts
    return parts[0] in REAL_BENCHMARKS or (
        parts[0] == "media" and len(parts) > 1 and parts[1] in REAL_BENCHMARKS
    )


def check(out: Path) -> int:
    """Rebuild into a temporary folder and compare with ``out`` file by file."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        build(fresh)
        expected = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
        problems = []
        for rel in expected:
            committed = out / rel
            if not committed.is_file():
                problems.append(f"missing: {rel}")
            elif not filecmp.cmp(committed, fresh / rel, shallow=False):
                problems.append(f"differs: {rel}")
        # Files a build no longer writes (renamed samples) would linger unnoticed; README.md is by hand.
        present = {p.relative_to(out) for p in out.rglob("*") if p.is_file()} if out.is_dir() else set()
        # Without the real data the real samples cannot be rebuilt: they stay as committed.
        kept = set() if REALDATA.is_dir() else {p for p in present if _is_real(p)}
        problems += [
            f"not generated: {rel}"
            for rel in sorted(present - set(expected) - kept)
            if rel.name != "README.md"
        ]
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(
            f"{len(problems)} sample file(s) out of date; run: python scripts/make_samples.py",
            file=sys.stderr,
        )
        return 1
    print(f"{len(expected)} sample files up to date in {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: tasks/samples)"
    )
    parser.add_argument(
        "--check", action="store_true", help="compare a fresh build with --out, write nothing"
    )
    args = parser.parse_args(argv)
    if args.check:
        return check(args.out)
    build(args.out)
    print(f"wrote sample data to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
