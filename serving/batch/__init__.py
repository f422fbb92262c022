"""Batch scoring jobs: files of any size, resumable, local or on Ray.

``run_job(ScoreOptions(input, output, ...))`` is what ``khabar score`` calls; see
:mod:`khabar.serving.batch.parts` for how parts make a job resumable and exactly-once.
Heavy libraries (torch, ray) load only when a job runs.
"""
from khabar.serving.batch.io import InputError, read_output
from khabar.serving.batch.job import JobSummary, ScoreOptions, run_job
from khabar.serving.batch.parts import DiskFullError, JobError, errors_path

__all__ = ["DiskFullError", "InputError", "JobError", "JobSummary", "ScoreOptions", "errors_path",
           "read_output", "run_job"]
