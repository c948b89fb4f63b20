"""normalize_answer, the lexical metrics and score_closed_vqa, with values worked out by hand."""

from __future__ import annotations

import pytest

from obv_eval.scoring import (
    Extraction,
    answer_recall,
    exact_match,
    normalize_answer,
    score_closed_vqa,
    token_f1,
)

NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Left-Ventricle!", "left ventricle"),
        ("  An   apple\n\tthe end ", "apple end"),
        (NUMBER_WORDS, " ".join(str(n) for n in range(21))),
        ("Twenty-one lesions", "21 lesions"),
        ("thirty", "30"),
        ("3.5 mm.", "3.5 mm"),
        ("1,000 cells", "1000 cells"),
        ("don't", "dont"),
        ("ＭＲＩ", "mri"),  # full-width letters, NFKC
        ("ﬁbrosis", "fibrosis"),  # ligature, NFKC
        ("“Quoted” — text…", "quoted text"),  # Unicode punctuation, not only ASCII
        ("10% <5", "10 5"),  # symbols separate words too
        ("abc\udcff", "abc"),  # lone surrogate replaced, then dropped as a symbol
        ("\ud835\udc01", "b"),  # a valid surrogate pair is joined (U+1D401 bold B), not replaced
        (b"caf\xc3\xa9 \xff", "café"),  # bytes decoded as UTF-8 with replacement
        ("", ""),
        ("...", ""),
        ("the", ""),
    ],
)
def test_normalize_answer(text: str | bytes, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize("text", ["\udcff\udcfe", "a\x00b", "\ufeff\u200b", b"\xff\xfe\x00", "\ud800x"])
def test_normalize_answer_output_is_valid_utf8(text: str | bytes) -> None:
    normalize_answer(text).encode("utf-8")  # raises UnicodeEncodeError if a surrogate survived


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("The Left Ventricle.", "left ventricle", 1.0),
        ("two", "2", 1.0),
        ("an MRI", "MRI", 1.0),
        ("T2-weighted", "t2 weighted", 1.0),
        ("left ventricle", "right ventricle", 0.0),
        ("3.5 mm", "35 mm", 0.0),
        ("left ventricle dilated", "left ventricle", 0.0),
    ],
)
def test_exact_match(prediction: str, gold: str, expected: float) -> None:
    assert exact_match(prediction, gold) == expected


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        # [left, atrium] vs [left, ventricle]: 1 common, P = R = 1/2
        ("left atrium", "the left ventricle", 0.5),
        # 3 common of 4 predicted and 3 gold: P = 3/4, R = 1, F1 = 2 * 3/4 / (7/4) = 6/7
        ("left ventricle is dilated", "dilated left ventricle", 6 / 7),
        # a repeated token counts once per gold occurrence: P = 1/3, R = 1, F1 = (2/3) / (4/3) = 1/2
        ("no no no", "no", 0.5),
        ("Two lesions", "2 lesions", 1.0),
        ("right atrium", "left ventricle", 0.0),
        ("", "", 1.0),
        ("the", "a", 1.0),  # both empty after normalisation
        ("", "left", 0.0),
        ("left", "", 0.0),
    ],
)
def test_token_f1(prediction: str, gold: str, expected: float) -> None:
    assert token_f1(prediction, gold) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("left atrium", "the left ventricle", 0.5),
        ("the left ventricle is markedly dilated", "dilated left ventricle", 1.0),
        # gold [left, ventricle, left]: only one "left" is in the prediction, so 2/3
        ("left ventricle", "left ventricle left", 2 / 3),
        ("ventricle", "left ventricle", 0.5),
        ("", "left", 0.0),
        ("", "", 1.0),
    ],
)
def test_answer_recall(prediction: str, gold: str, expected: float) -> None:
    assert answer_recall(prediction, gold) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "gold", "score", "extraction"),
    [
        ("No, there is no effusion", "no", 1.0, Extraction("no")),
        ("Based on the image, yes.", "Yes", 1.0, Extraction("yes")),
        ("Yes.", "No", 0.0, Extraction("yes")),
        ("yes or no", "yes", 0.0, Extraction(None, "ambiguous: no, yes")),
        ("Nothing", "no", 0.0, Extraction(None, "no yes/no found")),
        ("The axial plane.", "axial plane", 1.0, Extraction("axial plane")),
        # the gold contains the reply as whole tokens: containment counts both ways (issue 15)
        ("Axial", "axial plane", 1.0, Extraction("axial")),
        ("Two", "2", 1.0, Extraction("2")),
        ("", "axial", 0.0, Extraction(None, "empty reply")),
    ],
)
def test_score_closed_vqa(prediction: str, gold: str, score: float, extraction: Extraction) -> None:
    assert score_closed_vqa(prediction, gold) == (score, extraction)
