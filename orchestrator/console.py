"""What a run prints: forkrl's own lines on the console, every other library's output in the run dir.

A run's console carries forkrl's lines (where outputs go, the data report, placement, evaluations,
checkpoints), every warning or error a forkrl logger raises in any role, any library's ERROR, and
the progress bar. vLLM, DeepSpeed, transformers, Triton, Ray and Python's warnings (FutureWarning,
...) write hundreds of lines per run; they go to files of the run dir instead:

- `<run dir>/logs/driver.log`: every log record of the driver process (`setup_driver`);
- `<run dir>/logs/roles.log`: everything the Ray worker processes (rollout engines, learner ranks,
  verifiers) write, C libraries included: `setup_worker` runs in each worker as Ray's
  `worker_process_setup_hook` and points the process's stdout and stderr (file descriptors 1 and 2)
  at that file, keeping the original stderr - the stream Ray forwards to the driver's console
  (`log_to_driver`) - for the records `ConsoleFilter` passes. A node that cannot write the path (a
  worker node without the driver's run dir) keeps Ray's streams as they are.

`logging.verbose: true` or FORKRL_VERBOSE=1 in the driver's environment turns all of it off: every
line reaches the console as before. An exception raised in a role reaches the driver as Ray's error,
with the remote traceback, and is printed in full whatever the setting.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

VERBOSE_ENV = "FORKRL_VERBOSE"
"""Set to 1 (or true/yes/on) to show every library's output, as logging.verbose does."""
ROLES_LOG_ENV = "FORKRL_ROLES_LOG"
"""The file a worker process writes its output to (set by `ray_init_args_with_console`)."""
OWN_LOGGER = "forkrl"
FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
DATEFMT = "%H:%M:%S"
_INSTALLED: list[logging.Handler] = []  # the driver handlers setup_driver added (it may run twice)


def verbose_requested(setting: bool, env: Mapping[str, str]) -> bool:
    """logging.verbose, or FORKRL_VERBOSE set to a true value."""
    return setting or env.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def log_files(run_dir: Path) -> tuple[Path, Path]:
    """(driver log, roles log) of a local run dir."""
    return Path(run_dir) / "logs" / "driver.log", Path(run_dir) / "logs" / "roles.log"


class ConsoleFilter(logging.Filter):
    """Passes forkrl's own records from INFO up and any other logger's from ERROR up."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == OWN_LOGGER or record.name.startswith(OWN_LOGGER + ".")
        return record.levelno >= (logging.INFO if own else logging.ERROR)


def _handler(stream: IO[str], console_only_own: bool) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt=DATEFMT))
    if console_only_own:
        handler.addFilter(ConsoleFilter())
    return handler


def setup_driver(verbose: bool, log_file: Path | None = None, stream: IO[str] | None = None) -> None:
    """The driver's logging: a console handler on `stream` (stderr), filtered unless verbose, and
    with `log_file` every record at INFO and above. Unless verbose, Python warnings become log records
    (logger py.warnings), so they land in the file, not on the console. Calling it again replaces
    what an earlier call installed (the CLI calls it before the run dir is known, then with it)."""
    root = logging.getLogger()
    for h in _INSTALLED:
        root.removeHandler(h)
        h.close()
    _INSTALLED.clear()
    _INSTALLED.append(_handler(stream or sys.stderr, console_only_own=not verbose))
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(FORMAT, datefmt=DATEFMT))
        _INSTALLED.append(file_handler)
    for h in _INSTALLED:
        root.addHandler(h)
    root.setLevel(logging.INFO)
    logging.captureWarnings(False)  # re-installed below, so the capture is this call's
    logging.captureWarnings(not verbose)


def describe(verbose: bool, run_location: str) -> str:
    """The line the CLI prints after where outputs go: where the rest of the output is."""
    if verbose:
        return "every library's output is shown (logging.verbose or FORKRL_VERBOSE)"
    return (f"vLLM, DeepSpeed, Ray and warnings go to {run_location}/logs/roles.log and logs/driver.log "
            f"(logging.verbose=true or {VERBOSE_ENV}=1 prints them here)")


def ray_init_args_with_console(args: Mapping[str, Any], verbose: bool, roles_log: Path) -> dict[str, Any]:
    """`ray.init` arguments (orchestrator.startup.ray_init_args) with the console's part added: unless
    verbose, every worker runs `setup_worker` (the job-level runtime_env's worker_process_setup_hook,
    which an actor's own runtime_env of env_vars inherits) with FORKRL_ROLES_LOG pointing at
    `roles_log`, and Ray's driver-side INFO lines are dropped (logging_level WARNING)."""
    out = dict(args)
    if verbose:
        return out
    runtime_env = dict(out.get("runtime_env", {}))
    runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), ROLES_LOG_ENV: str(roles_log)}
    runtime_env["worker_process_setup_hook"] = f"{__name__}.setup_worker"
    out["runtime_env"] = runtime_env
    out["logging_level"] = logging.WARNING
    return out


def setup_worker() -> None:
    """Ray's worker_process_setup_hook: this process's stdout and stderr go to $FORKRL_ROLES_LOG;
    records ConsoleFilter passes also go to the original stderr, which Ray forwards to the driver."""
    path = os.environ.get(ROLES_LOG_ENV)
    if not path:
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return  # this node cannot write the driver's run dir: keep Ray's own streams
    sys.stdout.flush()
    sys.stderr.flush()
    console = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    root = logging.getLogger()
    root.addHandler(_handler(sys.stderr, console_only_own=False))  # fd 2 is now the roles log
    root.addHandler(_handler(console, console_only_own=True))
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)


def progress_bar(enabled: bool, total: int, start: int):
    """The run's progress bar on the console (tqdm), or None when `logging.progress` is off."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="forkrl", unit="step", dynamic_ncols=True)
