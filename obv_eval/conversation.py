"""The conversation every backend sends and training renders, for every model family.

Each family in obv_eval.models says how its chat template takes a video (Family.video_in_template); the
families so far (Qwen2-VL, Qwen2.5-VL) take typed entries ({"type": "video"}, {"type": "image"}) that
their template renders as vision placeholders, which is what this module builds.

One user turn holds the visuals first (videos, then images, in the order given) and then the
text, as in the study's evaluation scripts; the system prompt is the chat template's default
unless one is given. Visual entries carry no payload: backends pass the frames separately in the
same order, so every backend renders the same text through the checkpoint's own chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

VisualKind = Literal["video", "image"]
Message = dict[str, Any]


class ChatTemplater(Protocol):
    def apply_chat_template(self, conversation: list[Message], **kwargs: Any) -> Any: ...


def user_content(text: str, visual_kinds: Sequence[VisualKind]) -> list[dict[str, str]]:
    content: list[dict[str, str]] = [{"type": kind} for kind in visual_kinds]
    content.append({"type": "text", "text": text})
    return content


def build_messages(
    question: str, visual_kinds: Sequence[VisualKind] = (), system_prompt: str | None = None
) -> list[Message]:
    """The evaluation conversation: an optional system turn, then one user turn."""
    messages: list[Message] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": user_content(question, visual_kinds)})
    return messages


def build_training_messages(
    turns: Sequence[tuple[str, str]],
    visual_kinds: Sequence[VisualKind] = (),
    system_prompt: str | None = None,
) -> list[Message]:
    """A multi-turn training conversation; the visuals belong to the first user turn."""
    if not turns:
        raise ValueError("a training conversation needs at least one (question, answer) turn")
    messages: list[Message] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    for index, (question, answer) in enumerate(turns):
        kinds = visual_kinds if index == 0 else ()
        messages.append({"role": "user", "content": user_content(question, kinds)})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def render_prompt(
    templater: ChatTemplater, messages: list[Message], add_generation_prompt: bool = True
) -> str:
    """Render messages to the exact text the model sees, through the checkpoint's chat template."""
    text = templater.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    if not isinstance(text, str):
        raise TypeError(f"chat template rendered {type(text).__name__}, expected str")
    return text
