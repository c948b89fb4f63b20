"""Answer forms the extractors read the same as plain English: ``\\boxed{}`` and CJK replies.

:func:`answer_forms` rewrites, in a reply already passed through ``reply_text`` (NFKC, so full-width
"（B）" and "答案：B" are already "(B)" and "答案:B"):

- ``\\boxed{C}``, ``\\boxed{\\text{C}}``, ``\\fbox{C}`` (with or without ``$``) -> "final answer: C.";
- CJK sentence punctuation NFKC keeps: "。" -> ".", "、" -> ",", "【B】" -> "[B]", "「B」" -> '"B"';
- Chinese answer cues: "答案" / "最终答案" / "正确答案" (with "是" / "为") -> "answer:", "选" / "选择"
  -> "choose".

The yes/no words "是" / "否" are read by the yes/no extractor (``obv_eval.scoring.yesno``).
"""

from __future__ import annotations

import re

__all__ = ["answer_forms"]

_BOXED = re.compile(
    r"\$*\s*\\(?:boxed|fbox)\s*\{\s*(?:\\(?:text|textbf|mathrm|mathbf)\s*\{\s*)?([^{}]*?)\s*\}?\s*\}\s*\$*"
)
_CJK_PUNCTUATION = str.maketrans(
    {
        "。": ".",
        "、": ",",
        "【": "[",
        "】": "]",
        "「": '"',
        "」": '"',
        "『": '"',
        "』": '"',
        "〔": "(",
        "〕": ")",
    }
)
_CJK_ANSWER_CUE = re.compile(r"(?:最终|最後|最后|正确|正確)?答案\s*(?:应该是|应为|是|为|為)?\s*[:=]?\s*")
_CJK_CHOOSE_CUE = re.compile(r"选择|選擇|选|選")


def answer_forms(text: str) -> str:
    """``text`` with boxed answers, CJK punctuation and Chinese answer cues in their English form."""
    text = _BOXED.sub(lambda m: f" final answer: {m.group(1)}. ", text)
    text = text.translate(_CJK_PUNCTUATION)
    text = _CJK_ANSWER_CUE.sub(" answer: ", text)
    return _CJK_CHOOSE_CUE.sub(" choose ", text).strip()
