"""The judge's prompt, the JSON schema that forces its answer, and the checks an answer must pass.

Everything about labels comes from `curator.labels`: the rubric text, the level ranges, the class names.
"""

from __future__ import annotations

import json

from curator import labels

DEFAULT_MAX_CHARS = 8_000
SCHEMA_NAME = "code_file_labels"
LABEL_FIELDS = (labels.QUALITY.name, labels.STRUCTURED_DATA.name, "content_type")

SYSTEM_PROMPT = (
    "You label source files for curating the pretraining data of a code language model. Read the file and "
    "judge it against the rubric below. Judge the file as it is, not the project it comes from. Answer only "
    "with the JSON object the response format asks for.\n\n" + labels.rubric_markdown()
)


def label_schema() -> dict:
    """JSON schema of an answer: the two ordinal heads as integer levels, the content type as a class name.

    Levels are an enum rather than minimum/maximum: every constrained decoder (OpenAI strict mode, vLLM,
    llama.cpp grammars) enforces an enum, not all enforce numeric bounds.
    """
    props = {
        head.name: {"type": "integer", "enum": head.level_values, "description": head.question}
        for head in (labels.QUALITY, labels.STRUCTURED_DATA)
    }
    props["content_type"] = {"type": "string", "enum": list(labels.CONTENT_TYPES)}
    return {
        "type": "object",
        "properties": props,
        "required": list(LABEL_FIELDS),
        "additionalProperties": False,
    }


def response_format() -> dict:
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": label_schema()},
    }


def cut_content(content: str, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, bool]:
    if len(content) <= max_chars:
        return content, False
    return content[:max_chars], True


def user_message(row: dict, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    content, cut = cut_content(row["content"], max_chars)
    head = [
        f"Language: {row.get('language', 'unknown')}",
        f"Path: {row.get('max_stars_repo_path') or 'unknown'}",
    ]
    if cut:
        # The judge must know the end is missing, or it marks every long file as truncated (quality 1).
        head.append(
            f"Note: the file has {len(row['content']):,} characters; only the first {max_chars:,} are shown. "
            "The cut is ours, not the author's: do not count it against the file."
        )
    body = content + ("\n[... cut here ...]" if cut else "")
    return "\n".join(head) + "\n\n<file>\n" + body + "\n</file>"


def build_messages(row: dict, max_chars: int = DEFAULT_MAX_CHARS) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(row, max_chars)},
    ]


def build_request_body(
    row: dict, model: str, max_chars: int = DEFAULT_MAX_CHARS, extra: dict | None = None
) -> dict:
    """The body of one Chat Completions request; the same body goes online or into a batch file.

    `extra` carries optional parameters (temperature, reasoning_effort, max_completion_tokens) only when set:
    some models reject parameters they do not support, such as a temperature for reasoning models.
    """
    body = {"model": model, "messages": build_messages(row, max_chars), "response_format": response_format()}
    body.update({k: v for k, v in (extra or {}).items() if v is not None})
    return body


class BadAnswer(ValueError):
    """An answer that must not become a label; the message is the reason recorded in the failures."""


def parse_answer(content: str | None) -> dict:
    """The labels in a judge's message content, or BadAnswer saying what is wrong with it."""
    if content is None or not content.strip():
        raise BadAnswer("empty answer")
    try:
        answer = json.loads(content)
    except json.JSONDecodeError as e:
        raise BadAnswer(f"malformed JSON: {e.msg} at char {e.pos}") from None
    if not isinstance(answer, dict):
        raise BadAnswer(f"answer is a JSON {type(answer).__name__}, not an object")
    missing = [f for f in LABEL_FIELDS if f not in answer]
    if missing:
        raise BadAnswer(f"missing fields {missing}")
    values = [answer[f] for f in LABEL_FIELDS]
    problems = labels.validate_labels(*values)
    if problems:
        raise BadAnswer("invalid labels: " + "; ".join(problems))
    return dict(zip(LABEL_FIELDS, (int(values[0]), int(values[1]), values[2]), strict=True))


def parse_completion(completion: dict) -> dict:
    """The labels in a Chat Completion (as a plain dict, from the SDK or a batch output line)."""
    choices = completion.get("choices") or []
    if not choices:
        raise BadAnswer("no choices in the completion")
    choice = choices[0]
    message = choice.get("message") or {}
    if message.get("refusal"):
        raise BadAnswer(f"refusal: {str(message['refusal'])[:200]}")
    if choice.get("finish_reason") == "length":
        raise BadAnswer("answer cut by the token limit (finish_reason=length)")
    if choice.get("finish_reason") == "content_filter":
        raise BadAnswer("answer withheld by a content filter")
    return parse_answer(message.get("content"))
