"""Checkpoints named on the Hugging Face Hub, ``hf://OWNER/NAME[@REVISION][/FILE.safetensors]``:
the reference parsed, its size checked against the checkpoint size limit before anything is
downloaded, and the file fetched into the Hub's own cache (``HF_HUB_OFFLINE=1`` serves it from
there). Only ``.safetensors`` files are fetched, and the local file then goes through every check
a file on disk does; the service's failures become one line each.

Needs ``huggingface_hub`` (``poetry install --extras hub``), imported only when a reference is
used: nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from vae.errors import CheckpointError, ConfigError, VAEError, first_line, shown
from vae.limits import MAX_CHECKPOINT_BYTES

HUB_SCHEME = "hf://"
DEFAULT_HUB_FILE = "model.safetensors"  # what ``vae export`` writes and ``vae push`` uploads
_FORM = "hf://OWNER/NAME[@REVISION][/FILE.safetensors]"
# The Hub's own rule for owner and repository names (huggingface_hub's validate_repo_id).
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?")
# A branch, tag or commit: segments of letters, digits, '.', '_' and '-', joined by '/'.
_REVISION = re.compile(r"[A-Za-z0-9._-]{1,200}(?:/[A-Za-z0-9._-]{1,200}){0,20}")
# What a file path in a repository may not hold: control characters, backslashes, and the
# characters a URL would read as the end of the path.
_FILE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\#?]")


@dataclass(frozen=True)
class HubReference:
    """A checkpoint on the Hub: its model repository, revision (None: the default branch) and
    file within the repository."""

    repo_id: str
    revision: str | None
    filename: str

    def __str__(self) -> str:
        return f"{self.short}/{self.filename}"

    @property
    def short(self) -> str:
        """``hf://OWNER/NAME[@REVISION]``: the reference without its file, as a user types it
        for the default file; a ``/`` in the revision written ``%2F`` so that it parses back."""
        revision = f"@{quote(self.revision, safe='')}" if self.revision else ""
        return f"{HUB_SCHEME}{self.repo_id}{revision}"

    @property
    def page(self) -> str:
        """The repository's page on the Hub (at the revision, when one is named)."""
        tree = f"/tree/{quote(self.revision, safe='')}" if self.revision else ""
        return f"https://huggingface.co/{self.repo_id}{tree}"


def is_hub_reference(source: object) -> bool:
    """Whether ``source`` names a checkpoint on the Hub (starts with ``hf://``)."""
    return isinstance(source, str) and source.startswith(HUB_SCHEME)


def parse_hub_reference(text: str) -> HubReference:
    """The parts of ``hf://OWNER/NAME[@REVISION][/FILE.safetensors]``; a revision holding ``/``
    is written with ``%2F`` (``@refs%2Fpr%2F1``), as the Hub's own ``hf://`` paths write it."""
    parts = text[len(HUB_SCHEME) :].split("/")
    if len(parts) < 2:
        raise _malformed(text, "it needs OWNER/NAME")
    owner, name, *rest = parts
    revision = None
    if "@" in name:
        name, revision = name.split("@", 1)
        revision = unquote(revision)
        if not is_revision(revision):
            raise _malformed(text, "the revision after @ is not a branch, tag or commit")
    for part in (owner, name):
        if not _is_name(part):
            raise _malformed(text, f"{part!r} is not a Hub user or repository name")
    filename = "/".join(rest) or DEFAULT_HUB_FILE
    segments = filename.split("/")
    if any(part in ("", ".", "..") for part in segments) or _FILE_FORBIDDEN.search(filename):
        raise _malformed(text, "the file path has an empty, . or .. part, or a character a path "
                         "on the Hub cannot hold")  # fmt: skip
    if not filename.endswith(".safetensors"):
        raise CheckpointError(
            f"{text}: only .safetensors files are fetched from the Hub (vae never loads "
            "pickled weights); name the file as hf://OWNER/NAME/FILE.safetensors"
        )
    return HubReference(f"{owner}/{name}", revision, filename)


def is_revision(text: str) -> bool:
    """Whether ``text`` can name a branch, tag or commit (``main``, ``v1.0``, ``refs/pr/1``)."""
    return bool(_REVISION.fullmatch(text)) and not any(
        part in (".", "..") for part in text.split("/")
    )


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` (``OWNER/NAME``) when the Hub accepts it as a model repository's name."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_is_name(part) for part in parts) or repo_id.endswith(".git"):
        raise ConfigError(
            f"invalid value for OWNER/NAME: {shown(repo_id)} (a Hub repository: letters, digits, "
            "'-', '_' and '.', at most 96 characters each, no '--', '..' or .git ending)"
        )
    return repo_id


def _is_name(part: str) -> bool:
    return bool(_NAME.fullmatch(part)) and ".." not in part and "--" not in part


def _malformed(text: str, why: str) -> CheckpointError:
    return CheckpointError(
        f"{shown(text)} is not a Hub checkpoint reference ({why}): write {_FORM}"
    )


def local_checkpoint(source: str | Path) -> Path:
    """The local path of checkpoint ``source``: a path as given, a ``hf://`` reference fetched
    (or found in the Hub cache) first."""
    if is_hub_reference(source):
        return fetch_checkpoint(parse_hub_reference(str(source)))
    return Path(source)


def fetch_checkpoint(reference: HubReference) -> Path:
    """Download ``reference`` into the Hub cache (or find it there) and return its path. Its size
    is checked against MAX_CHECKPOINT_BYTES before the download starts, and the download is of
    the commit whose size was checked, even if the branch moves meanwhile."""
    hub = hub_library(str(reference))
    with quiet_hub():
        try:
            plan = hub.hf_hub_download(
                reference.repo_id, reference.filename, revision=reference.revision, dry_run=True
            )
            _check_size(reference, plan.file_size, downloading=not plan.is_cached)
            path = Path(
                hub.hf_hub_download(
                    reference.repo_id, reference.filename, revision=plan.commit_hash
                )
            )
        except Exception as error:  # the Hub's failures, each said in one line
            raise hub_error(str(reference), error, reference) from None
    _remember_revision(hub, reference, plan.commit_hash)
    _check_size(reference, path.stat().st_size, downloading=False)  # what arrived
    return path


@contextlib.contextmanager
def quiet_hub() -> Iterator[None]:
    """huggingface_hub's warnings held back (its retries print a line each, while the failure
    they end in is said in one line); its download progress bars stay."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _remember_revision(hub: Any, reference: HubReference, commit: str) -> None:
    """Record in the Hub cache which commit the branch or tag pointed at (``refs/REVISION``, the
    cache's documented layout), as an unpinned download would: ``HF_HUB_OFFLINE=1`` then finds
    the file by the same reference."""
    revision = reference.revision or hub.constants.DEFAULT_REVISION
    if revision == commit:
        return
    owner, name = reference.repo_id.split("/")
    ref = Path(hub.constants.HF_HUB_CACHE) / f"models--{owner}--{name}" / "refs" / revision
    try:
        if ref.is_file() and ref.read_text() == commit:
            return
        ref.parent.mkdir(parents=True, exist_ok=True)
        scratch = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
        scratch.write_text(commit)
        os.replace(scratch, ref)
    except OSError:
        pass  # a read-only cache: the file is there, only its offline alias is not recorded


def hub_library(what: str) -> Any:
    """The ``huggingface_hub`` module, or a one-line CheckpointError saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError(
            f"{what} needs the huggingface_hub package, which is not installed: poetry install "
            "--extras hub (or pip install huggingface_hub)"
        ) from None
    return huggingface_hub


def _check_size(reference: HubReference, size: int | None, downloading: bool) -> None:
    if size is not None and size > MAX_CHECKPOINT_BYTES:
        after = "; it was not downloaded" if downloading else ""
        raise CheckpointError(
            f"{reference} is {size:,} bytes, more than the checkpoint size limit of "
            f"{MAX_CHECKPOINT_BYTES:,} bytes{after}"
        )


def hub_error(subject: str, error: Exception, reference: HubReference | None = None) -> Exception:
    """``error`` from huggingface_hub (or the client and transfer libraries under it) while
    working on ``subject`` (a checkpoint reference, or a repository pushed to), as one line a
    user can act on; vae's own errors pass through. ``reference`` names the revision and file
    fetched, when there is one."""
    if isinstance(error, VAEError):
        return error
    from huggingface_hub import constants, errors

    login = "log in with `hf auth login` or set HF_TOKEN"
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, errors.GatedRepoError):
        page = reference.page if reference else "its page on huggingface.co"
        why = f"a gated repository: accept its conditions on {page}, then {login}"
    elif isinstance(error, errors.RepositoryNotFoundError):
        why = f"no such model repository on the Hub (if it is private, {login})"
    elif isinstance(error, errors.RevisionNotFoundError):
        revision = f" {reference.revision!r}" if reference and reference.revision else ""
        why = f"the repository has no such revision{revision}"
    elif isinstance(error, errors.RemoteEntryNotFoundError):
        filename = f" {reference.filename!r}" if reference else ""
        why = f"the repository has no such file{filename}"
    elif isinstance(error, errors.LocalTokenNotFoundError) or status == 401:
        why = f"the Hub needs a login: {login}"
    elif status == 403:
        why = f"the token has no write access there ({login} with a write token)"
    elif isinstance(error, errors.LocalEntryNotFoundError):
        cache = constants.HF_HUB_CACHE
        if constants.HF_HUB_OFFLINE:
            why = f"not in the Hub cache ({cache}) and HF_HUB_OFFLINE is set; fetch it once online"
        else:
            why = f"cannot reach the Hub (no network?) and it is not in the Hub cache ({cache})"
    elif isinstance(error, errors.OfflineModeIsEnabled):
        why = "HF_HUB_OFFLINE is set, so the Hub cannot be reached"
    elif isinstance(error, errors.HfHubHTTPError):
        why = f"the Hub refused: {first_line(error)}"
    else:  # no network, a full disk, a transfer library's own error (hf_xet raises RuntimeError)
        why = f"the Hub could not be used: {first_line(error)}"
    return CheckpointError(f"{subject}: {why}")
