"""Settings: every KHABAR_* knob parsed in one place, read once per process; torch's threads are
set by the process's owner, never by a predictor."""
from __future__ import annotations

import os

import pytest
import torch

from khabar.settings import Settings, settings, use_torch_threads


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("KHABAR_MAX_CHARS", "500")
    monkeypatch.setenv("KHABAR_API_TOKEN", "  t0k  ")
    monkeypatch.setenv("KHABAR_WORKERS", "")
    s = Settings.from_env()
    assert s.max_chars == 500 and s.api_token == "t0k" and s.workers == 1
    assert "api_token" not in s.limits() and s.limits()["max_chars"] == 500


@pytest.mark.parametrize("value", ["many", "0", "-3", "1.5"])
def test_settings_reject_bad_numbers(monkeypatch, value):
    monkeypatch.setenv("KHABAR_MAX_TARGETS", value)
    with pytest.raises(ValueError, match="KHABAR_MAX_TARGETS"):
        Settings.from_env()


@pytest.mark.parametrize("value,threads", [("3", 3), ("", os.cpu_count()), ("0", os.cpu_count())])
def test_threads_default_to_every_core(value, threads):
    assert Settings.from_env({"KHABAR_THREADS": value}).threads == threads


def test_bad_thread_counts_name_the_variable():
    for value in ("-1", "two"):
        with pytest.raises(ValueError, match="KHABAR_THREADS"):
            Settings.from_env({"KHABAR_THREADS": value})


def test_engine_knobs_are_settings_too():
    s = Settings.from_env({"KHABAR_ENGINE": " Torch-INT8 ", "KHABAR_ONNX_STREAMS": "2", "KHABAR_ONNX_SPIN": "off"})
    assert (s.engine, s.onnx_streams, s.onnx_spin) == ("torch-int8", 2, False)
    unset = Settings.from_env({})
    assert (unset.engine, unset.onnx_streams, unset.onnx_spin) == (None, 1, True)  # engine: khabar.models.engines decides
    assert Settings.from_env({"KHABAR_ONNX_SPIN": "YES"}).onnx_spin is True


@pytest.mark.parametrize("name,value,message", [
    ("KHABAR_ONNX_STREAMS", "two", "KHABAR_ONNX_STREAMS='two' is not a whole number"),
    ("KHABAR_ONNX_STREAMS", "0", "KHABAR_ONNX_STREAMS=0 is below 1"),
    ("KHABAR_ONNX_SPIN", "sometimes", "KHABAR_ONNX_SPIN must be 1 or 0, got 'sometimes'"),
])
def test_bad_engine_knobs_name_the_variable(name, value, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env({name: value})


def test_settings_are_read_once_until_the_cache_is_cleared(monkeypatch):
    first = settings()
    monkeypatch.setenv("KHABAR_THREADS", str(first.threads + 1))
    assert settings() is first  # read once: a later change of the environment is not seen
    settings.cache_clear()
    try:
        assert settings().threads == first.threads + 1
    finally:
        monkeypatch.undo()
        settings.cache_clear()


def test_the_process_owner_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert use_torch_threads(1) == 1 and torch.get_num_threads() == 1
        assert use_torch_threads() == settings().threads == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
