"""Models outside projects, Docker-like: `gpux pull`/`ls`/`rm`, `gpux inspect`, which artifact a NAME means."""
