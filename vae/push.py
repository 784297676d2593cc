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

from vae.checkpoint.hub import check_repo_id, hub_error, hub_library
from vae.errors import CheckpointError
from vae.export import Export, export_checkpoint


@dataclass
class Push:
    """What ``push_checkpoint`` did: the export it uploaded and the repository's address."""

    export: Export
    url: str
    revision: str | None


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
    if revision is not None and (not revision.strip() or revision != revision.strip()):
        raise CheckpointError(f"{revision!r} is not a branch name")
    hub = hub_library("vae push")
    with tempfile.TemporaryDirectory(prefix="vae-push-") as scratch:
        folder = Path(scratch) / "export"
        # Exported before the Hub is touched: a bad checkpoint or option creates no repository.
        done = export_checkpoint(
            source, folder, license=license, evaluation=evaluation, repo_id=repo_id
        )
        try:
            api = hub.HfApi()
            url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            if revision is not None:
                api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
            api.upload_folder(
                repo_id=repo_id,
                repo_type="model",
                folder_path=str(folder),
                revision=revision,
                commit_message=f"vae push of {done.checkpoint.name}",
            )
        except Exception as error:  # huggingface_hub's errors, each said in one line
            raise hub_error(f"vae push to {repo_id}", error) from None
    return Push(done, str(url), revision)
