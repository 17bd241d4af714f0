"""`forkrl` console script. Heavy imports (torch, ray, vllm) happen inside the commands, so
`forkrl --help` answers at once."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forkrl", description="RLVR with entropy-controlled policy updates on Ray.")
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="run a training job (a private local Ray, or cluster.address / $RAY_ADDRESS)")
    t.add_argument("recipe", help="job YAML, e.g. recipes/grpo.yaml")
    t.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. trainer.steps=5")
    t.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    t.add_argument("--run-dir", help="run directory or URI (default: logging.output_dir/run_name)")

    c = sub.add_parser("config", help="validate a recipe and print the resolved config (for a private local Ray)")
    c.add_argument("recipe")
    c.add_argument("overrides", nargs="*")

    m = sub.add_parser("models", help="offline models: prepare NAME [--force] | list | path NAME",
                       add_help=False)
    m.add_argument("models_args", nargs=argparse.REMAINDER)
    return p


def _run_dir(cfg, recipe: str, explicit: str | None) -> str:
    """The run's output location: --run-dir, else logging.output_dir/run_name (a path or a URI)."""
    from forkrl.orchestrator.storage import join, resolve_location

    if explicit:
        return resolve_location(explicit)
    return join(resolve_location(cfg.logging.output_dir), cfg.logging.run_name or Path(recipe).stem)


def _resume_command(argv: list[str]) -> str:
    """The command line that continues a stopped run: the same one, with --resume."""
    import shlex

    args = [a for a in argv if a != "--resume"]
    return "forkrl " + " ".join(shlex.quote(a) for a in args) + " --resume"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["models"]:  # its own sub-CLI, options included
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        from forkrl.orchestrator.models import models_main

        return models_main(list(argv[1:]))
    # Overrides may come after options (`train r.yaml --resume a.b=1`): collect the stragglers.
    args, extra = parser.parse_known_args(argv)
    bad = [x for x in extra if x.startswith("-") or "=" not in x]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    from forkrl.orchestrator import console

    console.setup_driver(console.verbose_requested(False, os.environ))  # until the recipe is read
    from forkrl.orchestrator.config import ConfigError, dump_config, load_config

    try:
        cfg = load_config(args.recipe, args.overrides)
    except ConfigError as e:
        print(f"forkrl: {e}", file=sys.stderr)
        return 2
    if args.cmd == "config":  # what a run on a private local Ray of this machine would resolve
        from forkrl.orchestrator.resolve import host_facts, resolve_job

        host = host_facts(cfg, os.environ, node_cpus=os.cpu_count() or 1, alive_nodes=1)
        print(dump_config(resolve_job(cfg, host).config), end="")
        return 0

    from forkrl.orchestrator.models import ModelResolutionError
    from forkrl.orchestrator.trainer import Trainer

    trainer = Trainer(cfg, _run_dir(cfg, args.recipe, args.run_dir), resume=args.resume)
    verbose = console.verbose_requested(cfg.logging.verbose, os.environ)
    console.setup_driver(verbose, console.log_files(trainer.run_dir)[0])
    print(f"forkrl: {trainer.storage.describe()}", flush=True)
    print(f"forkrl: {console.describe(verbose, trainer.storage.location)}", flush=True)
    try:
        summary = trainer.run()
    except ModelResolutionError as e:
        print(f"forkrl: {e}", file=sys.stderr)
        return 2
    finally:
        trainer.shutdown()
    if summary["stopped"]:
        print(f"forkrl: stopped by {summary['stopped']} at step {summary['steps']}; checkpoint "
              f"{summary['checkpoint']}; resume with: {_resume_command(argv)}", flush=True)
        return 128 + signal.SIGTERM
    print(f"forkrl: {summary['steps']} steps in {summary['seconds']:.0f}s; run dir {summary['run_dir']}"
          + (f"; curves {summary['plot']}" if summary.get("plot") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
