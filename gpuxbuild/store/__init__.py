"""The content-addressed store under $GPUX_HOME: objects, locks, fetching into it, what keeps objects alive."""
