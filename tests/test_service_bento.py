"""`bentoml build` packages the service offline from the project's bentofile.yaml, with the model
that `khabar serve` picks (its tag written in place of SERVING_TAG, as the bentofile says)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("uv", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}") is None,
                    reason="`bentoml build` needs uv (pip install uv)")
def test_bentoml_build_offline(tiny_model_tag, tmp_path):
    config = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert config["python"]["lock_packages"] is False
    assert not any(p.split("=")[0].strip() == "bentoml" for p in config["python"]["packages"])
    # Not pinned to a tag (khabar:latest can be a refused candidate): the service's own rule decides.
    assert "KHABAR_MODEL" not in {e["name"] for e in config["envs"]}
    # Build in a context of its own: the khabar wheel and the bentofile (nothing written to dist/).
    wheel = config["python"]["wheels"][0]
    subprocess.run([str(BIN / "pip"), "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / Path(wheel).parent), str(ROOT)], check=True, cwd=tmp_path)
    assert (tmp_path / wheel).exists(), f"the wheel name in bentofile.yaml is stale: {wheel}"
    # What the package reads (demo model, int8 calibration) is in the wheel, not only in the checkout.
    packed = set(zipfile.ZipFile(tmp_path / wheel).namelist())
    assert {"khabar/sample/topic.jsonl", "khabar/sample/stance.jsonl", "khabar/sample/ner.conll",
            "khabar/configs/demo.yaml"} <= packed
    from khabar.models.registry import serving_tag

    serving = serving_tag()
    text = (ROOT / "bentofile.yaml").read_text()
    assert "- khabar:SERVING_TAG" in text
    (tmp_path / "bentofile.yaml").write_text(text.replace("khabar:SERVING_TAG", serving))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "BENTOML_DO_NOT_TRACK": "true"}
    out = subprocess.run([str(BIN / "bentoml"), "build", "--output", "tag", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    tag = out.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("khabar:")
    bento = Path(os.environ["BENTOML_HOME"]) / "bentos" / "khabar" / tag.split(":")[1]
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert [m["tag"] for m in info["models"]] == [serving]
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "torch==2.13.0+cpu" in requirements
    assert (bento / "env" / "python" / "wheels" / Path(wheel).name).exists()
