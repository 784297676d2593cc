"""The gallery on another CPU: identical where it can be, within the tolerance docs/gallery.md
states where float rounding differs. Another CPU is stood in for by torch's and oneDNN's plainest
kernels on this one (other vector widths, other summation orders: the rounding a different CPU
gives)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import REPO

BIN = Path(sys.executable).parent
PLAIN_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41"}
GRIDS = ("reconstructions.png", "interpolation_chain.png", "interpolation_pairs.png",
         "traversal.png", "manifold.png", "manifold_ae.png")  # fmt: skip
MAPS = ("latent_map.png", "latent_map_vae_vs_ae.png")


def _gallery(output: Path, runs: dict[str, Path], data: Path, **environment: str) -> None:
    command = [
        str(BIN / "visualize"), "gallery", "--checkpoint", str(runs["vae"] / "checkpoint_best.safetensors"),
        "--autoencoder", str(runs["ae"] / "checkpoint_best.safetensors"),
        "--metrics", str(runs["vae"] / "metrics.jsonl"), "--data-dir", str(data), "--no-download",
        "--output-dir", str(output),
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=output.parent,
        env={**os.environ, **environment},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB")).astype(np.int16)


def test_the_gallery_on_other_kernels_stays_within_the_stated_tolerance(
    tmp_path, gallery_runs, synthetic_data_dir
):
    _gallery(tmp_path / "here", gallery_runs, synthetic_data_dir)
    _gallery(tmp_path / "plain", gallery_runs, synthetic_data_dir, **PLAIN_KERNELS)
    here, plain = tmp_path / "here", tmp_path / "plain"
    # NumPy draws the samples, and the curves are drawn from recorded numbers: the same bytes.
    for name in ("samples.png", "training_curves.png"):
        assert (here / name).read_bytes() == (plain / name).read_bytes(), name
    for name in GRIDS:  # a grey level off by one where a value sits on a rounding boundary
        difference = np.abs(_pixels(here / name) - _pixels(plain / name))
        assert difference.max() <= 1, name
        assert (difference > 0).mean() <= 0.001, name
    for name in MAPS:  # dots moved across a pixel edge: few pixels, any amount of anti-aliasing
        difference = np.abs(_pixels(here / name) - _pixels(plain / name)).max(axis=-1)
        assert (difference > 0).mean() <= 0.002, name


def test_the_shipped_gallery_matches_a_fresh_one_within_the_tolerance(tmp_path):
    """images/ was drawn on another machine; this one redraws the pictures that need no dataset
    (samples) and compares them with the shipped ones."""
    shipped = REPO / "images" / "samples.png"
    result = subprocess.run(
        [str(BIN / "generate"), "--output", str(tmp_path / "samples.png")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "samples.png").read_bytes() == shipped.read_bytes()
