"""Checkpoints named on the Hugging Face Hub, ``hf://OWNER/NAME[@REVISION][/FILE.safetensors]``:
the reference parsed, its size checked against the checkpoint size limit before anything is
downloaded, and the file fetched into the Hub's own cache (``HF_HUB_OFFLINE=1`` serves it from
there). Only ``.safetensors`` files are fetched, and the local file then goes through every check
a file on disk does; the service's failures become one line each.

Needs ``huggingface_hub`` (``poetry install --extras hub``), imported only when a reference is
used: nothing here imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from vae.errors import CheckpointError, first_line
from vae.limits import MAX_CHECKPOINT_BYTES

HUB_SCHEME = "hf://"
DEFAULT_HUB_FILE = "model.safetensors"  # what ``vae export`` writes and ``vae push`` uploads
_FORM = "hf://OWNER/NAME[@REVISION][/FILE.safetensors]"
# The Hub's own rule for owner and repository names (huggingface_hub's validate_repo_id).
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?")


@dataclass(frozen=True)
class HubReference:
    """A checkpoint on the Hub: its model repository, revision (None: the default branch) and
    file within the repository."""

    repo_id: str
    revision: str | None
    filename: str

    def __str__(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        return f"{HUB_SCHEME}{self.repo_id}{revision}/{self.filename}"

    @property
    def page(self) -> str:
        """The repository's page on the Hub."""
        return f"https://huggingface.co/{self.repo_id}"


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
        if not revision or any(ord(c) < 32 or c in " \\" for c in revision):
            raise _malformed(text, "the revision after @ is empty or not a branch, tag or commit")
    for part in (owner, name):
        if not _is_name(part):
            raise _malformed(text, f"{part!r} is not a Hub user or repository name")
    filename = "/".join(rest) or DEFAULT_HUB_FILE
    if any(segment in ("", ".", "..") for segment in filename.split("/")):
        raise _malformed(text, "the file path has an empty, . or .. part")
    if not filename.endswith(".safetensors"):
        raise CheckpointError(
            f"{text}: only .safetensors files are fetched from the Hub (vae never loads "
            "pickled weights); name the file as hf://OWNER/NAME/FILE.safetensors"
        )
    return HubReference(f"{owner}/{name}", revision, filename)


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` (``OWNER/NAME``) when the Hub accepts it as a model repository's name."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_is_name(part) for part in parts):
        raise CheckpointError(
            f"{repo_id!r} is not a Hub repository name: write OWNER/NAME (letters, digits, "
            "'-', '_' and '.', at most 96 characters each)"
        )
    return repo_id


def _is_name(part: str) -> bool:
    return bool(_NAME.fullmatch(part)) and ".." not in part and "--" not in part


def _malformed(text: str, why: str) -> CheckpointError:
    return CheckpointError(f"{text!r} is not a Hub checkpoint reference ({why}): write {_FORM}")


def local_checkpoint(source: str | Path) -> Path:
    """The local path of checkpoint ``source``: a path as given, a ``hf://`` reference fetched
    (or found in the Hub cache) first."""
    if is_hub_reference(source):
        return fetch_checkpoint(parse_hub_reference(str(source)))
    return Path(source)


def fetch_checkpoint(reference: HubReference) -> Path:
    """Download ``reference`` into the Hub cache (or find it there) and return its path. Its size
    is checked against MAX_CHECKPOINT_BYTES before the download starts."""
    hub = hub_library(str(reference))
    try:
        plan = hub.hf_hub_download(
            reference.repo_id, reference.filename, revision=reference.revision, dry_run=True
        )
        _check_size(reference, plan.file_size)
        path = Path(
            hub.hf_hub_download(reference.repo_id, reference.filename, revision=reference.revision)
        )
    except Exception as error:  # huggingface_hub's errors, each said in one line below
        raise hub_error(str(reference), error, reference) from None
    _check_size(reference, path.stat().st_size)  # what arrived, whatever the Hub had said
    return path


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


def _check_size(reference: HubReference, size: int | None) -> None:
    if size is not None and size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{reference} is {size:,} bytes, more than the checkpoint size limit of "
            f"{MAX_CHECKPOINT_BYTES:,} bytes; it was not downloaded"
        )


def hub_error(subject: str, error: Exception, reference: HubReference | None = None) -> Exception:
    """``error`` from huggingface_hub while working on ``subject`` (a checkpoint reference, or
    a repository pushed to), as one line a user can act on; errors that are not the Hub's (ours,
    an interrupt) pass through unchanged. ``reference`` names the revision and file fetched."""
    if isinstance(error, CheckpointError | KeyboardInterrupt):
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
        revision = reference.revision if reference else None
        why = f"the repository has no revision {revision!r}"
    elif isinstance(error, errors.RemoteEntryNotFoundError):
        filename = reference.filename if reference else None
        why = f"the repository has no file {filename!r}"
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
    elif isinstance(error, (OSError, ValueError, *_network_errors())):
        why = f"the Hub could not be used: {first_line(error)}"  # no network, a full disk, ...
    else:
        return error
    return CheckpointError(f"{subject}: {why}")


def _network_errors() -> tuple[type[BaseException], ...]:
    """The transport errors of the HTTP client huggingface_hub uses (httpx2 since its 2.0,
    httpx before, requests before 1.0): no network, a refused connection, a timeout."""
    import importlib

    found: list[type[BaseException]] = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "RequestException")):  # fmt: skip
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)
