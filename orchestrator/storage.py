"""Where a run's outputs live: a local directory, or any pyarrow filesystem URI (s3://, gs://,
hdfs://, file://) or fsspec URI (memory://, ...), the way Ray Train's `storage_path` works.

The driver always works in a local run directory (`RunStorage.local`): metrics are appended there and
checkpoints are published there by an atomic rename (orchestrator.checkpoint). When the outputs belong
on a remote filesystem, that directory is only a mirror: `push_checkpoint` uploads each checkpoint
whole, `state.json` last (object stores cannot rename a directory, so a remote checkpoint counts as
complete only once its state file exists - the same rule `checkpoint.latest` applies locally), and
`push_logs` uploads everything else. `pull_for_resume` brings the last complete checkpoint and the
metrics log back before `--resume`.

Relative paths resolve against the working directory, except inside a Ray job (`ray job submit`),
whose working directory is a temporary unpacked copy deleted with the session: there they resolve
against `~/forkrl` of the node running the driver.

What it does not do: move files between Ray nodes (orchestrator.placement does).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow
import pyarrow.fs as pafs

from forkrl.orchestrator import checkpoint as ckpt

# Set by Ray's job supervisor in every `ray job submit` driver's environment.
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
JOB_OUTPUT_ROOT = Path("~/forkrl")


def resolve_location(path: str, env: dict[str, str] | None = None) -> str:
    """An output location as given (URI or absolute path), or a relative path made absolute
    against the working directory, or against ~/forkrl inside a Ray job."""
    if "://" in path:
        return path
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    env = os.environ if env is None else env
    base = JOB_OUTPUT_ROOT.expanduser() if RAY_JOB_ENV in env else Path.cwd()
    return str(base / p)


def join(location: str, name: str) -> str:
    return location.rstrip("/") + "/" + name


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a URI or an absolute local path."""
    try:
        return pafs.FileSystem.from_uri(location)
    except pyarrow.ArrowInvalid:  # a scheme pyarrow lacks (memory://, ...): fsspec's, wrapped
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


class RunStorage:
    """One run's output location and its local working copy."""

    def __init__(self, location: str):
        self.location = location
        fs, path = filesystem(location)
        if fs.type_name == "local":
            self.fs, self.path, self.local = None, path, Path(path)
        else:
            digest = hashlib.sha1(location.encode()).hexdigest()[:10]
            self.fs, self.path = fs, path.rstrip("/")
            self.local = Path(tempfile.gettempdir()) / "forkrl_mirror" / f"{Path(self.path).name}-{digest}"

    @property
    def remote(self) -> bool:
        return self.fs is not None

    def describe(self) -> str:
        if not self.remote:
            return f"outputs go to {self.location}"
        return f"outputs go to {self.location} (local working copy {self.local})"

    # ---- uploads -----------------------------------------------------------------------------
    def _upload_file(self, src: Path, dest: str) -> None:
        self.fs.create_dir(dest.rsplit("/", 1)[0], recursive=True)
        with src.open("rb") as f, self.fs.open_output_stream(dest) as out:
            shutil.copyfileobj(f, out, 16 << 20)

    def push_checkpoint(self, local_ckpt: Path, keep_last: int) -> None:
        """Upload checkpoints/<step>/ with state.json last, then prune to the newest `keep_last`."""
        if not self.remote:
            return
        dest = f"{self.path}/checkpoints/{local_ckpt.name}"
        self._delete(dest)  # re-saving a step after a resume replaces it whole
        files = sorted(p for p in local_ckpt.rglob("*") if p.is_file())
        for p in sorted(files, key=lambda p: p.name == ckpt.STATE):
            self._upload_file(p, f"{dest}/{p.relative_to(local_ckpt).as_posix()}")
        complete = self._remote_checkpoints(complete_only=True)
        keep = set(complete[-keep_last:])
        for name in self._remote_checkpoints(complete_only=False):
            if name not in keep and name != local_ckpt.name:
                self._delete(f"{self.path}/checkpoints/{name}")

    def push_logs(self) -> None:
        """Upload every file of the local run dir except checkpoints (small: logs, plots, events)."""
        if not self.remote:
            return
        for p in sorted(self.local.rglob("*")):
            rel = p.relative_to(self.local)
            if p.is_file() and rel.parts[0] != "checkpoints":
                self._upload_file(p, f"{self.path}/{rel.as_posix()}")

    def push_dir(self, local_dir: Path) -> None:
        """Upload a finished directory of the run (e.g. final_model/) under the same name."""
        if not self.remote:
            return
        for p in sorted(local_dir.rglob("*")):
            if p.is_file():
                self._upload_file(p, f"{self.path}/{p.relative_to(self.local).as_posix()}")

    # ---- downloads ---------------------------------------------------------------------------
    def pull_for_resume(self) -> str | None:
        """Fetch the newest complete remote checkpoint and metrics.jsonl into the local copy.
        Returns the checkpoint's name, or None when the remote run has none."""
        if not self.remote:
            return None
        names = self._remote_checkpoints(complete_only=True)
        if self._exists(f"{self.path}/metrics.jsonl"):
            self._download_file(f"{self.path}/metrics.jsonl", self.local / "metrics.jsonl")
        if not names:
            return None
        src, dest = f"{self.path}/checkpoints/{names[-1]}", self.local / "checkpoints" / names[-1]
        if dest.exists():
            shutil.rmtree(dest)
        tmp = dest.with_name(dest.name + ".tmp")  # published by rename, like a local save
        for info in self.fs.get_file_info(pafs.FileSelector(src, recursive=True)):
            if info.type == pafs.FileType.File:
                self._download_file(info.path, tmp / info.path[len(src) + 1:])
        tmp.rename(dest)
        return names[-1]

    def _download_file(self, src: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self.fs.open_input_stream(src) as f, dest.open("wb") as out:
            shutil.copyfileobj(f, out, 16 << 20)

    # ---- remote listing ----------------------------------------------------------------------
    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def _delete(self, path: str) -> None:
        if self._exists(path):
            self.fs.delete_dir(path)

    def _remote_checkpoints(self, complete_only: bool) -> list[str]:
        root = f"{self.path}/checkpoints"
        if not self._exists(root):
            return []
        dirs = [i for i in self.fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory]
        names = sorted(i.base_name for i in dirs
                       if i.base_name.startswith("step_") and not i.base_name.endswith(".tmp"))
        if complete_only:
            names = [n for n in names if self._exists(f"{root}/{n}/{ckpt.STATE}")]
        return names
