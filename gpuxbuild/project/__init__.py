"""The project's files: gpux.models.yml (manifest), gpux.lock (lockfile), locking them (resolver), edits."""
