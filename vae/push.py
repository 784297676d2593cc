"""A checkpoint shared on the Hugging Face Hub: exported (``vae.export``) into a temporary folder,
then uploaded as one commit to a model repository, created when it is not there. The token is
huggingface_hub's own: ``HF_TOKEN``, else the one ``hf auth login`` stored.

Not run against the live Hub from this project's machines (they cannot reach it); its tests stand
in for the Hub's calls, recording them or raising huggingface_hub's own exceptions.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vae.checkpoint.hub import (
    DEFAULT_HUB_FILE,
    HubReference,
    check_repo_id,
    hub_error,
    hub_library,
    is_revision,
    quiet_hub,
)
from vae.errors import CheckpointError, ConfigError, Setting, shown
from vae.export import Export, export_checkpoint


@dataclass
class Push:
    """What ``push_checkpoint`` did: the export it uploaded, the page of the repository (at the
    branch, when one was named) and the reference that loads it (``hf://OWNER/NAME[@BRANCH]``)."""

    export: Export
    url: str
    reference: str


def push_checkpoint(
    source: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    license: str | None = None,
    evaluation: str | Path | None = None,
) -> Push:
    """Export ``source`` (a checkpoint, a run folder or a ``hf://`` reference) and upload the
    folder to the model repository ``repo_id`` (``OWNER/NAME``), on branch ``revision`` (created
    from the default branch when missing; None: the default branch). ``private`` applies when
    the repository is created; an existing repository keeps its visibility."""
    check_repo_id(repo_id)
    if revision is not None and not is_revision(revision):
        raise ConfigError(
            "invalid value for ",
            Setting("revision"),
            f": {shown(revision)} (a branch name: letters, digits, '.', '_', '-' and '/')",
        )
    target = HubReference(repo_id, revision, DEFAULT_HUB_FILE)
    subject = f"vae push to {repo_id}"
    hub = hub_library("vae push")
    if hub.constants.HF_HUB_OFFLINE:
        raise CheckpointError(f"{subject}: HF_HUB_OFFLINE is set; unset it to reach the Hub")
    with tempfile.TemporaryDirectory(prefix="vae-push-") as scratch:
        folder = Path(scratch) / "export"
        # Exported before the Hub is touched: a bad checkpoint or option creates no repository.
        done = export_checkpoint(
            source, folder, license=license, evaluation=evaluation, hub_source=target.short
        )
        with quiet_hub():
            try:
                _upload(hub.HfApi(), target, folder, private, done.checkpoint.name)
            except Exception as error:  # the Hub's failures, each said in one line
                raise hub_error(subject, error, target) from None
    return Push(done, target.page, target.short)


def _upload(api: Any, target: HubReference, folder: Path, private: bool, name: str) -> None:
    """``folder`` uploaded as one commit to ``target``'s repository and branch, both created
    when missing."""
    api.create_repo(target.repo_id, repo_type="model", private=private, exist_ok=True)
    if target.revision is not None:
        api.create_branch(target.repo_id, branch=target.revision, repo_type="model", exist_ok=True)
    api.upload_folder(
        repo_id=target.repo_id,
        repo_type="model",
        folder_path=str(folder),
        revision=target.revision,
        commit_message=f"vae push of {name}",
    )
