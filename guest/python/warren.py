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

import inspect
import json
import sys
import traceback
from datetime import datetime, timedelta, timezone

from componentize_py_types import Err
from wit_world import WitWorld as _World
from wit_world.imports import host, types

__all__ = ["define_task", "log", "Task", "Context", "LogLevel", "HostError", "ResolutionError"]


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
# module path by its position (``/0/``, ``/1/``); build.py tells the kit which one is the
# kit's own (its frames are left out of stacks) and which holds the module folder's
# files (shown as ``/<module folder>/``, as JavaScript stacks show it).
_kit_prefix = None
_module_prefix = None
_module_shown = None


def _set_layout(kit_prefix, module_prefix, module_shown):
    """Called by the entry module build.py writes, at build time."""
    global _kit_prefix, _module_prefix, _module_shown
    _kit_prefix, _module_prefix, _module_shown = kit_prefix, module_prefix, module_shown


_U64_MAX = 2**64 - 1


def _to_json(value):
    """JSON text of ``value``; what JSON cannot hold is refused with a TypeError (a
    set, a datetime) or a ValueError (NaN, text that is not valid Unicode)."""
    return _checked(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False), "JSON")


def _checked(text, what):
    """``text`` if it can cross to the host (valid UTF-8: no lone surrogates), else a
    ValueError naming ``what``; crossing with it would trap."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} is not valid Unicode text: {e.reason} at {e.start}") from None
    return text


def _printable(text):
    """``text`` with what cannot cross to the host replaced (for errors and logs,
    which must not fail)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _epoch_ms(when, what):
    """Milliseconds since the epoch from a datetime or a number of ms, within u64
    (a time before 1970 means now; one past u64 is the largest)."""
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
    return min(max(0, ms), _U64_MAX)


def _duration_ms(value, what):
    """Milliseconds from a timedelta or a number of ms."""
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise TypeError(f"{what} must be a timedelta or a number of milliseconds, not {type(value).__name__}")


def _error_text(error):
    """The text stored as a failure's error for an exception or a message; never
    raises (an exception whose text cannot be read is named by its type)."""
    try:
        if isinstance(error, BaseException):
            message = str(error)
            name = type(error).__name__
            return _printable(f"{name}: {message}" if message else name)
        return _printable(str(error))
    except Exception:  # noqa: BLE001 - a __str__ that raises
        return f"<unprintable {type(error).__name__}>"



def _stack_of(error):
    """The traceback of an exception, without the kit's own frames."""
    if not isinstance(error, BaseException) or error.__traceback__ is None:
        return None
    try:
        return _printable(_format_stack(error))
    except Exception:  # noqa: BLE001 - a traceback that cannot be formatted
        return None


def _format_stack(error):
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
        """Runs a statement in the task's transaction (parameters, a list or tuple,
        bound to $1, $2, …); returns the number of rows affected. Raises HostError on
        failure."""
        return _host_call("execute failed", host.execute, _require_str(sql, "sql"), _params(params))

    def query(self, sql, params=()):
        """Runs a query in the task's transaction; returns its rows as dicts keyed by
        column. Raises HostError on failure."""
        text = _host_call("query failed", host.query, _require_str(sql, "sql"), _params(params))
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
        for key, option in (("timeout", "timeout"), ("uniquePeriod", "unique_period"), ("debounce", "debounce"), ("debounceMax", "debounce_max")):
            if key in wire:
                wire[key] = _duration_ms(wire[key], option)
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
        text = _checked(str(value), "metadata value")
        _host_call("set_metadata failed", host.set_metadata, _require_str(key, "metadata key"), text)

    def set_progress(self, fraction, message=None):
        """Reports how far the run has got: ``fraction`` from 0 to 1 and, optionally, what
        it is doing (at most 1024 bytes). Shown while the task runs and kept after it ends,
        whatever its outcome (it is not part of the task's transaction). Only the latest
        report counts, so calling it often is cheap. Raises HostError when the host
        refuses it (a fraction outside 0–1, a longer message)."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise TypeError(f"progress must be a number from 0 to 1, not {type(fraction).__name__}")
        text = None if message is None else _checked(str(message), "progress message")
        _host_call("set_progress failed", host.set_progress, float(fraction), text)

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
        log(message, level)


def log(message, level="info"):
    """Writes a line to the task's log (level as for ``Context.log``). Outside a run
    (the module's top level, which runs at build time) the line is kept and written at
    the first run of each instance, up to 100 lines."""
    _log(_log_level(level), _printable(str(message)))


def _log_level(level):
    """The host's number for a level name or number (info for anything else)."""
    if isinstance(level, str):
        return _LEVELS.get(level.lower(), LogLevel.INFO)
    try:
        return min(255, max(0, int(level)))
    except (TypeError, ValueError, OverflowError):
        return LogLevel.INFO


# Lines logged outside a run (at build time, by the module's top level), written at the
# first run of each instance, as the JavaScript kit does.
_early_log = []
_EARLY_LOG_MAX = 100
_instance_started = False


def _log(level, message):
    if _in_run:
        host.log(level, message)
    elif len(_early_log) < _EARLY_LOG_MAX:
        _early_log.append((level, message))


def _params(params):
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"params must be a list or tuple, not {type(params).__name__}")
    return _to_json(list(params))


def _require_str(value, what):
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__}")
    return _checked(value, what)


def define_task(fn):
    """Registers ``fn(task, ctx)`` as this component's task function. It must select
    exactly one resolution through ``ctx``. Returns ``fn`` unchanged, so it stays
    callable in the author's own tests."""
    global _task_function
    if not callable(fn):
        raise TypeError("define_task needs a function (task, ctx)")
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(f"define_task: {_SYNC_ONLY}; remove 'async'")
    if _task_function is not None and _task_function is not fn:
        raise TypeError("define_task was used twice: a task file defines one task function")
    _task_function = fn
    return fn


_SYNC_ONLY = "task functions must be synchronous: Warren runs Python without an event loop"


def _temporary(error, stack):
    return types.Resolution_TemporaryFailure(types.Failure(error, stack, None))


def _run(raw):
    """One run: the registered function with the kit's rules around it."""
    global _in_run, _instance_started
    if _task_function is None:
        return _temporary("the task module defined no task function (use @define_task)", None)
    _in_run = True
    try:
        if not _instance_started:
            _instance_started = True
            for level, message in _early_log:
                host.log(level, message)
            _early_log.clear()
        try:
            task = Task(raw)
        except _DataError as e:
            # Retrying cannot repair the data: fail for good.
            return types.Resolution_PermanentFailure((str(e), None))
        ctx = Context()
        try:
            returned = _task_function(task, ctx)
        except BaseException as e:  # noqa: BLE001 - any escape would be an opaque trap
            return _temporary(_error_text(e), _stack_of(e))
        if inspect.isawaitable(returned):
            if inspect.iscoroutine(returned):
                returned.close()
            return _temporary(f"{_SYNC_ONLY} (the task function returned an awaitable)", None)
        if ctx._resolution is None:
            return _temporary("no resolution selected", None)
        return ctx._resolution
    except BaseException as e:  # noqa: BLE001
        return _temporary(f"internal error in the warren kit: {_error_text(e)}", _stack_of(e))
    finally:
        _in_run = False
        # What the run printed belongs to this run's output, not a later one's.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110 - a closed or replaced stream
                pass


class WitWorld(_World):
    """The world's export: what componentize-py calls for ``run-task``."""

    def run_task(self, t):
        return _run(t)
