"""Rewrite the vae metadata of safetensors checkpoints without touching their weights.

Shipped checkpoints once carried the absolute path of the temporary folder they were trained in
(``config.train.runs_dir``); retraining to change one string would cost hours and change the
weights. This tool edits only the safetensors header (8-byte little-endian length + JSON), so
the tensor bytes after it stay identical, then quotes every changed file's sha256 and size.

Usage, from the project folder::

    poetry run python tools/rewrite_checkpoint_metadata.py [--runs-dir runs] [CHECKPOINT ...]

With no CHECKPOINT it rewrites every ``*.safetensors`` under ``pretrained/``. It sets
``config.train.runs_dir`` and then refreshes every ``checkpoint_sha256`` in the evaluation JSONs
under ``pretrained/`` (from the file their ``checkpoint`` field names) and every quoted sha256 and
``N,NNN bytes`` of a rewritten file in ``pretrained/README.md``. Running it again changes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
PRETRAINED = PROJECT / "pretrained"
MODEL_CARDS = PRETRAINED / "README.md"

# safetensors aligns the data region to 8 bytes by padding the JSON header with spaces.
_ALIGNMENT = 8


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_safetensors(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """The parsed JSON header and the raw tensor data region of a safetensors file."""
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + length])
    return header, blob[8 + length :]


def encode_header(header: dict[str, Any]) -> bytes:
    """The header as safetensors writes it: compact JSON, space-padded to a multiple of 8.

    Key order is kept as parsed (Python dicts keep insertion order), so re-encoding an untouched
    header reproduces the original bytes; ``main`` checks that before writing anything.
    """
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % _ALIGNMENT)
    return struct.pack("<Q", len(text)) + text


def rewrite_vae_metadata(path: Path, edit: Callable[[dict[str, Any]], None]) -> bool:
    """Apply ``edit`` to the checkpoint's ``vae`` metadata in place; True if the file changed.

    Only the header is rewritten: tensor entries (dtype, shape, data_offsets, which are relative
    to the data region) and the data bytes are copied unchanged.
    """
    blob = path.read_bytes()
    header, data = split_safetensors(blob)
    (old_length,) = struct.unpack("<Q", blob[:8])
    if encode_header(header) != blob[: 8 + old_length]:
        # A header we cannot reproduce byte for byte was not written by safetensors' usual
        # encoder; refuse rather than reformat parts of it we were not asked to change.
        raise ValueError(f"{path}: header does not re-encode to its own bytes; not touching it")
    metadata = header["__metadata__"]
    vae = json.loads(metadata["vae"])
    edit(vae)
    # vae.checkpoint.save_checkpoint writes this string with json.dumps(sort_keys=True).
    new_text = json.dumps(vae, sort_keys=True)
    if new_text == metadata["vae"]:
        return False
    metadata["vae"] = new_text
    new_blob = encode_header(header) + data
    if split_safetensors(new_blob)[1] != data:
        raise AssertionError(f"{path}: data region would change")  # cannot happen; be sure
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(new_blob)
    temporary.replace(path)
    return True


def set_runs_dir(runs_dir: str) -> Callable[[dict[str, Any]], None]:
    """An edit for ``rewrite_vae_metadata`` that sets ``config.train.runs_dir``."""

    def edit(vae: dict[str, Any]) -> None:
        vae["config"]["train"]["runs_dir"] = runs_dir

    return edit


def refresh_evaluation_hashes(root: Path = PRETRAINED) -> list[Path]:
    """Set each evaluation JSON's ``checkpoint_sha256`` to that of the file its ``checkpoint``
    names (relative to the project folder); the JSONs that changed."""
    changed = []
    for path in sorted(root.rglob("*.json")):
        text = path.read_text()
        record = json.loads(text)
        if not isinstance(record, dict) or "checkpoint_sha256" not in record:
            continue
        digest = sha256_file(PROJECT / record["checkpoint"])
        if record["checkpoint_sha256"] == digest:
            continue
        # Replace the one string rather than re-dumping, so the file's formatting stays as
        # evaluate wrote it.
        new_text = text.replace(record["checkpoint_sha256"], digest)
        if json.loads(new_text)["checkpoint_sha256"] != digest:
            raise AssertionError(f"{path}: sha256 replacement went wrong")
        path.write_text(new_text)
        changed.append(path)
    return changed


def requote(text: str, old: tuple[str, int], new: tuple[str, int]) -> str:
    """Replace a file's old sha256 and ``N,NNN bytes`` size by the new ones in prose."""
    text = text.replace(old[0], new[0])
    return text.replace(f"{old[1]:,} bytes", f"{new[1]:,} bytes")


def main(argv: list[str] | None = None) -> int:
    """Rewrite runs_dir in the given (or all shipped) checkpoints and requote their hashes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", type=Path)
    parser.add_argument("--runs-dir", default="runs", help="value for config.train.runs_dir")
    args = parser.parse_args(argv)
    paths = args.checkpoints or sorted(PRETRAINED.rglob("*.safetensors"))
    cards = MODEL_CARDS.read_text() if MODEL_CARDS.exists() else None
    for path in paths:
        old = (sha256_file(path), path.stat().st_size)
        if not rewrite_vae_metadata(path, set_runs_dir(args.runs_dir)):
            print(f"{path}: unchanged")
            continue
        new = (sha256_file(path), path.stat().st_size)
        print(f"{path}: {old[1]:,} -> {new[1]:,} bytes; sha256 {new[0]}")
        if cards is not None:
            cards = requote(cards, old, new)
    if cards is not None and cards != MODEL_CARDS.read_text():
        MODEL_CARDS.write_text(cards)
        print(f"{MODEL_CARDS}: requoted")
    for path in refresh_evaluation_hashes():
        print(f"{path}: checkpoint_sha256 refreshed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
