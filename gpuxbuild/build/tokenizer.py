"""The tokenizer files of an artifact: always a fast tokenizer (tokenizer.json) plus its config files."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from gpuxbuild.errors import GpuxError, MissingExtraError

TOKENIZER_CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
SLOW_TOKENIZER_FILES = (
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "spm.model",
    "tokenizer.model",
)


def ensure_fast_tokenizer(source_dir: Path, out_dir: Path) -> list[str]:
    """Put tokenizer.json and the tokenizer config files of ``source_dir`` into ``out_dir``.

    A repo that ships only slow-tokenizer files gets a tokenizer.json converted by transformers.
    Returns the file names written, sorted.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if (source_dir / "tokenizer.json").is_file():
        shutil.copyfile(source_dir / "tokenizer.json", out_dir / "tokenizer.json")
    elif any((source_dir / name).is_file() for name in SLOW_TOKENIZER_FILES):
        written += _convert_slow(source_dir, out_dir)
    else:
        raise GpuxError(
            f"{source_dir.name}: no tokenizer files (tokenizer.json or a vocabulary)",
            "use a model repo that ships its tokenizer",
        )
    for name in TOKENIZER_CONFIG_FILES:
        if (source_dir / name).is_file():
            shutil.copyfile(source_dir / name, out_dir / name)
    return sorted({"tokenizer.json", *written, *(n for n in TOKENIZER_CONFIG_FILES if (out_dir / n).is_file())})


def _convert_slow(source_dir: Path, out_dir: Path) -> list[str]:
    """Write tokenizer.json converted from the slow tokenizer; also its config files when the repo lacks them."""
    try:
        import transformers
    except ImportError:
        raise MissingExtraError("convert", f"converting the slow tokenizer of {source_dir.name}") from None

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source_dir, use_fast=True, local_files_only=True)
    except Exception as exc:  # transformers raises many types for unreadable tokenizers
        raise GpuxError(
            f"{source_dir.name}: cannot load its tokenizer: {exc}".splitlines()[0],
            "check the tokenizer files in the repo",
        ) from exc
    if not tokenizer.is_fast:
        raise GpuxError(
            f"{source_dir.name}: {type(tokenizer).__name__} has no fast (tokenizers) version",
            "use a model whose tokenizer transformers can convert to tokenizer.json",
        )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp, legacy_format=False)
        shutil.copyfile(Path(tmp) / "tokenizer.json", out_dir / "tokenizer.json")
        generated = [n for n in TOKENIZER_CONFIG_FILES if (Path(tmp) / n).is_file() and not (source_dir / n).is_file()]
        for name in generated:
            shutil.copyfile(Path(tmp) / name, out_dir / name)
    return generated
