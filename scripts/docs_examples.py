"""Regenerate the command-output examples of docs/ by running the commands on the offline example.

A generated block is the fenced block right after a marker line

    <!-- example: NAME (scripts/docs_examples.py) -->

and NAME is a scenario below: it copies examples/quickstart into a temporary folder (its own GPUX_HOME
in ~/.cache/gpux there, shown as `~`), sets the scene with commands it does not show, then runs the
commands it shows and records what they print (stdout and stderr, as a terminal interleaves them, with
no colours since the output is piped).

    python scripts/docs_examples.py           rewrite the blocks
    python scripts/docs_examples.py --check   exit 1, with a diff, if a block differs from what the tool
                                              prints, beyond what varies from run to run or machine to
                                              machine: durations and digests (see `normalise`)
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "quickstart"
MARKER = re.compile(r"^<!-- example: ([\w-]+) \(scripts/docs_examples\.py\) -->$")


class Session:
    """A copy of the offline example in `root`/project, and the transcript of the commands shown."""

    def __init__(self, root: Path):
        self.root = root
        self.project = root / "project"
        self.project.mkdir()
        shutil.copy(EXAMPLE / "gpux.models.yml", self.project)
        shutil.copytree(EXAMPLE / "models", self.project / "models")
        self.env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "GPUX_PROJECT")}
        self.env.update(
            GPUX_HOME=str(root / ".cache" / "gpux"),
            HF_HUB_OFFLINE="1",
            NO_COLOR="1",
            COLUMNS="100",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=str(REPO),
        )
        self.lines: list[str] = []

    def gpux(self, *args: str, show: bool = True, comment: str = "") -> None:
        """Run `gpux ARGS` in the project; with `show`, add the command and what it printed to the transcript."""
        r = subprocess.run(
            [sys.executable, "-m", "gpuxbuild", *args],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )
        if r.returncode != 0:
            raise SystemExit(f"docs_examples: gpux {' '.join(args)} exited {r.returncode}:\n{r.stdout}")
        if show:
            shown = "$ gpux " + " ".join(f'"{a}"' if " " in a else a for a in args)
            self.lines.append(f"{shown:<30} # {comment}" if comment else shown)
            self.lines += r.stdout.replace(str(self.root), "~").splitlines()

    def manifest(self, models: dict[str, str]) -> None:
        """Rewrite gpux.models.yml with `models` (name -> source), all text classifiers."""
        body = "".join(
            f"  {name}:\n    source: {source}\n    task: text-classification\n" for name, source in models.items()
        )
        (self.project / "gpux.models.yml").write_text(f"version: 1\nmodels:\n{body}")


def build(s: Session) -> None:
    s.gpux("lock", show=False)
    s.gpux("build")
    s.gpux("build", "--locked", comment="CI: every artifact must have the digest gpux.lock records")


def sync(s: Session) -> None:
    models = s.project / "models"
    shutil.copytree(models / "sentiment", models / "reviews")
    s.manifest({"sentiment": "path:./models/sentiment", "old": "path:./models/sentiment"})
    s.gpux("sync", show=False)
    # then: a model added, one removed, a placed file deleted, and a file of your own in .gpux/models
    s.manifest({"sentiment": "path:./models/sentiment", "reviews": "path:./models/reviews"})
    placed = s.project / ".gpux" / "models" / "sentiment"
    (placed / "tokenizer.json").unlink()
    (placed / "notes.txt").write_text("mine\n")
    s.gpux("sync")


def pull(s: Session) -> None:
    s.gpux("pull", "path:./models/sentiment", "--no-build")
    s.gpux("pull", "path:./models/sentiment")


def verify(s: Session) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    keys = s.project / "keys"
    keys.mkdir()
    (keys / "build.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (keys / "build.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    s.gpux("build", "--sign-key", "keys/build.pem", show=False)
    s.gpux("verify", "sentiment", "--key", "keys/build.pub")


SCENARIOS = {"build": build, "sync": sync, "pull": pull, "verify": verify}


def transcript(name: str) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="gpux-docs-") as tmp:
        session = Session(Path(tmp))
        SCENARIOS[name](session)
        return session.lines


def normalise(lines: list[str]) -> list[str]:
    """What may differ between two honest runs: durations, and digests and commits (they depend on the
    toolchain that built the artifact)."""
    out = []
    for line in lines:
        line = re.sub(r"\b\d+\.\d+s\b", "N.Ns", line)
        line = re.sub(r"\b[0-9a-f]{12,64}\b", "HEX", line)
        out.append(line)
    return out


def blocks(text: str) -> list[tuple[str, int, int]]:
    """(scenario, first line, end line) of each generated block's body, in line numbers of `text`."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        m = MARKER.match(line)
        if m:
            if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
                raise SystemExit(f"docs_examples: the marker on line {i + 1} is not followed by a fenced block")
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            found.append((m.group(1), i + 2, end))
    return found


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print(__doc__, file=sys.stderr)
        return 2
    docs = {doc: doc.read_text() for doc in sorted((REPO / "docs").glob("*.md"))}
    named = {name: doc for doc, text in docs.items() for name, _, _ in blocks(text)}
    for name, doc in named.items():
        if name not in SCENARIOS:
            raise SystemExit(
                f"docs_examples: {doc.name} names no scenario {name!r} (there are: {', '.join(SCENARIOS)})"
            )
    names = sorted(named)
    # Each scenario has its own folder and GPUX_HOME: two run at once.
    with ThreadPoolExecutor(max_workers=2) as pool:
        transcripts = dict(zip(names, pool.map(transcript, names), strict=True))
    failed = False
    for doc, text in docs.items():
        lines = text.splitlines()
        for name, start, end in reversed(blocks(text)):
            fresh = transcripts[name]
            if check:
                if normalise(lines[start:end]) != normalise(fresh):
                    failed = True
                    print(f"{doc.relative_to(REPO)}: example {name!r} is not what the tool prints:")
                    sys.stdout.writelines(
                        difflib.unified_diff(
                            [f"{x}\n" for x in lines[start:end]], [f"{x}\n" for x in fresh], "docs", "gpux"
                        )
                    )
            else:
                lines[start:end] = fresh
        if not check and lines != text.splitlines():
            doc.write_text("\n".join(lines) + "\n")
            print(f"rewrote {doc.relative_to(REPO)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
