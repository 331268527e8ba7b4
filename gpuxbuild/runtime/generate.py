"""Token-by-token decoding with optimum's KV-cache graphs: decoder-only (model.onnx with past) and seq2seq
(encoder_model.onnx + decoder_model_merged.onnx). Greedy by default; temperature/top-k/top-p sampling with a seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gpuxbuild.errors import GpuxError

_FLOATS = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


@dataclass
class GenerationOptions:
    """Decoding settings; defaults follow transformers (greedy unless do_sample)."""

    max_new_tokens: int = 20
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    seed: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | None = None
    # Never chosen (generation_config suppress_tokens), and not as the first token (begin_suppress_tokens).
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()

    @classmethod
    def from_configs(cls, config: dict, generation_config: dict, options: dict) -> GenerationOptions:
        """Merge config.json, generation_config.json and per-call options (per-call wins)."""
        merged = {
            **{k: v for k, v in config.items() if v is not None},
            **{k: v for k, v in generation_config.items() if v is not None},
        }
        eos = merged.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
        opts = cls(
            eos_token_ids=tuple(int(e) for e in eos_ids),
            forced_bos_token_id=merged.get("forced_bos_token_id"),
            forced_eos_token_id=merged.get("forced_eos_token_id"),
            suppress_tokens=tuple(int(t) for t in merged.get("suppress_tokens") or ()),
            begin_suppress_tokens=tuple(int(t) for t in merged.get("begin_suppress_tokens") or ()),
        )
        for key in ("do_sample", "temperature", "top_k", "top_p"):
            if key in generation_config:
                setattr(opts, key, generation_config[key])
        if "max_new_tokens" in generation_config:
            opts.max_new_tokens = generation_config["max_new_tokens"]
        for key in ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "seed"):
            if key in options:
                setattr(opts, key, options[key])
        if "do_sample" not in options and any(k in options for k in ("temperature", "top_p", "seed")):
            # Asking for a temperature or a seed only makes sense when sampling.
            opts.do_sample = True
        opts.validate()
        return opts

    def validate(self) -> None:
        try:
            self.max_new_tokens = int(self.max_new_tokens)
            self.temperature = float(self.temperature)
            self.top_p = float(self.top_p)
            self.top_k = None if self.top_k in (None, 0) else int(self.top_k)
            self.seed = None if self.seed is None else int(self.seed)
        except (TypeError, ValueError) as exc:
            raise GpuxError(
                f"bad generation option: {exc}",
                "max_new_tokens, top_k, seed are integers; temperature, top_p are numbers",
                exit_code=2,
            ) from exc
        if self.max_new_tokens < 1:
            raise GpuxError("max_new_tokens must be at least 1", "pass max_new_tokens >= 1", exit_code=2)
        if self.do_sample and self.temperature <= 0:
            raise GpuxError("temperature must be > 0 when sampling", "use do_sample=false for greedy", exit_code=2)
        if not 0 < self.top_p <= 1:
            raise GpuxError("top_p must be in (0, 1]", "pass e.g. top_p=0.9", exit_code=2)


def next_token(logits: np.ndarray, opts: GenerationOptions, rng: np.random.Generator) -> int:
    """Pick the next token from one row of logits: argmax, or a sample after temperature, top-k, top-p."""
    logits = logits.astype(np.float64)
    if not opts.do_sample:
        return int(np.argmax(logits))
    logits = logits / opts.temperature
    if opts.top_k is not None and opts.top_k < logits.size:
        kth = np.partition(logits, -opts.top_k)[-opts.top_k]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if opts.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        # Keep the smallest prefix whose mass reaches top_p (always at least one token).
        cut = int(np.searchsorted(cumulative, opts.top_p)) + 1
        keep = np.zeros_like(probs, dtype=bool)
        keep[order[:cut]] = True
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


def _force(logits: np.ndarray, token: int) -> np.ndarray:
    forced = np.full_like(logits, -np.inf)
    forced[token] = 0.0
    return forced


def _empty_past(session, names: list[str], batch: int) -> dict[str, np.ndarray]:
    past = {}
    for inp in session.get_inputs():
        if inp.name in names:
            dims = [d if isinstance(d, int) else 0 for d in inp.shape]
            dims[0] = batch
            past[inp.name] = np.zeros(dims, dtype=_FLOATS.get(inp.type, np.float32))
    return past


@dataclass
class Generated:
    token_ids: list[int]
    finish_reason: str  # "eos", "length", or "stop" (the callback asked to stop, e.g. at a stop sequence)


class _Loop:
    """The bookkeeping shared by both decoders: options, rng, stopping and the streaming callback."""

    def __init__(self, opts: GenerationOptions, on_token: Callable[[int], bool | None] | None):
        self.opts = opts
        self.rng = np.random.default_rng(opts.seed)
        self.on_token = on_token
        self.tokens: list[int] = []
        self.stopped = False

    def step(self, logits: np.ndarray) -> bool:
        """Choose and record a token; True when decoding should stop."""
        opts = self.opts
        suppressed = opts.suppress_tokens + (() if self.tokens else opts.begin_suppress_tokens)
        if suppressed:
            logits = logits.copy()
            logits[list(suppressed)] = -np.inf
        if not self.tokens and opts.forced_bos_token_id is not None:
            logits = _force(logits, opts.forced_bos_token_id)
        elif len(self.tokens) == opts.max_new_tokens - 1 and opts.forced_eos_token_id is not None:
            logits = _force(logits, opts.forced_eos_token_id)
        token = next_token(logits, opts, self.rng)
        self.tokens.append(token)
        if self.on_token is not None and self.on_token(token):
            self.stopped = True
            return True
        return token in opts.eos_token_ids or len(self.tokens) >= opts.max_new_tokens

    def result(self) -> Generated:
        if self.stopped:
            return Generated(self.tokens, "stop")
        eos = bool(self.tokens) and self.tokens[-1] in self.opts.eos_token_ids
        return Generated(self.tokens, "eos" if eos else "length")


def decode_causal(
    session, input_ids: list[int], opts: GenerationOptions, on_token: Callable[[int], bool | None] | None = None
) -> Generated:
    """Generate after a prompt with an optimum decoder-only graph (past_key_values.* in, present.* out)."""
    names = [i.name for i in session.get_inputs()]
    past_names = [n for n in names if n.startswith("past_key_values.")]
    if not past_names:
        raise GpuxError(
            "this text-generation graph has no past_key_values inputs",
            "export it with the text-generation-with-past task (gpux build does)",
        )
    present_for = {p: "present." + p.removeprefix("past_key_values.") for p in past_names}
    loop = _Loop(opts, on_token)
    past = _empty_past(session, past_names, 1)
    ids = np.array([input_ids], dtype=np.int64)
    total = len(input_ids)
    positions = np.arange(total, dtype=np.int64)[None]
    while True:
        feed = {"input_ids": ids, **past}
        if "attention_mask" in names:
            feed["attention_mask"] = np.ones((1, total), dtype=np.int64)
        if "position_ids" in names:
            feed["position_ids"] = positions
        if "use_cache_branch" in names:  # older optimum exports merge two decoders behind an If, as seq2seq does
            feed["use_cache_branch"] = np.array([total > len(input_ids)])
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
        if loop.step(outputs["logits"][0, -1]):
            return loop.result()
        past = {p: outputs[present_for[p]] for p in past_names}
        ids = np.array([[loop.tokens[-1]]], dtype=np.int64)
        positions = np.array([[total]], dtype=np.int64)
        total += 1


def decode_seq2seq(
    encoder,
    decoder,
    input_ids: list[int],
    decoder_start_token_id: int,
    opts: GenerationOptions,
    on_token: Callable[[int], bool | None] | None = None,
) -> Generated:
    """Encode a text once, then decode with optimum's merged decoder (use_cache_branch false first, true after)."""
    enc_ids = np.array([input_ids], dtype=np.int64)
    enc_mask = np.ones_like(enc_ids)
    enc_feed = {"input_ids": enc_ids}
    if "attention_mask" in [i.name for i in encoder.get_inputs()]:
        enc_feed["attention_mask"] = enc_mask
    hidden = encoder.run(None, enc_feed)[0]
    return decode_with_encoder(decoder, hidden, enc_mask, [decoder_start_token_id], opts, on_token)


def decoder_logits(decoder, hidden: np.ndarray, prefix: list[int]) -> np.ndarray:
    """The merged decoder's next-token logits after `prefix`, without a cache (e.g. Whisper's language detection)."""
    names = [i.name for i in decoder.get_inputs()]
    feed = {"input_ids": np.array([prefix], dtype=np.int64), "encoder_hidden_states": hidden}
    feed["use_cache_branch"] = np.array([False])
    feed.update(_empty_past(decoder, [n for n in names if n.startswith("past_key_values.")], 1))
    outputs = dict(zip([o.name for o in decoder.get_outputs()], decoder.run(None, feed), strict=True))
    return outputs["logits"][0, -1]


def decode_with_encoder(
    decoder,
    hidden: np.ndarray,
    enc_mask: np.ndarray | None,
    prefix: list[int],
    opts: GenerationOptions,
    on_token: Callable[[int], bool | None] | None = None,
) -> Generated:
    """Decode after the decoder tokens `prefix` (the start token; Whisper's language and task tokens) given the
    encoder's hidden states; `enc_mask` is fed to decoders that take an encoder attention mask."""
    names = [i.name for i in decoder.get_inputs()]
    past_names = [n for n in names if n.startswith("past_key_values.")]
    present_for = {p: "present." + p.removeprefix("past_key_values.") for p in past_names}
    if "use_cache_branch" not in names:
        raise GpuxError(
            "the seq2seq decoder graph is not optimum's merged decoder (no use_cache_branch input)",
            "export with the text2text-generation-with-past task (gpux build does)",
        )
    loop = _Loop(opts, on_token)
    past = _empty_past(decoder, past_names, 1)
    ids = np.array([prefix], dtype=np.int64)
    out_names = [o.name for o in decoder.get_outputs()]
    first = True
    while True:
        feed = {"input_ids": ids, "encoder_hidden_states": hidden}
        if "encoder_attention_mask" in names and enc_mask is not None:
            feed["encoder_attention_mask"] = enc_mask
        feed["use_cache_branch"] = np.array([not first])
        feed.update(past)
        outputs = dict(zip(out_names, decoder.run(None, feed), strict=True))
        if loop.step(outputs["logits"][0, -1]):
            return loop.result()
        for name in past_names:
            # Cross-attention keys/values are computed on the first step only, then reused.
            if first or ".encoder." not in name:
                past[name] = outputs[present_for[name]]
        first = False
        ids = np.array([[loop.tokens[-1]]], dtype=np.int64)


def whisper_prompt(gen: dict, language: str | None, logits_after: Callable[[list[int]], np.ndarray]) -> list[int]:
    """Whisper's decoder prompt as transformers' WhisperGenerationMixin builds it from the generation config:
    <|startoftranscript|>, the forced_decoder_ids that follow it (old configs: a language slot and the task),
    the language (`language`, else detected: the likeliest language token after the start token, by
    `logits_after(prefix)`), <|transcribe|> when a language is given and no task is, and <|notimestamps|>."""
    prompt: list[int | None] = [int(gen["decoder_start_token_id"])]
    languages = {str(k): int(v) for k, v in (gen.get("lang_to_id") or {}).items()}
    task_ids = {int(v) for v in (gen.get("task_to_id") or {}).values()}
    forced = gen.get("forced_decoder_ids") or []
    if language is None and forced and forced[0][0] == 1:
        for position, (index, token) in enumerate(forced, start=1):
            if index != position:
                break
            prompt.append(None if token is None else int(token))
    if language is not None:
        token = f"<|{language}|>" if not language.startswith("<|") else language
        if token not in languages:
            raise GpuxError(
                f"language {language!r} is not one this model knows",
                f"use one of {sorted(k[2:-2] for k in languages)[:20]}, or leave it out to detect it",
                exit_code=2,
            )
        lang_id: int | None = languages[token]
    elif languages and (len(prompt) <= 1 or prompt[1] is None):
        logits = logits_after([t for t in prompt[:1] if t is not None])
        masked = np.full_like(logits, -np.inf)
        ids = sorted(languages.values())
        masked[ids] = logits[ids]
        lang_id = int(np.argmax(masked))  # ties: the lowest id, as torch's argmax
    else:
        lang_id = None
    if lang_id is not None:
        if len(prompt) > 1:
            prompt[1] = lang_id
        else:
            prompt.append(lang_id)
    if language is not None and task_ids and not task_ids & {t for t in prompt if t is not None}:
        prompt.append(int(gen["task_to_id"]["transcribe"]))
    no_timestamps = gen.get("no_timestamps_token_id")
    if no_timestamps is not None and prompt[-1] != no_timestamps:
        prompt.append(int(no_timestamps))
    return [t for t in prompt if t is not None]
