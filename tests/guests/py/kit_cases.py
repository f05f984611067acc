"""One Python task exercising the kit, case by case (task.data["case"]); see
tests/python_guest.rs."""

from datetime import datetime, timedelta, timezone

from warren import HostError, define_task, log

runs = 0
log("kit_cases loaded at build time")


def host_calls(task, ctx):
    ctx.execute("CREATE TABLE IF NOT EXISTS py_effects (task_id BIGINT, note TEXT)")
    inserted = ctx.execute("INSERT INTO py_effects (task_id, note) VALUES ($1, $2)", [task.id, "host"])
    rows = ctx.query("SELECT task_id, note FROM py_effects WHERE task_id = $1", [task.id])
    try:
        ctx.execute("SELECT * FROM no_such_table")
        bad = None
    except HostError as e:
        bad = str(e)
    try:
        ctx.schedule_task("guests:child", {}, colour="red")
        unknown = None
    except TypeError as e:
        unknown = str(e)
    child = ctx.schedule_task(
        "guests:child",
        {"from": task.id},
        priority="background",
        not_before=datetime(2030, 1, 1, tzinfo=timezone.utc),
        timeout=timedelta(seconds=5),
        aux_data={"extra": True},
        metadata={"origin": "python"},
    )
    before = ctx.get_metadata("Py-Key")
    ctx.set_metadata("py-key", "v")
    try:
        ctx.set_progress(2)
        bad_progress = None
    except HostError as e:
        bad_progress = str(e)
    ctx.set_progress(0.25, "a quarter")
    return {
        "inserted": inserted,
        "rows": rows,
        "bad": bad,
        "unknown": unknown,
        "child": child,
        "meta_before": before,
        "meta_after": ctx.get_metadata("PY-KEY"),
        "bad_progress": bad_progress,
    }


@define_task
def run_task(task, ctx):
    global runs
    runs += 1
    case = task.data["case"]
    if case == "echo":
        ctx.resolve_by_completion(
            {
                "data": task.data,
                "raw": task.raw_data,
                "aux": task.aux_data,
                "id": task.id,
                "type": task.type,
                "failures": task.failures,
                "iteration": task.iteration,
                "now_ms": ctx.now_ms(),
                "now": ctx.now().isoformat(),
                "runs": runs,
            }
        )
    elif case == "twice":
        ctx.resolve_by_completion(1)
        ctx.resolve_by_completion(2)
    elif case == "none":
        ctx.log("returning without a resolution", "warn")
    elif case == "raise":
        ctx.execute("INSERT INTO guest_effects (task_id, note) VALUES ($1, $2)", [task.id, "raised"])
        raise ValueError("deliberate failure")
    elif case == "host":
        ctx.resolve_by_completion(host_calls(task, ctx))
    elif case == "permanent":
        ctx.resolve_by_permanent_failure("bad input", {"partial": 1})
    elif case == "cancel":
        ctx.resolve_by_cancellation(RuntimeError("not wanted"))
    elif case == "restart":
        ctx.resolve_by_restart(ctx.now_ms() + 60_000, new_data={"case": "echo"})
    elif case == "snooze":
        ctx.resolve_by_snooze(ctx.now() + timedelta(minutes=5))
    elif case == "retry_at":
        ctx.resolve_by_temporary_failure("later", next_retry=datetime(2030, 1, 1, tzinfo=timezone.utc))
    elif case == "after":
        ctx.resolve_by_completion(1)
        raise KeyError("after the resolution")
    elif case == "unserialisable":
        ctx.resolve_by_completion({1, 2})
    elif case == "far":
        ctx.resolve_by_snooze(10**20)
    elif case == "spin":
        while True:
            pass
    elif case == "hog":
        blocks = []
        while True:
            blocks.append(bytearray(8 << 20))
    else:
        ctx.resolve_by_permanent_failure(f"unknown case {case!r}")
