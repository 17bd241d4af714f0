"""orchestrator.console: forkrl's own lines, warnings and errors reach the console; every other
library's output lands in the run dir's log files; verbose shows it all."""
import io
import logging
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
from forkrl.orchestrator import console


@pytest.fixture
def driver_logging():
    """setup_driver changes the root logger: put it back afterwards."""
    root = logging.getLogger()
    before = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in before[0]:
            root.removeHandler(h)
            h.close()
    console._INSTALLED.clear()
    root.setLevel(before[1])
    logging.captureWarnings(False)


def _record(name: str, level: int) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "m", None, None)


def test_the_filter_passes_forkrl_from_info_and_others_from_error():
    f = console.ConsoleFilter()
    passed = {(name, level) for name in ("forkrl", "forkrl.actors.engines", "forkrlx", "vllm", "py.warnings")
              for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
              if f.filter(_record(name, level))}
    assert passed == {
        ("forkrl", logging.INFO), ("forkrl", logging.WARNING), ("forkrl", logging.ERROR), ("forkrl", logging.CRITICAL),
        ("forkrl.actors.engines", logging.INFO), ("forkrl.actors.engines", logging.WARNING),
        ("forkrl.actors.engines", logging.ERROR), ("forkrl.actors.engines", logging.CRITICAL),
        ("forkrlx", logging.ERROR), ("forkrlx", logging.CRITICAL), ("vllm", logging.ERROR),
        ("vllm", logging.CRITICAL), ("py.warnings", logging.ERROR), ("py.warnings", logging.CRITICAL)}


def _emit_driver_lines():
    logging.getLogger("forkrl.orchestrator.trainer").info("step 0 eval: accuracy=0.31")
    # a library logger that propagates to the root (transformers, once imported, stops propagating
    # and keeps its own handler: which logger name is used here must not depend on the test order)
    logging.getLogger("somelib.tokenization").warning("Setting pad_token")
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # shown even when an earlier test triggered it
        warnings.warn("torch.cpu.amp.autocast is deprecated", FutureWarning)
    logging.getLogger("deepspeed").error("ZeRO failed")


def test_driver_console_shows_own_lines_and_errors_the_file_keeps_everything(tmp_path, driver_logging):
    out, log = io.StringIO(), tmp_path / "logs" / "driver.log"
    console.setup_driver(verbose=False, log_file=log, stream=out)
    _emit_driver_lines()
    shown = out.getvalue()
    assert "step 0 eval: accuracy=0.31" in shown and "ZeRO failed" in shown
    assert "pad_token" not in shown and "deprecated" not in shown
    kept = log.read_text()
    for line in ("step 0 eval: accuracy=0.31", "Setting pad_token", "torch.cpu.amp.autocast is deprecated",
                 "ZeRO failed"):
        assert line in kept
    # a second call (the CLI's, once the run dir is known) replaces the first one's handlers
    again = io.StringIO()
    console.setup_driver(verbose=False, stream=again)
    logging.getLogger("forkrl").info("once")
    assert again.getvalue().count("once") == 1 and "once" not in out.getvalue()


def test_verbose_driver_shows_everything(driver_logging):
    out = io.StringIO()
    console.setup_driver(verbose=True, stream=out)
    _emit_driver_lines()
    shown = out.getvalue()
    assert "pad_token" in shown and "step 0 eval" in shown and "ZeRO failed" in shown
    assert "deprecated" not in shown  # warnings stay Python's own (printed by its warning printer)


def test_verbose_is_the_config_field_or_the_environment():
    assert console.verbose_requested(True, {})
    assert not console.verbose_requested(False, {})
    for value in ("1", "true", "YES", " on "):
        assert console.verbose_requested(False, {"FORKRL_VERBOSE": value})
    for value in ("", "0", "false", "no"):
        assert not console.verbose_requested(False, {"FORKRL_VERBOSE": value})


def test_ray_init_args_gain_the_worker_hook_unless_verbose(tmp_path):
    base = {"address": "local", "namespace": "forkrl",
            "runtime_env": {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}}
    roles = tmp_path / "logs" / "roles.log"
    args = console.ray_init_args_with_console(base, verbose=False, roles_log=roles)
    assert args == {"address": "local", "namespace": "forkrl", "logging_level": logging.WARNING,
                    "runtime_env": {"env_vars": {"TOKENIZERS_PARALLELISM": "false", "FORKRL_ROLES_LOG": str(roles)},
                                    "worker_process_setup_hook": "forkrl.orchestrator.console.setup_worker"}}
    assert base["runtime_env"] == {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}  # not mutated
    assert console.ray_init_args_with_console(base, verbose=True, roles_log=roles) == base
    assert console.log_files(tmp_path) == (tmp_path / "logs" / "driver.log", roles)


WORKER = textwrap.dedent("""
    import logging, os, sys, warnings
    from forkrl.orchestrator.console import setup_worker
    setup_worker()
    print("INFO vllm: Automatically detected platform cpu.")
    os.write(1, b"NUMA binding: cpus 0-1\\n")
    os.write(2, b"triton not found\\n")
    logging.getLogger("vllm.engine").warning("prefix cache reset")
    warnings.warn("`torch_dtype` is deprecated", FutureWarning)
    logging.getLogger("forkrl.actors.engines").warning("rollout.dtype=bfloat16 on a CPU without AVX512-BF16")
    logging.getLogger("forkrl.learner").info("packed forward: on")
    logging.getLogger("deepspeed").error("rank 0 failed to allocate")
    raise ValueError("the role's own exception")
""")


def _run_worker(tmp_path, roles_log: str):
    env = {**os.environ, "FORKRL_ROLES_LOG": roles_log}
    return subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)


def test_a_worker_process_sends_library_output_to_the_roles_log(tmp_path):
    roles = tmp_path / "run" / "logs" / "roles.log"
    p = _run_worker(tmp_path, str(roles))
    assert p.returncode == 1
    assert p.stdout == ""
    shown = p.stderr.splitlines()  # the stream Ray forwards to the driver's console
    assert len(shown) == 3, p.stderr
    assert shown[0].endswith("forkrl.actors.engines WARNING rollout.dtype=bfloat16 on a CPU without AVX512-BF16")
    assert shown[1].endswith("forkrl.learner INFO packed forward: on")
    assert shown[2].endswith("deepspeed ERROR rank 0 failed to allocate")
    kept = roles.read_text()
    for line in ("Automatically detected platform cpu", "NUMA binding: cpus 0-1", "triton not found",
                 "prefix cache reset", "`torch_dtype` is deprecated", "packed forward: on",
                 "rank 0 failed to allocate", "ValueError: the role's own exception"):
        assert line in kept, line


def test_a_worker_that_cannot_write_the_log_keeps_its_streams(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    p = _run_worker(tmp_path, str(blocker / "logs" / "roles.log"))
    assert "Automatically detected platform cpu" in p.stdout
    assert "NUMA binding" in p.stdout and "ValueError: the role's own exception" in p.stderr


DRIVER = textwrap.dedent("""
    import logging, sys, time
    import ray
    from forkrl.orchestrator.console import ray_init_args_with_console

    base = {"address": "local", "num_cpus": 1, "include_dashboard": False,
            "runtime_env": {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}}
    ray.init(**ray_init_args_with_console(base, verbose=sys.argv[2] == "1", roles_log=sys.argv[1]))

    @ray.remote(num_cpus=0)
    class Role:
        def work(self):
            print("engine chatter: loading safetensors shards")
            logging.getLogger("forkrl.actors.rollout").warning("own warning from the role")
            return 1

        def fail(self):
            raise ValueError("the role failed here")

    role = Role.options(runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}}).remote()  # as RolloutGroup does
    assert ray.get(role.work.remote()) == 1
    try:
        ray.get(role.fail.remote())
    except ray.exceptions.RayTaskError as e:
        print("DRIVER CAUGHT:", e, file=sys.stderr)
    time.sleep(3)  # the log monitor forwards worker lines about once a second
    ray.shutdown()
""")


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_under_ray_only_forkrl_lines_and_errors_reach_the_driver(tmp_path, verbose):
    roles = tmp_path / "logs" / "roles.log"
    p = subprocess.run([sys.executable, "-c", DRIVER, str(roles), "1" if verbose else "0"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    shown = p.stdout + p.stderr
    assert "own warning from the role" in shown
    # the role's exception reaches the driver with its remote traceback, whatever the setting
    assert "DRIVER CAUGHT:" in shown and 'in fail\nValueError: the role failed here' in shown
    if verbose:
        assert "engine chatter" in shown and not roles.exists()
    else:
        assert "engine chatter" not in shown
        assert "engine chatter: loading safetensors shards" in roles.read_text()


def test_the_console_is_quiet_unless_asked():
    from forkrl.orchestrator.config import load_config

    assert load_config(None, []).logging.verbose is False
