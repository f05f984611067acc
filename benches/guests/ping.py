"""The vm bench's Python guest: the Python twin of examples/modules/demo/tasks/ping.js."""

from warren import define_task


@define_task
def run_task(task, ctx):
    ctx.resolve_by_completion({"pong": task.data["ping"]})
