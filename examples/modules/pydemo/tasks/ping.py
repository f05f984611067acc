"""Records a ping in the task's own transaction and answers it."""

from lib.pings import CREATE_PINGS, recorded
from warren import define_task


@define_task
def run_task(task, ctx):
    ping = task.data["ping"]
    ctx.execute(CREATE_PINGS)
    ctx.execute("INSERT INTO pings (value) VALUES ($1)", [ping])
    if task.data.get("fail"):
        # An exception is a temporary failure: the insert above is rolled back.
        raise RuntimeError("asked to fail after the insert")
    ctx.resolve_by_completion({"pong": ping, "recorded": recorded(ctx)})
