"""The journal of a batch job: ``OUTPUT.parts/``, which makes jobs resumable and exactly-once.

Input rows are cut into parts of ``part_size`` consecutive rows; part ``k`` holds rows
``[k * part_size, (k + 1) * part_size)`` of the input (files in sorted order). A part is done when
its ``part-<k>.jsonl`` exists: it is written to a temporary name, fsynced and renamed, so it is
either complete or absent whatever moment the process dies at. Its error rows
(``part-<k>.errors.jsonl``) are renamed into place just before it, so a done part always has
them. ``job.json`` holds the job's fingerprint (model, options, input identities); a different
job refuses to resume into the same output.

At the end the parts are merged into OUTPUT and ``OUTPUT.errors.jsonl`` (temporary file + rename
again), then a receipt ``.OUTPUT.job.json`` (fingerprint and counts) is written beside OUTPUT and
the parts folder is removed. The receipt lets the same command, rerun after the job finished (or
after a crash during the cleanup), answer "already complete" instead of refusing or rescoring.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
from pathlib import Path
from typing import BinaryIO, Callable

from khabar.serving.batch.io import write_output

_PART = re.compile(r"^part-(\d{6,})\.jsonl$")
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class JobError(RuntimeError):
    """A batch job cannot go on; the message says what to do."""


class DiskFullError(JobError):
    """The disk filled up while writing; completed parts are kept for a rerun."""


def errors_path(output: Path) -> Path:
    """Where a job's error rows go: ``OUTPUT.errors.jsonl``."""
    return output.with_name(output.name + ".errors.jsonl")


def _dumps(obj: dict) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")


class PartStore:
    """The parts folder of one output; use as a context manager (it holds a lock)."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.dir = output.with_name(output.name + ".parts")
        self.state: dict = {}
        self._lock = None

    # -- opening ---------------------------------------------------------------------------------
    def open(self, fingerprint: dict, part_size: int, restart: bool = False) -> "PartStore":
        """Start a job or resume the same one; refuse a different job unless ``restart``.

        When the same job already finished, :attr:`complete` is set and nothing is created.
        """
        self.complete = False
        if not restart and not (self.dir / "job.json").exists() and self.output.exists():
            if self._finished_same_job(fingerprint):
                self.complete = True
                return self
            raise JobError(f"{self.output} already exists (written by another job, or by hand); pass "
                           "--restart to score again and overwrite it, or choose another --output")
        self._guard(lambda: self.dir.mkdir(parents=True, exist_ok=True), "creating")
        self._lock = open(self.dir / ".lock", "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise JobError(f"another `khabar score` is writing {self.output}; wait for it to finish") from None
        try:
            if restart:
                self._clear()
            self._remove_temporaries()
            state = self._read_state()
            if state is None:
                self.receipt_path.unlink(missing_ok=True)  # a stale one must not vouch for this job
                state = {"fingerprint": fingerprint, "part_size": part_size}
                self._write_state(state)
            else:
                self._check_same_job(state["fingerprint"], fingerprint)
                # Killed after the receipt was written, while removing the parts: it is done.
                self.complete = self._finished_same_job(fingerprint)
        except BaseException:
            self.close()  # a refused job must not keep the lock (tracebacks keep objects alive)
            raise
        self.state = state
        return self

    def __enter__(self) -> "PartStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def part_size(self) -> int:
        """Rows per part for this job (the size it was started with wins over a new one)."""
        return int(self.state["part_size"])

    @property
    def receipt_path(self) -> Path:
        """The hidden receipt a finished job leaves beside OUTPUT."""
        return self.output.with_name(f".{self.output.name}.job.json")

    def _finished_same_job(self, fingerprint: dict) -> bool:
        try:
            receipt = json.loads(self.receipt_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return self.output.exists() and receipt.get("fingerprint") == fingerprint

    def done_parts(self) -> set[int]:
        """Indices of the parts that are complete."""
        return {int(m.group(1)) for p in self.dir.iterdir() if (m := _PART.match(p.name))}

    # -- writing ---------------------------------------------------------------------------------
    def part_path(self, index: int) -> Path:
        """The rows file of part ``index`` (its existence marks the part done)."""
        return self.dir / f"part-{index:06d}.jsonl"

    def errors_part_path(self, index: int) -> Path:
        """The error rows of part ``index``."""
        return self.dir / f"part-{index:06d}.errors.jsonl"

    def write_part(self, index: int, rows: list[dict], errors: list[dict]) -> None:
        """Commit part ``index``: its error rows, then its output rows (the marker of done)."""
        self._atomic(self.errors_part_path(index), lambda fh: fh.writelines(map(_dumps, errors)))
        self._atomic(self.part_path(index), lambda fh: fh.writelines(map(_dumps, rows)))

    def merge(self, n_parts: int, fmt: str, int_ids: bool) -> tuple[int, int]:
        """Write OUTPUT and OUTPUT.errors.jsonl from parts ``0..n_parts-1``; returns (rows, errors)."""
        missing = sorted(set(range(n_parts)) - self.done_parts())
        if missing:
            raise JobError(f"parts {missing[:5]} of {self.output} are missing; rerun the same command")
        parts = [self.part_path(k) for k in range(n_parts)]
        errs = [self.errors_part_path(k) for k in range(n_parts)]
        n_errors = sum(1 for p in errs for line in p.open("rb") if line.strip())
        counted = {}
        self._atomic(self.output, lambda fh: counted.setdefault("rows", write_output(parts, fh, fmt, int_ids)))
        err_path = errors_path(self.output)
        if n_errors:
            self._atomic(err_path, lambda fh: write_output(errs, fh, "jsonl", False))
        else:
            err_path.unlink(missing_ok=True)  # a stale file of an earlier job would mislead
        receipt = {"fingerprint": self.state["fingerprint"], "rows": counted["rows"], "errors": n_errors}
        self._atomic(self.receipt_path, lambda fh: fh.write(json.dumps(receipt, ensure_ascii=False).encode("utf-8")))
        return counted["rows"], n_errors

    def remove(self) -> None:
        """Delete the parts folder once OUTPUT and the receipt are written."""
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------------
    def _atomic(self, path: Path, write: Callable[[BinaryIO], object]) -> None:
        """Write ``path`` all at once: temporary file, fsync, rename, fsync of the folder."""
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")

        def go() -> None:
            try:
                with open(tmp, "wb") as fh:
                    write(fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

        self._guard(go, f"writing {path.name}")

    def _guard(self, action: Callable[[], None], what: str) -> None:
        try:
            action()
        except OSError as err:
            if err.errno in _DISK_FULL:
                done = len(self.done_parts()) if self.dir.exists() else 0
                raise DiskFullError(
                    f"disk full while {what} ({err.strerror}); free space on {self.output.parent} "
                    f"and rerun the same command: the {done} finished parts in {self.dir} are kept") from err
            raise

    def _read_state(self) -> dict | None:
        path = self.dir / "job.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise JobError(f"{path} is damaged; pass --restart to start the job over") from None

    def _write_state(self, state: dict) -> None:
        self._atomic(self.dir / "job.json",
                     lambda fh: fh.write(json.dumps(state, ensure_ascii=False, indent=1).encode("utf-8")))

    def _check_same_job(self, old: dict, new: dict) -> None:
        diffs = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if not diffs:
            return
        shown = "; ".join(f"{k}: was {_short(old.get(k))}, now {_short(new.get(k))}" for k in diffs[:3])
        raise JobError(f"{self.dir} holds an unfinished job with a different {', '.join(diffs)} "
                       f"({shown}); rerun the original command to resume it, or pass --restart to "
                       "start over")

    def _clear(self) -> None:
        self.receipt_path.unlink(missing_ok=True)
        for entry in self.dir.iterdir():
            if entry.name != ".lock":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def _remove_temporaries(self) -> None:
        # Left by a process killed mid-write; we hold the lock, so nobody else is writing them.
        for tmp in list(self.dir.glob(".*.tmp-*")) + list(self.output.parent.glob(f".{self.output.name}.tmp-*")) \
                + list(self.output.parent.glob(f".{errors_path(self.output).name}.tmp-*")):
            tmp.unlink(missing_ok=True)


def _short(value, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
