"""Helpers of the pydemo module, imported by its tasks like any Python module."""

CREATE_PINGS = "CREATE TABLE IF NOT EXISTS pings (value BIGINT NOT NULL)"


def recorded(ctx):
    """How many pings the table holds, as this run's transaction sees it."""
    return ctx.query("SELECT COUNT(*) AS n FROM pings")[0]["n"]
