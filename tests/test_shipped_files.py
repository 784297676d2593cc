"""The files shipped with the repository (pretrained/, images/, README.md) are portable and honest.

Every sha256 they quote matches the file it describes, and none of them carries an absolute path
from the machine that made it (a user's checkout has no /tmp/mogrun). Each check is a plain
function over bytes, exercised once on the shipped files and once on a planted fault, so a check
that silently stopped looking would fail too.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import zlib
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED_FOLDERS = ("pretrained", "images")
MODEL_CARDS = REPO / "pretrained" / "README.md"

# An absolute path of a POSIX home, root or temporary folder, or a Windows drive path (as text or
# JSON-escaped, where its backslash is doubled).
ABSOLUTE_PATH = re.compile(
    rb"(?<![\w.~-])/(?:tmp|home|root|work|Users)/|(?<![A-Za-z0-9])[A-Za-z]:\\"
)
SHA256 = re.compile(r"`([0-9a-f]{64})`")
SIZE = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+) bytes")
CARD_HEADING = re.compile(r"^## `([^`]+)`")
TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".txt", ".csv", ".toml", ".yaml", ".yml"}
# Binary files of a kind not parsed below are searched in their printable runs only: a random
# 3-byte "C:\" inside compressed data is no path.
_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{4,}")


def shipped_files() -> list[Path]:
    """Every file a user of the repository receives in pretrained/ and images/, plus README.md.

    Tracked files when git can say (an untracked scratch file is not shipped); every file in
    those folders otherwise (e.g. an unpacked source archive).
    """
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--", *SHIPPED_FOLDERS],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode()
        paths = [REPO / name for name in listed.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        paths = []
    if not paths:
        paths = [p for folder in SHIPPED_FOLDERS for p in (REPO / folder).rglob("*") if p.is_file()]
    # A tracked file deleted in the working tree is someone's change in progress, not shipped.
    return sorted(p for p in paths if p.is_file()) + [REPO / "README.md"]


@cache
def sha256_of(path: Path) -> str:
    """Hex sha256 of a file (cached: several JSONs quote the same checkpoint)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _png_text(blob: bytes) -> bytes:
    """Every PNG chunk but the pixel data, text chunks decompressed."""
    parts, offset = [], 8
    while offset + 8 <= len(blob):
        (length,) = struct.unpack(">I", blob[offset : offset + 4])
        kind = blob[offset + 4 : offset + 8]
        data = blob[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IDAT":
            continue
        parts.append(data)
        if kind == b"zTXt":
            keyword, _, rest = data.partition(b"\0")
            parts.append(zlib.decompress(rest[1:]))
        elif kind == b"iTXt":
            keyword, _, rest = data.partition(b"\0")
            compressed = rest[:1] == b"\x01"
            # flag, method, language tag \0, translated keyword \0, text
            _, _, rest = rest[2:].partition(b"\0")
            _, _, text = rest.partition(b"\0")
            parts.append(zlib.decompress(text) if compressed else text)
    return b"\n".join(parts)


def _gif_text(blob: bytes) -> bytes:
    """A GIF's extension blocks (comments, application data), without colour tables or pixels."""
    parts = []
    flags = blob[10]
    offset = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)

    def skip_sub_blocks(position: int, keep: bool) -> int:
        while position < len(blob) and blob[position]:
            size = blob[position]
            if keep:
                parts.append(blob[position + 1 : position + 1 + size])
            position += 1 + size
        return position + 1

    while offset < len(blob):
        marker = blob[offset]
        if marker == 0x21:  # extension: label, then data sub-blocks
            offset = skip_sub_blocks(offset + 2, keep=True)
        elif marker == 0x2C:  # image: descriptor, local colour table, LZW size, pixel sub-blocks
            flags = blob[offset + 9]
            offset += 10 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0) + 1
            offset = skip_sub_blocks(offset, keep=False)
        else:  # 0x3B trailer, or anything after it
            break
    return b"\n".join(parts)


def readable_parts(path: Path, blob: bytes) -> bytes:
    """The parts of a shipped file that can hold text a person or program reads back."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        # The JSON header; the data region is raw floats.
        (length,) = struct.unpack("<Q", blob[:8])
        return blob[8 : 8 + length]
    if suffix == ".png":
        return _png_text(blob)
    if suffix == ".gif":
        return _gif_text(blob)
    if suffix in TEXT_SUFFIXES:
        return blob
    return b"\n".join(_PRINTABLE_RUN.findall(blob))


def absolute_paths_in(path: Path, blob: bytes) -> list[str]:
    """The absolute paths (with a little context) that a shipped file carries."""
    text = readable_parts(path, blob)
    return [
        text[max(0, m.start() - 20) : m.end() + 40].decode("utf-8", "replace")
        for m in ABSOLUTE_PATH.finditer(text)
    ]


def evaluation_hash_errors(path: Path, root: Path = REPO) -> list[str]:
    """An evaluation JSON's ``checkpoint_sha256`` against the file its ``checkpoint`` names."""
    record = json.loads(path.read_text())
    if not isinstance(record, dict) or "checkpoint_sha256" not in record:
        return []
    named = root / record["checkpoint"]
    if Path(record["checkpoint"]).is_absolute() or not named.is_file():
        return [f"{path.name}: checkpoint {record['checkpoint']!r} is no file in the repository"]
    if sha256_of(named) != record["checkpoint_sha256"]:
        return [f"{path.name}: checkpoint_sha256 is not the sha256 of {record['checkpoint']}"]
    return []


def model_card_quotes(text: str, folder: Path) -> dict[Path, tuple[list[str], list[int]]]:
    """The sha256 values and byte sizes quoted in each ``## `FILE` `` section of a model card."""
    quotes: dict[Path, tuple[list[str], list[int]]] = {}
    current: Path | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = CARD_HEADING.match(line)
            current = folder / heading.group(1) if heading else None
            continue
        hashes = SHA256.findall(line)
        sizes = [int(size.replace(",", "")) for size in SIZE.findall(line)]
        if (hashes or sizes) and current is not None:
            entry = quotes.setdefault(current, ([], []))
            entry[0].extend(hashes)
            entry[1].extend(sizes)
        elif hashes:
            raise AssertionError(f"a sha256 outside any file's section: {line.strip()}")
    return quotes


def model_card_errors(text: str, folder: Path) -> list[str]:
    """Each quoted sha256 and size against its section's file; each checkpoint must be quoted."""
    errors = []
    quotes = model_card_quotes(text, folder)
    for path, (hashes, sizes) in quotes.items():
        if not path.is_file():
            errors.append(f"{path.name}: the model card describes a file that is not there")
            continue
        errors += [
            f"{path}: quoted sha256 {h} is not the file's" for h in hashes if h != sha256_of(path)
        ]
        errors += [
            f"{path}: quoted size {s} is not the file's" for s in sizes if s != path.stat().st_size
        ]
    for checkpoint in sorted(folder.rglob("*.safetensors")):
        if not quotes.get(checkpoint, ([], []))[0]:
            errors.append(f"{checkpoint}: no sha256 quoted in the model card")
    return errors


# ---- the shipped files ---------------------------------------------------------------------


def test_no_shipped_file_holds_an_absolute_path() -> None:
    files = shipped_files()
    assert any(p.suffix == ".safetensors" for p in files) and any(p.suffix == ".png" for p in files)
    found = {
        str(p.relative_to(REPO)): hits
        for p in files
        if (hits := absolute_paths_in(p, p.read_bytes()))
    }
    assert not found, found


def test_each_evaluation_json_quotes_its_checkpoints_sha256() -> None:
    jsons = [p for p in shipped_files() if p.suffix == ".json"]
    assert jsons
    errors = [error for p in jsons for error in evaluation_hash_errors(p)]
    assert not errors, errors


def test_model_cards_quote_each_checkpoints_sha256_and_size() -> None:
    errors = model_card_errors(MODEL_CARDS.read_text(), MODEL_CARDS.parent)
    assert not errors, errors


def test_readme_quotes_only_sha256_of_shipped_files() -> None:
    # README.md has no per-file sections today; any sha256 it quotes must be a shipped file's.
    quoted = set(SHA256.findall((REPO / "README.md").read_text()))
    known = {sha256_of(p) for p in shipped_files() if p.suffix == ".safetensors"}
    assert quoted <= known, quoted - known


# ---- each check catches what it is for -----------------------------------------------------


def _safetensors(metadata: dict[str, str]) -> bytes:
    header = json.dumps({"__metadata__": metadata}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.mark.parametrize(
    "name, blob",
    [
        ("a.json", b'{"checkpoint": "/tmp/mogrun/checkpoint_best.safetensors"}'),
        ("a.md", b"run `evaluate --output /home/me/x.json`"),
        ("a.json", b'{"command": "evaluate --output C:\\\\Users\\\\me\\\\x.json"}'),
        (
            "a.safetensors",
            _safetensors({"vae": json.dumps({"config": {"train": {"runs_dir": "/tmp/s4/runs"}}})}),
        ),
        (
            "a.png",
            b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"/root/run"))
            + _png_chunk(b"IEND", b""),
        ),
        (
            "a.png",
            b"\x89PNG\r\n\x1a\n" + _png_chunk(b"iTXt", b"Source\0\0\0en\0\0/Users/me/run"),
        ),
        (
            "a.gif",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00" + b"\x21\xfe\x0a/work/run\x00" + b"\x3b",
        ),
        ("a.bin", b"\x00\x01/tmp/anything\x00"),
    ],
)
def test_an_absolute_path_is_found(name: str, blob: bytes) -> None:
    assert absolute_paths_in(Path(name), blob)


@pytest.mark.parametrize(
    "name, blob",
    [
        ("a.json", b'{"checkpoint": "pretrained/checkpoint_best.safetensors", "runs_dir": "runs"}'),
        ("a.md", b"see https://example.org/home/ and a/tmp/ folder, ratio 1:\\ no drive"),
        # Raw floats after a safetensors header may hold any bytes.
        ("a.safetensors", _safetensors({"format": "x"}) + b"C:\\/tmp/"),
        ("a.png", b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IDAT", b"/tmp/C:\\")),
    ],
)
def test_a_relative_path_is_not_flagged(name: str, blob: bytes) -> None:
    assert not absolute_paths_in(Path(name), blob)


def test_a_stale_evaluation_hash_is_found(tmp_path: Path) -> None:
    (tmp_path / "pretrained").mkdir()
    (tmp_path / "pretrained" / "model.safetensors").write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    record = {"checkpoint": "pretrained/model.safetensors", "checkpoint_sha256": good}
    evaluation = tmp_path / "pretrained" / "evaluation.json"
    evaluation.write_text(json.dumps(record))
    assert evaluation_hash_errors(evaluation, tmp_path) == []
    evaluation.write_text(json.dumps(record | {"checkpoint_sha256": "0" * 64}))
    assert evaluation_hash_errors(evaluation, tmp_path)
    evaluation.write_text(json.dumps(record | {"checkpoint": "/tmp/run/model.safetensors"}))
    assert evaluation_hash_errors(evaluation, tmp_path)


def test_a_stale_model_card_hash_or_size_is_found(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name, data in [("model.safetensors", b"weights"), ("sub/model.safetensors", b"other")]:
        (tmp_path / name).write_bytes(data)
    first, second = (hashlib.sha256(d).hexdigest() for d in (b"weights", b"other"))
    card = (
        "# Models\n\n## `model.safetensors`: one\n\n| file | 7 bytes; sha256 `{a}` |\n\n"
        "## `sub/model.safetensors`: two\n\n5 bytes, sha256\n`{b}`.\n"
    )
    assert model_card_errors(card.format(a=first, b=second), tmp_path) == []
    assert model_card_errors(card.format(a=second, b=second), tmp_path)
    assert model_card_errors(card.format(a=first, b=second).replace("7 bytes", "8 bytes"), tmp_path)
    assert model_card_errors(card.format(a=first, b="").replace("``", ""), tmp_path)


@pytest.mark.parametrize(
    ("log", "epochs"),
    [("metrics.jsonl", 160), ("standard-prior/metrics.jsonl", 160), ("hvae/metrics.jsonl", 100)],
)
def test_shipped_logs_give_the_rate_each_epoch_trained_at(log: str, epochs: int) -> None:
    # Each run: lr 2e-3, a per-epoch cosine to 0 over its epochs (pretrained/README.md). Epoch e
    # trained at lr0 (1 + cos(pi (e - 1) / epochs)) / 2: the first at lr0, none at 0.
    import math

    lines = (REPO / "pretrained" / log).read_text().splitlines()
    rates = [json.loads(line)["lr"] for line in lines]
    expected = [2e-3 * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    assert rates == pytest.approx(expected, rel=1e-9, abs=1e-15)
