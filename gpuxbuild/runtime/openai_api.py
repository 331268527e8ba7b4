"""OpenAI-compatible request and answer shapes (/v1/embeddings, /v1/completions, /v1/chat/completions).

Requests are checked and translated into `Model.predict` options; answers and stream chunks are built from
its results. The HTTP side is in runtime/server.py.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gpuxbuild.errors import GpuxError
from gpuxbuild.runtime.inputs import validate_options

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

# Request fields accepted with only their neutral value (what an unchanged client sends).
_NEUTRAL = {
    "echo": False,
    "frequency_penalty": 0,
    "logit_bias": None,
    "logprobs": None,
    "n": 1,
    "presence_penalty": 0,
    "suffix": None,
    "top_logprobs": None,
    "best_of": 1,
}
_IGNORED = ("user", "metadata", "store", "service_tier", "stream_options", "model", "stream")
_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}
_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


def _bad(message: str, hint: str) -> GpuxError:
    return GpuxError(message, hint, exit_code=2)


@dataclass(frozen=True)
class GenerationRequest:
    """A /v1/completions or /v1/chat/completions request: the prompt text and `Model.predict` options."""

    prompt: str
    options: dict = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    chat: bool = False  # the prompt is a rendered chat template, which holds its special tokens


def _check_fields(body: dict, allowed: tuple[str, ...]) -> None:
    for key, value in body.items():
        if key in allowed or key in _IGNORED:
            continue
        if key in _NEUTRAL:
            if value is not None and value != _NEUTRAL[key]:
                raise _bad(f"{key}={json.dumps(value)[:40]} is not supported", f"leave {key} out")
            continue
        raise _bad(f"unknown field {str(key)[:40]!r}", f"fields gpux serves: {sorted(allowed)}")


def _generation_options(body: dict) -> tuple[dict, bool, bool]:
    """(options, stream, include_usage) from max_tokens, temperature, top_p, seed, stop, stream."""
    options: dict = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    options["max_new_tokens"] = _DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature == 0:
            options["do_sample"] = False  # OpenAI's temperature 0: the likeliest token each time
        else:
            options["temperature"] = temperature
    for key in ("top_p", "seed", "stop"):
        if body.get(key) is not None:
            options[key] = body[key]
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream must be true or false", "pass stream: true or leave it out")
    usage = body.get("stream_options") or {}
    include_usage = bool(isinstance(usage, dict) and usage.get("include_usage"))
    try:
        options = validate_options(options)
    except GpuxError as exc:  # name the OpenAI field, not gpux's option
        raise _bad(
            exc.message.replace("max_new_tokens", "max_tokens"),
            (exc.hint or "").replace("max_new_tokens", "max_tokens"),
        ) from None
    return options, stream, include_usage


def completion_request(body: dict) -> GenerationRequest:
    """A /v1/completions body: one prompt string (a list of one is taken too)."""
    _check_fields(body, ("prompt", "max_tokens", "temperature", "top_p", "seed", "stop"))
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _bad("prompt must be a string", 'e.g. {"model": "NAME", "prompt": "Once upon a time"}')
    options, stream, usage = _generation_options(body)
    return GenerationRequest(prompt, options, stream, usage)


def chat_template(folder: Path) -> str | None:
    """The model's chat template: tokenizer_config.json's chat_template (its "default" when a list), or
    chat_template.jinja beside it; None when it has none."""
    path = folder / "tokenizer_config.json"
    config = {}
    if path.is_file():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            config = {}
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if isinstance(template, str) and template:
        return template
    jinja = folder / "chat_template.jinja"
    return jinja.read_text(encoding="utf-8") if jinja.is_file() else None


def _special(config: dict, key: str) -> str:
    value = config.get(key)
    return value.get("content", "") if isinstance(value, dict) else (value or "")


def render_chat(folder: Path, messages: list[dict]) -> str:
    """The prompt for `messages` from the model's chat template (transformers' sandboxed Jinja rules)."""
    template = chat_template(folder)
    if template is None:
        raise _bad(
            f"model {folder.name} has no chat template (tokenizer_config.json has no chat_template)",
            "use POST /v1/completions with a prompt, or a model whose tokenizer defines a chat template",
        )
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    config = {}
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=_special(config, "bos_token"),
            eos_token=_special(config, "eos_token"),
        )
    except TemplateError as exc:
        raise _bad(f"the chat template refused the messages: {exc}"[:200], "check the roles and order") from None


def chat_request(body: dict, folder: Path) -> GenerationRequest:
    """A /v1/chat/completions body: messages rendered with the model's chat template."""
    _check_fields(body, ("messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list", 'e.g. [{"role": "user", "content": "Hello"}]')
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _bad("each message needs a role and a content", 'e.g. {"role": "user", "content": "Hello"}')
        if not isinstance(message.get("content"), str):
            raise _bad("message content must be a string", "gpux serves text models: send text content")
    options, stream, usage = _generation_options(body)
    return GenerationRequest(render_chat(folder, messages), options, stream, usage, chat=True)


def embedding_texts(body: dict) -> tuple[list[str], str]:
    """(texts, encoding_format) of a /v1/embeddings body."""
    _check_fields(body, ("input", "encoding_format", "dimensions"))
    if body.get("dimensions") is not None:
        raise _bad("dimensions is not supported", "leave dimensions out: vectors have the model's size")
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise _bad("input must be a string or a non-empty list of strings", "token-id inputs are not supported")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise _bad(f"encoding_format must be float or base64, got {str(encoding)[:20]!r}", "pass float or base64")
    return texts, encoding


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int = 0) -> dict:
    return {
        "completion_tokens": completion_tokens,
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def embeddings_answer(model: str, vectors: Sequence[Sequence[float]], encoding: str, prompt_tokens: int) -> dict:
    data = []
    for index, values in enumerate(vectors):
        vector = np.asarray(values, dtype="<f4")
        value = base64.b64encode(vector.tobytes()).decode() if encoding == "base64" else vector.tolist()
        data.append({"embedding": value, "index": index, "object": "embedding"})
    return {
        "data": data,
        "model": model,
        "object": "list",
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


class Completion:
    """The answer (or stream chunks) of one completion or chat completion request."""

    def __init__(self, model: str, chat: bool, created: int):
        self.model, self.chat, self.created = model, chat, created
        self.id = _id("chatcmpl" if chat else "cmpl")
        self.object = "chat.completion" if chat else "text_completion"

    def _choice(self, text: str | None, finish: str | None, delta: bool = False) -> dict:
        if not self.chat:
            return {"finish_reason": finish, "index": 0, "logprobs": None, "text": text or ""}
        key = "delta" if delta else "message"
        message = {} if text is None else {"content": text}
        if not delta:
            message = {"content": text or "", "role": "assistant"}
        return {"finish_reason": finish, "index": 0, "logprobs": None, key: message}

    def _head(self, chunk: bool) -> dict:
        kind = self.object + (".chunk" if chunk and self.chat else "")
        return {"created": self.created, "id": self.id, "model": self.model, "object": kind}

    def answer(self, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> dict:
        return {
            **self._head(False),
            "choices": [self._choice(text, _FINISH.get(finish_reason, finish_reason))],
            "usage": usage(prompt_tokens, completion_tokens),
        }

    def chunk(self, text: str | None, finish_reason: str | None = None, role: bool = False) -> dict:
        choice = self._choice(text, _FINISH.get(finish_reason, finish_reason) if finish_reason else None, True)
        if role and self.chat:
            choice["delta"] = {"content": "", "role": "assistant"}
        return {**self._head(True), "choices": [choice]}

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict:
        return {**self._head(True), "choices": [], "usage": usage(prompt_tokens, completion_tokens)}


def sse(data: dict | str) -> bytes:
    """One server-sent event."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()
