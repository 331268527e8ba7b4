"""`gpux sync`: make a project's .gpux/models/ mirror its lock (plan, execute, the sync record)."""
