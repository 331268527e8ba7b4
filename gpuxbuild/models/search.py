"""`gpux search`: models found across the registries that can search, each with the source to paste into `gpux add`.

Which registries are asked: `--registry` (repeatable: `hf`, `mlflow`, `oci://HOST`); by default the Hub, MLflow
when MLFLOW_TRACKING_URI is set, and each OCI registry of GPUX_SEARCH_OCI (space- or comma-separated hosts).
Each is asked for `limit` models; the table lists the Hub's by downloads, MLflow's by last update, OCI's by
repository and tag, in that order of registries.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from gpuxbuild.errors import GpuxError, RegistryError, quote

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


@dataclass(frozen=True)
class SearchResult:
    """One model found: where, what, and the exact `gpux add` source."""

    registry: str  # "huggingface", "mlflow", "oci"
    source: str
    name: str
    task: str | None = None
    downloads: int | None = None
    likes: int | None = None
    updated: str | None = None  # ISO date (YYYY-MM-DD)
    note: str | None = None  # MLflow aliases, OCI tags beyond the first

    def as_dict(self) -> dict:
        return {
            "registry": self.registry,
            "source": self.source,
            "name": self.name,
            "task": self.task,
            "downloads": self.downloads,
            "likes": self.likes,
            "updated": self.updated,
            "note": self.note,
        }


@dataclass(frozen=True)
class Target:
    """A registry to search: its kind and, for OCI, the host."""

    kind: str  # "huggingface", "mlflow", "oci"
    host: str | None = None

    @property
    def display(self) -> str:
        return f"oci://{self.host}" if self.host else self.kind


def targets(registries: tuple[str, ...] = ()) -> list[Target]:
    """The registries to search: those named, else the Hub, MLflow (MLFLOW_TRACKING_URI) and GPUX_SEARCH_OCI's."""
    if not registries:
        found = [Target("huggingface")]
        if os.environ.get("MLFLOW_TRACKING_URI", "").strip():
            found.append(Target("mlflow"))
        hosts = [h for h in re.split(r"[\s,]+", os.environ.get("GPUX_SEARCH_OCI", "")) if h]
        return found + [_oci(h if "://" in h else f"oci://{h}") for h in hosts]
    out: list[Target] = []
    for name in registries:
        if name.startswith("oci://"):
            target = _oci(name)
        elif name in ("hf", "huggingface"):
            target = Target("huggingface")
        elif name == "mlflow":
            target = Target("mlflow")
        else:
            raise GpuxError(
                f"--registry {quote(name)}: cannot search it", "searchable: hf, mlflow, oci://HOST", exit_code=2
            )
        if target not in out:
            out.append(target)
    return out


def _oci(url: str) -> Target:
    host = url.removeprefix("oci://").strip("/")
    if not host or "/" in host:
        raise GpuxError(
            f"{quote(url)} is not an OCI registry to search", "write oci://HOST[:PORT] (no repository)", exit_code=2
        )
    return Target("oci", host)


@dataclass
class SearchOutcome:
    """What the registries answered; `failures` are those that could not (one line each)."""

    results: list[SearchResult]
    failures: list[GpuxError]


def search(
    query: str, *, registries: tuple[str, ...] = (), task: str | None = None, limit: int = DEFAULT_LIMIT
) -> SearchOutcome:
    """Models matching `query` (a substring of their name) in each registry, up to `limit` from each. A registry
    that fails is reported in `failures` while the others' results stand; when every registry fails, the first
    failure is raised."""
    from gpuxbuild.tasks import normalize_task

    if task is not None and normalize_task(task) is None:
        raise GpuxError(
            f"--task {quote(task)}: not a task gpuxbuild knows", "see `gpux help manifest` (task)", exit_code=2
        )
    asked = targets(registries)
    outcome = SearchOutcome([], [])
    for target in asked:
        if task is not None and target.kind != "huggingface":
            continue  # MLflow's registered models and OCI repositories carry no task to filter by
        try:
            if target.kind == "huggingface":
                outcome.results += _hub(query, task, limit)
            elif target.kind == "mlflow":
                outcome.results += _mlflow(query, limit)
            else:
                outcome.results += _oci_search(target.host or "", query, limit)
        except RegistryError as exc:
            outcome.failures.append(exc)
    if outcome.failures and len(outcome.failures) == len(asked):
        raise outcome.failures[0]
    return outcome


def _hub(query: str, task: str | None, limit: int) -> list[SearchResult]:
    from huggingface_hub import HfApi

    from gpuxbuild.network import RetryPolicy, requests_transient
    from gpuxbuild.registries.huggingface import HuggingFaceManager

    manager = HuggingFaceManager(project=None)  # no project: searching only
    manager._need_network("searching the Hub")
    api = HfApi(endpoint=manager.endpoint)

    def call() -> list:
        return list(
            api.list_models(
                search=query or None,
                filter=task,
                sort="downloads",
                direction=-1,
                limit=limit,
                expand=["pipeline_tag", "downloads", "likes", "lastModified"],
            )
        )

    with manager._errors("search"):
        models = RetryPolicy.from_env().run(call, requests_transient)
    return [
        SearchResult(
            "huggingface",
            f"hf:{m.id}",
            m.id,
            m.pipeline_tag,
            m.downloads,
            m.likes,
            m.last_modified.date().isoformat() if m.last_modified else None,
        )
        for m in models
    ]


def _mlflow(query: str, limit: int) -> list[SearchResult]:
    from gpuxbuild.registries.mlflow import MlflowManager

    hits = MlflowManager(project=None).search(query, limit)  # no project: searching only
    hits.sort(key=lambda h: (-(h.updated or 0), h.name))
    return [
        SearchResult(
            "mlflow",
            f"mlflow:{h.name}/{h.version}",
            h.name,
            updated=datetime.fromtimestamp(h.updated / 1000, UTC).date().isoformat() if h.updated else None,
            note=("aliases: " + ", ".join(h.aliases)) if h.aliases else None,
        )
        for h in hits[:limit]
    ]


def _oci_search(host: str, query: str, limit: int) -> list[SearchResult]:
    from gpuxbuild.ociclient import OciClient, list_repositories

    label = f"search oci://{host}"
    repos = [r for r in list_repositories(host, label=label, error=RegistryError) if query.lower() in r.lower()]
    found = []
    for repo in sorted(repos)[:limit]:
        tags = OciClient(host, repo, label=label, error=RegistryError).tags()
        if tags:
            latest = "latest" if "latest" in tags else tags[-1]
            others = [t for t in tags if t != latest]
            note = f"tags: {', '.join(others[:5])}" + (" ..." if len(others) > 5 else "") if others else None
            found.append(SearchResult("oci", f"oci://{host}/{repo}:{latest}", repo, note=note))
    return found
