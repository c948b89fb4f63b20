"""Generate the bundled sample data under tasks/samples/ (synthetic, deterministic).

Every benchmark gets a handful of rows in the exact published schema (see the project facts, section 2)
plus tiny synthetic media, so tasks, adapters and training run end to end on a CPU without network.
All text is invented; none of it comes from the real datasets, which cannot be redistributed.

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
import random
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
ECHO_SIZE = (56, 56)
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


def make_mimicechoqa(out: Path) -> None:
    media = out / "media" / "mimicechoqa"
    width, height = ECHO_SIZE
    clip_paths = []
    for number, (subject, study, clip, duration) in enumerate(ECHO_CLIPS):
        rel = f"mimic-iv-echo/0.1/files/p{subject[:2]}/p{subject}/s{study}/{study}_{clip}.mp4"
        write_video(media / rel, duration * VIDEO_FPS, VIDEO_FPS, width, height, seed=2000 + number)
        still = rel.removesuffix(".mp4") + ".png"
        write_image(media / still, width, height, seed=2000 + number)
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


# --------------------------------------------------------------------------------------------------
# Image VQA. VQA-RAD and PathVQA answers are lower case as published; half of each set is yes/no and
# several questions share an image.
VQARAD_ITEMS: list[tuple[str, str, str]] = [
    ("synpic90001.png", "is there evidence of a pneumothorax?", "no"),
    ("synpic90001.png", "which lung is the mass located in?", "right lung"),
    ("synpic90002.png", "is the liver enlarged?", "yes"),
    ("synpic90002.png", "what organ is abnormal?", "liver"),
    ("synpic90003.png", "is this an mri?", "no"),
    ("synpic90003.png", "what imaging modality was used?", "ct"),
    ("synpic90004.png", "are the lateral ventricles dilated?", "yes"),
    ("synpic90004.png", "what plane is this image taken in?", "axial"),
]
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


def make_vqarad(out: Path) -> None:
    _image_vqa(out, "vqarad", VQARAD_ITEMS, size=84, seed=3000)


def make_pathvqa(out: Path) -> None:
    _image_vqa(out, "pathvqa", PATHVQA_ITEMS, size=56, seed=3100)


# SLAKE: English rows plus one Chinese row that the English-only task must drop. Closed answers are
# capitalised Yes/No as published.
SLAKE_IMAGES = {"xmlab901": ("CT", "Abdomen"), "xmlab902": ("X-Ray", "Chest"), "xmlab903": ("MRI", "Brain")}
SLAKE_ITEMS: list[tuple[str, str, str, str, str, str]] = [
    # (image folder, question, answer, answer_type, q_lang, content_type)
    ("xmlab901", "Which organ is the largest in this image?", "Liver", "OPEN", "en", "Organ"),
    ("xmlab901", "Does the liver look abnormal?", "No", "CLOSED", "en", "Abnormality"),
    ("xmlab901", "What modality is used to take this image?", "CT", "OPEN", "en", "Modality"),
    ("xmlab902", "Is the lung healthy?", "No", "CLOSED", "en", "Abnormality"),
    ("xmlab902", "Where is the abnormality located?", "Left Lung, Lower", "OPEN", "en", "Position"),
    ("xmlab902", "肺部是否健康?", "否", "CLOSED", "zh", "Abnormality"),
    ("xmlab903", "Is this a T2 weighted image?", "Yes", "CLOSED", "en", "Modality"),
    ("xmlab903", "What is the main organ in this image?", "Brain", "OPEN", "en", "Organ"),
    ("xmlab903", "Which part of the body does this image belong to?", "Head", "OPEN", "en", "Position"),
]


def make_slake(out: Path) -> None:
    for number, folder in enumerate(SLAKE_IMAGES):
        write_image(out / "media" / "slake" / "imgs" / folder / "source.jpg", 112, 112, seed=3200 + number)
    rows = []
    for folder, question, answer, answer_type, q_lang, content_type in SLAKE_ITEMS:
        modality, location = SLAKE_IMAGES[folder]
        rows.append(
            {
                "img_name": f"{folder}/source.jpg",
                "question": question,
                "answer": answer,
                "answer_type": answer_type,
                "q_lang": q_lang,
                "content_type": content_type,
                "modality": modality,
                "location": location,
                "base_type": "vqa",
            }
        )
    write_jsonl(out / "slake" / "test.jsonl", rows)


# --------------------------------------------------------------------------------------------------
# Text benchmarks (invented items in the style of the originals).
MEDQA_ITEMS: list[tuple[str, tuple[str, str, str, str], str, str]] = [
    (
        "A 23-year-old woman comes to the emergency department because of palpitations and heat "
        "intolerance for 2 months. She has lost 5 kg despite an increased appetite. Her pulse is "
        "112/min. Examination shows a diffusely enlarged, nontender thyroid gland and proptosis. Which "
        "of the following is the most likely underlying mechanism?",
        (
            "Antibodies stimulating the TSH receptor",
            "Autonomous thyroid nodule",
            "Viral infection of the thyroid",
            "Excess iodine intake",
        ),
        "A",
        "step1",
    ),
    (
        "A 67-year-old man has had crushing substernal chest pain for 40 minutes. An ECG shows ST-segment "
        "elevations in leads II, III, and aVF. His blood pressure is 84/52 mm Hg and his lungs are clear. "
        "Which of the following is the most appropriate next step in management?",
        (
            "Sublingual nitroglycerin",
            "Intravenous fluid bolus",
            "Intravenous furosemide",
            "Oral metoprolol",
        ),
        "B",
        "step2&3",
    ),
    (
        "A 4-year-old boy has had a barking cough and inspiratory stridor for 1 day after 2 days of "
        "rhinorrhea. A frontal neck radiograph shows subglottic narrowing. Which of the following is the "
        "most likely causal organism?",
        (
            "Haemophilus influenzae type b",
            "Streptococcus pyogenes",
            "Parainfluenza virus",
            "Bordetella pertussis",
        ),
        "C",
        "step1",
    ),
    (
        "A 58-year-old woman with type 2 diabetes mellitus has a serum creatinine concentration of "
        "1.4 mg/dL and a urine albumin-to-creatinine ratio of 320 mg/g. Her blood pressure is 146/92 mm Hg. "
        "Which of the following drugs is most appropriate to slow progression of her kidney disease?",
        ("Hydrochlorothiazide", "Amlodipine", "Metoprolol", "Lisinopril"),
        "D",
        "step2&3",
    ),
    (
        "A 31-year-old man has sudden severe headache described as the worst of his life. A noncontrast "
        "CT scan of the head is normal 8 hours after onset. Which of the following is the most "
        "appropriate next step?",
        ("Lumbar puncture", "MRI of the brain", "Discharge with analgesics", "Electroencephalography"),
        "A",
        "step2&3",
    ),
    (
        "A 45-year-old woman has fatigue and pruritus. Serum alkaline phosphatase activity is markedly "
        "increased and antimitochondrial antibodies are present. Which of the following is the most likely "
        "diagnosis?",
        (
            "Primary sclerosing cholangitis",
            "Primary biliary cholangitis",
            "Autoimmune hepatitis",
            "Choledocholithiasis",
        ),
        "B",
        "step1",
    ),
]


def make_medqa(out: Path) -> None:
    rows = []
    for question, options, letter, step in MEDQA_ITEMS:
        choices = dict(zip("ABCD", options, strict=True))
        rows.append(
            {
                "question": question,
                "options": choices,
                "answer": choices[letter],
                "answer_idx": letter,
                "meta_info": step,
            }
        )
    write_jsonl(out / "medqa" / "test.jsonl", rows)


# PubMedQA: invented abstracts. pubids have 9 digits so they cannot collide with real PubMed ids.
PUBMEDQA_ITEMS: list[tuple[int, str, list[tuple[str, str]], list[str], str, str]] = [
    (
        900000001,
        "Does early mobilisation after hip fracture surgery shorten hospital stay?",
        [
            ("BACKGROUND", "Delayed mobilisation after hip fracture surgery is common in older adults."),
            ("METHODS", "We reviewed 412 patients aged 65 years or older treated at two hospitals."),
            ("RESULTS", "Patients mobilised within 24 hours had a median stay 2.1 days shorter (p<0.001)."),
        ],
        ["Aged", "Early Ambulation", "Hip Fractures", "Length of Stay"],
        "Mobilisation within 24 hours of surgery was associated with a shorter hospital stay.",
        "yes",
    ),
    (
        900000002,
        "Is serum vitamin D concentration associated with the severity of community-acquired pneumonia?",
        [
            ("OBJECTIVE", "To relate admission 25-hydroxyvitamin D to pneumonia severity scores."),
            ("METHODS", "Prospective cohort of 230 adults admitted with community-acquired pneumonia."),
            ("RESULTS", "Vitamin D concentration did not differ across severity classes after adjustment."),
        ],
        ["Adult", "Community-Acquired Infections", "Pneumonia", "Vitamin D"],
        "Admission vitamin D concentration was not associated with pneumonia severity.",
        "no",
    ),
    (
        900000003,
        "Can a smartphone application improve inhaler technique in children with asthma?",
        [
            ("BACKGROUND", "Incorrect inhaler technique limits asthma control in children."),
            ("METHODS", "Randomised trial of 120 children using video feedback through an application."),
            (
                "RESULTS",
                "Correct technique rose from 41% to 78% with the application and 45% to 52% without.",
            ),
        ],
        ["Asthma", "Child", "Mobile Applications", "Nebulizers and Vaporizers"],
        "Video feedback from a smartphone application improved inhaler technique.",
        "yes",
    ),
    (
        900000004,
        "Does preoperative carbohydrate loading reduce postoperative insulin resistance in colorectal "
        "surgery?",
        [
            ("INTRODUCTION", "Carbohydrate drinks are part of enhanced recovery protocols."),
            ("METHODS", "Pilot study of 38 patients with clamp measurements on the first postoperative day."),
            (
                "RESULTS",
                "Insulin sensitivity was 18% higher with loading but the confidence interval was wide.",
            ),
        ],
        ["Colorectal Surgery", "Dietary Carbohydrates", "Insulin Resistance", "Preoperative Care"],
        "The trend favoured carbohydrate loading but the pilot was too small to be conclusive.",
        "maybe",
    ),
    (
        900000005,
        "Is routine chest radiography needed after uncomplicated central venous catheter insertion under "
        "ultrasound guidance?",
        [
            ("BACKGROUND", "Chest radiographs are often ordered to exclude pneumothorax after insertion."),
            ("METHODS", "Retrospective review of 1,050 ultrasound-guided internal jugular insertions."),
            ("RESULTS", "Two pneumothoraces (0.2%) were found, both in patients with symptoms."),
        ],
        ["Catheterization, Central Venous", "Pneumothorax", "Radiography, Thoracic", "Ultrasonography"],
        "Routine radiography after uncomplicated ultrasound-guided insertion rarely changed management.",
        "no",
    ),
    (
        900000006,
        "Is frailty associated with delirium after cardiac surgery?",
        [
            ("OBJECTIVE", "To assess frailty as a predictor of postoperative delirium."),
            ("METHODS", "Frailty was measured before surgery in 310 patients undergoing cardiac surgery."),
            ("RESULTS", "Frail patients had a higher incidence of delirium (38% vs 14%; adjusted OR 2.9)."),
        ],
        ["Cardiac Surgical Procedures", "Delirium", "Frailty", "Postoperative Complications"],
        "Preoperative frailty independently predicted delirium after cardiac surgery.",
        "yes",
    ),
]


def make_pubmedqa(out: Path) -> None:
    rows = []
    for pubid, question, sections, meshes, long_answer, decision in PUBMEDQA_ITEMS:
        rows.append(
            {
                "pubid": pubid,
                "question": question,
                "context": {
                    "contexts": [text for _, text in sections],
                    "labels": [label for label, _ in sections],
                    "meshes": meshes,
                },
                "long_answer": long_answer,
                "final_decision": decision,
            }
        )
    write_jsonl(out / "pubmedqa" / "test.jsonl", rows)


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


BUILDERS = [
    make_surgeryvqa,
    make_mimicechoqa,
    make_vqarad,
    make_pathvqa,
    make_slake,
    make_medqa,
    make_pubmedqa,
    make_openbiomedvid,
]


def build(out: Path) -> None:
    for builder in BUILDERS:
        builder(out)


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
        problems += [
            f"not generated: {rel}" for rel in sorted(present - set(expected)) if rel.name != "README.md"
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
