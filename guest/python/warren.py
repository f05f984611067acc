"""Warren task kit for Python task code.

A task file defines one task function with ``define_task``::

    from warren import define_task

    @define_task
    def run_task(task, ctx):
        ctx.execute("INSERT INTO pings (value) VALUES ($1)", [task.data["ping"]])
        ctx.resolve_by_completion({"pong": task.data["ping"]})

It turns the raw ``warren:task`` world (JSON strings, WIT variants) into the API the
JavaScript kit has: exactly one ``resolve_by_…`` call per run, an exception becomes a
retryable failure carrying the Python traceback, data arrives parsed with the aux
data merged over it. See README.md beside this file.

The task module is imported when the component is built (componentize-py runs it and
snapshots the interpreter), so module-level code runs at build time, not per run:
host calls (the database, the log, the clock) are only possible inside a run.
"""

import json
import traceback
from datetime import datetime, timezone

from componentize_py_types import Err
from wit_world import WitWorld as _World
from wit_world.imports import host, types

__all__ = ["define_task", "Task", "Context", "LogLevel"]


class LogLevel:
    """Log levels of the host's ``log`` function."""

    ERROR = 0
    WARN = 1
    INFO = 2
    DEBUG = 3
    TRACE = 4


_LEVELS = {"error": 0, "warn": 1, "warning": 1, "info": 2, "debug": 3, "trace": 4}

# The task function ``define_task`` registered, and whether a run is in progress.
_task_function = None
_in_run = False

# How file names in tracebacks are shown: componentize-py names each folder of the
# module path by its position (``/0/``, ``/1/``, …); build.py tells the kit which one is
# the kit's own (its frames are left out of stacks) and which is the module folder
# (shown as ``/<module folder>/``, as JavaScript stacks show it).
_kit_prefix = None
_module_prefix = None
_module_shown = None


def _set_layout(kit_prefix, module_prefix, module_shown):
    """Called by the entry module build.py writes, at build time."""
    global _kit_prefix, _module_prefix, _module_shown
    _kit_prefix, _module_prefix, _module_shown = kit_prefix, module_prefix, module_shown


def _to_json(value):
    """JSON text of ``value``; what JSON cannot hold is refused with a TypeError."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _epoch_ms(when, what):
    """Milliseconds since the epoch from a datetime or a number of ms (u64: never
    negative)."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise TypeError(f"{what} must be a timezone-aware datetime (or ms since the epoch)")
        ms = int(when.timestamp() * 1000)
    elif isinstance(when, (int, float)) and not isinstance(when, bool):
        if when != when or when in (float("inf"), float("-inf")):
            raise TypeError(f"{what} is not a valid time")
        ms = int(when)
    else:
        raise TypeError(f"{what} must be a datetime or milliseconds since the epoch, not {type(when).__name__}")
    return max(0, ms)


def _error_text(error):
    """The text stored as a failure's error for an exception or a message."""
    if isinstance(error, BaseException):
        message = str(error)
        name = type(error).__name__
        return f"{name}: {message}" if message else name
    return str(error)


def _stack_of(error):
    """The traceback of an exception, without the kit's own frames."""
    if not isinstance(error, BaseException) or error.__traceback__ is None:
        return None
    frames = []
    for frame in traceback.extract_tb(error.__traceback__):
        name = frame.filename
        if _kit_prefix is not None and name.startswith(_kit_prefix):
            continue
        if _module_prefix is not None and name.startswith(_module_prefix):
            frame.filename = _module_shown + name[len(_module_prefix) :]
        frames.append(frame)
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(error), error)
    return "".join(lines).rstrip("\n")


def _host_call(what, fn, *args):
    """Calls a host function returning result<T, string>: T, or an Error naming what
    failed and the host's message."""
    try:
        return fn(*args)
    except Err as e:
        raise HostError(f"{what}: {e.value}") from None


class HostError(Exception):
    """A host call (SQL, scheduling, metadata) failed; the message is the host's."""


class ResolutionError(Exception):
    """A second resolution was selected in one run."""


class _DataError(Exception):
    """The task's data is not valid JSON: retrying cannot repair it."""


class Task:
    """One run of a task, as the task function sees it."""

    __slots__ = ("id", "type", "data", "raw_data", "aux_data", "failures", "iteration")

    def __init__(self, raw):
        try:
            data = json.loads(raw.data)
        except ValueError as e:
            raise _DataError(f"task data is not valid JSON: {e}") from None
        aux = None
        if raw.aux_data is not None:
            try:
                aux = json.loads(raw.aux_data)
            except ValueError as e:
                raise _DataError(f"task aux data is not valid JSON: {e}") from None
        #: Queue id.
        self.id = raw.id
        #: Full type name, ``module:type`` (a scheduled task: ``module:tag``).
        self.type = raw.task_type
        #: The data, with the aux data's fields merged over it when both are objects.
        self.data = {**data, **aux} if isinstance(data, dict) and isinstance(aux, dict) else data
        #: The data as scheduled, without aux data.
        self.raw_data = data
        #: The aux data, or None.
        self.aux_data = aux
        #: Consecutive failures before this run (0 on a first run).
        self.failures = raw.failures
        #: Runs before this one, counting failures, restarts and snoozes.
        self.iteration = raw.iteration


class Context:
    """What a task function can do: select its resolution, run SQL in the task's
    transaction, schedule tasks, read and set metadata, read the host's clock, log."""

    def __init__(self):
        self._resolution = None

    def _select(self, resolution):
        if self._resolution is not None:
            raise ResolutionError("a resolution was already selected")
        self._resolution = resolution

    @property
    def resolved(self):
        """Whether a resolution has been selected in this run."""
        return self._resolution is not None

    def resolve_by_completion(self, result=None):
        """Done; ``result`` (any JSON value) is stored. For a managed task the run's
        database work commits with it."""
        self._select(types.Resolution_Completion(_to_json(result)))

    def resolve_by_permanent_failure(self, error, result=None):
        """Failed for good, never retried; ``result`` is stored beside the error."""
        stored = None if result is None else _to_json(result)
        self._select(types.Resolution_PermanentFailure((_error_text(error), stored)))

    def resolve_by_cancellation(self, error):
        """Given up on purpose: like a permanent failure, marked cancelled."""
        self._select(types.Resolution_Cancellation(_error_text(error)))

    def resolve_by_temporary_failure(self, error, next_retry=None):
        """Failed for now: the run's database work is rolled back and the task is
        retried, at ``next_retry`` (a datetime or epoch ms) or by the retry rule."""
        at = None if next_retry is None else _epoch_ms(next_retry, "next_retry")
        self._select(types.Resolution_TemporaryFailure(types.Failure(_error_text(error), _stack_of(error), at)))

    def resolve_by_restart(self, when, new_data=None, new_aux_data=None):
        """Run again as a fresh run (failures reset) no earlier than ``when``,
        optionally with new data."""
        self._select(
            types.Resolution_Restart(
                types.Restart(
                    _epoch_ms(when, "restart time"),
                    None if new_data is None else _to_json(new_data),
                    None if new_aux_data is None else _to_json(new_aux_data),
                )
            )
        )

    def resolve_by_snooze(self, when):
        """Not now: run again no earlier than ``when``, keeping the failure count; the
        run's database work commits."""
        self._select(types.Resolution_Snooze(_epoch_ms(when, "snooze time")))

    def execute(self, sql, params=()):
        """Runs a statement in the task's transaction (parameters bound to $1, $2, …);
        returns the number of rows affected. Raises HostError on failure."""
        return _host_call("execute failed", host.execute, _require_str(sql, "sql"), _to_json(list(params)))

    def query(self, sql, params=()):
        """Runs a query in the task's transaction; returns its rows as dicts keyed by
        column. Raises HostError on failure."""
        text = _host_call("query failed", host.query, _require_str(sql, "sql"), _to_json(list(params)))
        return json.loads(text)

    def schedule_task(self, task_type, data=None, **options):
        """Schedules a managed task in this run's transaction (it exists only if the run
        commits); returns its id. Options as the JavaScript kit's ``scheduleTask``,
        in snake case: not_before (datetime or ms), timeout (ms), aux_data, priority (a
        name or a number), metadata (dict of strings), unique_key, unique_states,
        unique_period, debounce, debounce_max."""
        names = {
            "not_before": "notBefore",
            "timeout": "timeout",
            "aux_data": "auxData",
            "priority": "priority",
            "metadata": "metadata",
            "cluster": "cluster",
            "unique_key": "uniqueKey",
            "unique_states": "uniqueStates",
            "unique_period": "uniquePeriod",
            "debounce": "debounce",
            "debounce_max": "debounceMax",
        }
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise TypeError(f"schedule_task: unknown option(s) {', '.join(unknown)}; known: {', '.join(names)}")
        wire = {names[k]: v for k, v in options.items() if v is not None}
        if "notBefore" in wire:
            wire["notBefore"] = _epoch_ms(wire["notBefore"], "not_before")
        return _host_call(
            "schedule_task failed",
            host.schedule_task,
            _require_str(task_type, "task type"),
            _to_json({} if data is None else data),
            _to_json(wire),
        )

    def get_metadata(self, key):
        """A metadata value of this task (keys compare case-insensitively), or None."""
        return host.get_metadata(_require_str(key, "metadata key"))

    def set_metadata(self, key, value):
        """Sets a metadata value of this task, in its transaction."""
        _host_call("set_metadata failed", host.set_metadata, _require_str(key, "metadata key"), str(value))

    def now(self):
        """The host's current time, a timezone-aware UTC datetime (tests may control
        the host's clock; prefer it for times the host compares with)."""
        return datetime.fromtimestamp(host.now_ms() / 1000, tz=timezone.utc)

    def now_ms(self):
        """The host's current time, milliseconds since the Unix epoch."""
        return host.now_ms()

    def log(self, message, level="info"):
        """Writes a line to the task's log; level: error, warn, info, debug or trace
        (or 0–4)."""
        if isinstance(level, str):
            number = _LEVELS.get(level.lower(), LogLevel.INFO)
        else:
            number = min(255, max(0, int(level)))
        if _in_run:
            host.log(number, str(message))


def _require_str(value, what):
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__}")
    return value


def define_task(fn):
    """Registers ``fn(task, ctx)`` as this component's task function. It must select
    exactly one resolution through ``ctx``. Returns ``fn`` unchanged, so it stays
    callable in the author's own tests."""
    global _task_function
    if not callable(fn):
        raise TypeError("define_task needs a function (task, ctx)")
    if _task_function is not None and _task_function is not fn:
        raise TypeError("define_task was used twice: a task file defines one task function")
    _task_function = fn
    return fn


def _temporary(error, stack):
    return types.Resolution_TemporaryFailure(types.Failure(error, stack, None))


def _run(raw):
    """One run: the registered function with the kit's rules around it."""
    global _in_run
    if _task_function is None:
        return _temporary("the task module defined no task function (use @define_task)", None)
    _in_run = True
    try:
        try:
            task = Task(raw)
        except _DataError as e:
            # Retrying cannot repair the data: fail for good.
            return types.Resolution_PermanentFailure((str(e), None))
        ctx = Context()
        try:
            _task_function(task, ctx)
        except BaseException as e:  # noqa: BLE001 - any escape would be an opaque trap
            return _temporary(_error_text(e), _stack_of(e))
        if ctx._resolution is None:
            return _temporary("no resolution selected", None)
        return ctx._resolution
    except BaseException as e:  # noqa: BLE001
        return _temporary(f"internal error in the warren kit: {_error_text(e)}", _stack_of(e))
    finally:
        _in_run = False


class WitWorld(_World):
    """The world's export: what componentize-py calls for ``run-task``."""

    def run_task(self, t):
        return _run(t)
