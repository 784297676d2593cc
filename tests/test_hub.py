"""Checkpoints on the Hugging Face Hub (``hf://OWNER/NAME[@REVISION][/FILE.safetensors]``) and
``vae push``, tested offline: the Hub cannot be reached from these machines. Every form is loaded
from a Hub cache built here in the documented layout with ``HF_HUB_OFFLINE=1``; the errors that
need the service, and ``push``, go through stand-ins for huggingface_hub's calls that raise its
own exceptions or record the call."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import httpx2
import huggingface_hub
import pytest
import torch
from huggingface_hub import constants
from huggingface_hub import errors as hub_errors
from typer.testing import CliRunner

from conftest import REPO, one_line_error
from vae.checkpoint.hub import HubReference, parse_hub_reference
from vae.cli import app
from vae.limits import MAX_CHECKPOINT_BYTES

SHIPPED = REPO / "pretrained" / "checkpoint_best.safetensors"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TAGGED = "89abcdef0123456789abcdef0123456789abcdef"
runner = CliRunner()


def cache_file(cache: Path, repo_id: str, commit: str, filename: str, source: Path) -> Path:
    """``source`` placed in a Hub cache as huggingface_hub lays it out (a snapshot per commit)."""
    target = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def cache_ref(cache: Path, repo_id: str, ref: str, commit: str) -> None:
    path = cache / f"models--{repo_id.replace('/', '--')}" / "refs" / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(commit)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline Hub cache holding the shipped model as alice/mnist-vae: model.safetensors and
    runs/best.safetensors on main, a copy under tag v1 and under the pull request refs/pr/1."""
    cache = tmp_path / "hub-cache"
    cache_file(cache, "alice/mnist-vae", COMMIT, "model.safetensors", SHIPPED)
    cache_file(cache, "alice/mnist-vae", COMMIT, "runs/best.safetensors", SHIPPED)
    cache_file(cache, "alice/mnist-vae", TAGGED, "model.safetensors", SHIPPED)
    cache_ref(cache, "alice/mnist-vae", "main", COMMIT)
    cache_ref(cache, "alice/mnist-vae", "v1", TAGGED)
    cache_ref(cache, "alice/mnist-vae", "refs/pr/1", TAGGED)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def info_json(reference: str) -> dict:
    result = runner.invoke(app, ["info", "--json", reference])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize(
    "reference",
    [
        "hf://alice/mnist-vae",
        "hf://alice/mnist-vae/model.safetensors",
        "hf://alice/mnist-vae@main",
        f"hf://alice/mnist-vae@{COMMIT}/model.safetensors",
        "hf://alice/mnist-vae/runs/best.safetensors",
        "hf://alice/mnist-vae@v1",
        "hf://alice/mnist-vae@refs%2Fpr%2F1/model.safetensors",
    ],
)
def test_every_form_loads_from_the_hub_cache_offline(hub_cache: Path, reference: str) -> None:
    description = info_json(reference)
    assert description["sha256"] == sha256(SHIPPED)
    assert str(hub_cache) in description["path"]


def test_a_revision_picks_its_own_snapshot(hub_cache: Path) -> None:
    assert f"/{TAGGED}/" in info_json("hf://alice/mnist-vae@v1")["path"]
    assert f"/{COMMIT}/" in info_json("hf://alice/mnist-vae")["path"]


def test_installed_info_reads_the_hub_cache_with_hf_hub_offline(hub_cache: Path) -> None:
    """The real entry point in a fresh process, configured by the environment alone."""
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    info = Path(sys.executable).parent / "info"
    done = subprocess.run(
        [str(info), "--json", "hf://alice/mnist-vae"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sha256"] == sha256(SHIPPED)


def test_generate_draws_the_same_png_from_the_hub(hub_cache: Path, tmp_path: Path) -> None:
    pictures = []
    for source in ("hf://alice/mnist-vae", str(SHIPPED)):
        out = tmp_path / f"{len(pictures)}.png"
        result = runner.invoke(app, ["generate", "--checkpoint", source, "--output", str(out)])
        assert result.exit_code == 0, result.output
        pictures.append(out.read_bytes())
    assert pictures[0] == pictures[1]


def test_python_load_from_the_hub(hub_cache: Path) -> None:
    import vae

    from_hub = vae.load("hf://alice/mnist-vae@v1").module.state_dict()
    local = vae.load(SHIPPED).module.state_dict()
    assert from_hub.keys() == local.keys()
    assert all(torch.equal(from_hub[name], local[name]) for name in local)


def test_evaluate_and_visualize_take_a_hub_checkpoint(
    hub_cache: Path, tmp_path: Path, trained_run: Path, synthetic_data_dir: Path
) -> None:
    best = trained_run / "checkpoint_best.safetensors"
    cache_file(hub_cache, "bob/tiny", COMMIT, "model.safetensors", best)
    cache_ref(hub_cache, "bob/tiny", "main", COMMIT)
    data = ["--data-dir", str(synthetic_data_dir), "--no-download"]
    report = tmp_path / "evaluation.json"
    result = runner.invoke(
        app,
        ["evaluate", "--checkpoint", "hf://bob/tiny", *data, "--limit", "8", "--k", "2",
         "--output", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["checkpoint_sha256"] == sha256(best)
    picture = tmp_path / "traverse.png"
    result = runner.invoke(
        app,
        ["visualize", "traverse", "--checkpoint", "hf://bob/tiny", *data, "--include-inactive",
         "--output", str(picture)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert picture.stat().st_size > 0


def test_every_checkpoint_option_takes_hub_references() -> None:
    """Each place a checkpoint is named parses a string (Path("hf://o/n") would collapse the
    slashes) and resolves it through the one callback."""
    import typer.main

    from vae.cli.common import checkpoint_source

    command = typer.main.get_command(app)
    named = {}

    def walk(group, prefix: str) -> None:
        for name, sub in getattr(group, "commands", {}).items():
            walk(sub, f"{prefix} {name}".strip())
        for param in getattr(group, "params", []):
            if (
                param.name in ("checkpoint", "autoencoder", "compare")
                or prefix == "info"
                and param.name == "path"
            ):
                named[f"{prefix} {param.name}"] = param

    walk(command, "")
    expected = {"generate", "inference", "evaluate", "explore", "info"}
    assert {key.split()[0] for key in named} >= expected | {"visualize"}
    for key, param in named.items():
        assert param.callback is not None and param.callback.__wrapped__ is checkpoint_source, key


@pytest.mark.parametrize(
    ("reference", "fragment"),
    [
        ("hf://alice", "needs OWNER/NAME"),
        ("hf://alice/", "is not a Hub user or repository name"),
        ("hf://-alice/x", "is not a Hub user or repository name"),
        ("hf://alice/a..b", "is not a Hub user or repository name"),
        ("hf://alice/x@", "revision"),
        ("hf://alice/x/weights.bin", "only .safetensors files are fetched"),
        ("hf://alice/x/pytorch_model.pt", "only .safetensors files are fetched"),
        ("hf://alice/x/../y.safetensors", "empty, . or .. part"),
        ("hf://alice/x//y.safetensors", "empty, . or .. part"),
        ("hf://alice/x/a\\b.safetensors", "a character a path on the Hub cannot hold"),
        ("hf://alice/x/a.safetensors#b.safetensors", "a character a path on the Hub cannot hold"),
        ("hf://alice/x@..%2F..%2Fevil", "revision"),
        ("hf://alice/x@%2Ftmp%2Fevil", "revision"),
        ("hf://alice/x@@main", "revision"),
        ("hf://alice/x@main@main", "revision"),
        ("hf://alice/x@%ZZ", "revision"),
        ("hf://alice/x@main#x", "revision"),
    ],
)
def test_malformed_references_are_one_line_without_contacting_the_hub(
    monkeypatch: pytest.MonkeyPatch, reference: str, fragment: str
) -> None:
    def no_call(*args, **kwargs):
        raise AssertionError("the Hub was contacted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_call)
    result = runner.invoke(app, ["info", reference])
    one_line_error(result, 1, fragment)


def test_a_collapsed_reference_says_how_to_write_it() -> None:
    import vae

    with pytest.raises(vae.VAEError, match="two slashes; in Python a str, not a Path"):
        vae.load(Path("hf://alice/mnist-vae"))  # Path collapses // into /
    one_line_error(runner.invoke(app, ["info", "hf:/alice/mnist-vae"]), 1, "hf://OWNER/NAME")


def test_references_parse_into_their_parts() -> None:
    assert parse_hub_reference("hf://a/b") == HubReference("a/b", None, "model.safetensors")
    assert parse_hub_reference("hf://a/b@v2/x/y.safetensors") == HubReference(
        "a/b", "v2", "x/y.safetensors"
    )
    assert parse_hub_reference("hf://a/b@refs%2Fpr%2F3").revision == "refs/pr/3"
    assert str(parse_hub_reference("hf://a/b@v2")) == "hf://a/b@v2/model.safetensors"
    for text in ("hf://a/b@refs%2Fpr%2F3/x.safetensors", "hf://a/b@v2/c/d.safetensors"):
        assert str(parse_hub_reference(text)) == text  # a message's reference parses back


def response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "https://huggingface.co/api/x"))


SERVICE_ERRORS = [
    (hub_errors.RepositoryNotFoundError("404", response=response(404)),
     "no such model repository on the Hub (if it is private, log in"),
    (hub_errors.GatedRepoError("403", response=response(403)),
     "a gated repository: accept its conditions on https://huggingface.co/alice/x"),
    (hub_errors.RevisionNotFoundError("404", response=response(404)), "no such revision 'dev'"),
    (hub_errors.RemoteEntryNotFoundError("404", response=response(404)),
     "has no such file 'model.safetensors'"),
    (hub_errors.HfHubHTTPError("500 Server Error", response=response(500)),
     "the Hub refused: 500 Server Error"),
    (hub_errors.HfHubHTTPError("401 Unauthorized", response=response(401)),
     "the Hub needs a login"),
    (hub_errors.LocalEntryNotFoundError("cannot connect"), "cannot reach the Hub (no network?)"),
    (httpx2.ConnectError("[Errno -3] Temporary failure in name resolution"),
     "the Hub could not be used: [Errno -3]"),
    # hf_xet, which moves the files of Xet-backed repositories, fails with a RuntimeError.
    (RuntimeError("Data processing error: CAS service error : ReqwestMiddleware Error"),
     "the Hub could not be used: Data processing error"),
]  # fmt: skip


@pytest.mark.parametrize(("error", "fragment"), SERVICE_ERRORS)
def test_service_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception, fragment: str
) -> None:
    """Stand-ins for the download raise huggingface_hub's own exceptions, as the service makes
    it raise them (no such repository, gated, ...)."""

    def download(repo_id, filename, **kwargs):
        raise error

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    result = runner.invoke(app, ["generate", "--checkpoint", "hf://alice/x@dev"])
    line = one_line_error(result, 1, "hf://alice/x@dev/model.safetensors: ")
    assert fragment in line, line


def test_offline_with_nothing_cached_says_so(hub_cache: Path) -> None:
    result = runner.invoke(app, ["info", "hf://alice/other"])
    one_line_error(result, 1, "not in the Hub cache", "HF_HUB_OFFLINE is set", str(hub_cache))


def test_a_file_over_the_size_limit_is_never_downloaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = []

    def download(repo_id, filename, *, revision=None, dry_run=False):
        calls.append(dry_run)
        if not dry_run:
            raise AssertionError("downloaded a file over the limit")
        return huggingface_hub.file_download.DryRunFileInfo(
            commit_hash=COMMIT, file_size=MAX_CHECKPOINT_BYTES + 1, filename=filename,
            local_path=str(tmp_path / filename), is_cached=False, will_download=True,
        )  # fmt: skip

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    result = runner.invoke(app, ["info", "hf://alice/huge"])
    one_line_error(result, 1, "more than the checkpoint size limit", "it was not downloaded")
    assert calls == [True]


def test_a_local_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    huge = tmp_path / "huge.safetensors"
    with open(huge, "wb") as handle:
        handle.truncate(MAX_CHECKPOINT_BYTES + 1)  # sparse: takes no disk space
    result = runner.invoke(app, ["info", str(huge)])
    one_line_error(result, 1, "more than the checkpoint size limit")


def test_a_hub_file_that_is_not_a_vae_checkpoint_is_refused(hub_cache: Path) -> None:
    from safetensors.torch import save_file

    foreign = hub_cache.parent / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign))
    cache_file(hub_cache, "eve/foreign", COMMIT, "model.safetensors", foreign)
    cache_ref(hub_cache, "eve/foreign", "main", COMMIT)
    result = runner.invoke(app, ["generate", "--checkpoint", "hf://eve/foreign"])
    one_line_error(result, 1, "not a vae checkpoint")


def test_without_huggingface_hub_one_line_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    result = runner.invoke(app, ["info", "hf://alice/mnist-vae"])
    one_line_error(result, 1, "needs the huggingface_hub package", "poetry install --extras hub")


# --- vae push ---------------------------------------------------------------------------------


class RecordingHub:
    """A stand-in for ``HfApi``: records each call and what the uploaded folder held."""

    calls: list[tuple[str, dict]] = []
    fail: dict[str, Exception] = {}

    def __init__(self, *args, **kwargs) -> None:
        self.calls.append(("HfApi", kwargs))

    def _call(self, name: str, **kwargs):
        self.calls.append((name, kwargs))
        if name in self.fail:
            raise self.fail[name]

    def create_repo(self, repo_id, **kwargs):
        self._call("create_repo", repo_id=repo_id, **kwargs)
        return huggingface_hub.hf_api.RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_branch(self, repo_id, **kwargs):
        self._call("create_branch", repo_id=repo_id, **kwargs)

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = {path.name: path.read_bytes() for path in folder.iterdir()}
        self._call("upload_folder", files=files, **kwargs)


@pytest.fixture
def recording_hub(monkeypatch: pytest.MonkeyPatch) -> type[RecordingHub]:
    RecordingHub.calls = []
    RecordingHub.fail = {}
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHub)
    return RecordingHub


def calls_named(hub: type[RecordingHub], name: str) -> list[dict]:
    return [kwargs for called, kwargs in hub.calls if called == name]


def test_push_creates_the_repository_and_uploads_the_export(
    recording_hub: type[RecordingHub],
) -> None:
    result = runner.invoke(
        app, ["push", str(SHIPPED), "alice/mnist-vae", "--private", "--license", "mit"]
    )
    assert result.exit_code == 0, result.output
    assert "https://huggingface.co/alice/mnist-vae" in result.output
    (created,) = calls_named(recording_hub, "create_repo")
    assert created["repo_id"] == "alice/mnist-vae" and created["private"] is True
    assert created["exist_ok"] is True and created["repo_type"] == "model"
    assert calls_named(recording_hub, "create_branch") == []
    (upload,) = calls_named(recording_hub, "upload_folder")
    assert upload["repo_id"] == "alice/mnist-vae" and upload["revision"] is None
    files = upload["files"]
    assert sorted(files) == ["README.md", "model.safetensors", "samples.png"]
    card = files["README.md"].decode()
    assert "license: mit" in card and 'vae.load("hf://alice/mnist-vae")' in card
    assert str(REPO).encode() not in files["model.safetensors"]
    assert not Path(upload["folder_path"]).exists()  # the temporary folder is gone


def test_push_to_a_branch_creates_it(recording_hub: type[RecordingHub]) -> None:
    result = runner.invoke(app, ["push", str(SHIPPED), "alice/mnist-vae", "--revision", "v2"])
    assert result.exit_code == 0, result.output
    (branch,) = calls_named(recording_hub, "create_branch")
    assert branch["branch"] == "v2" and branch["exist_ok"] is True
    (upload,) = calls_named(recording_hub, "upload_folder")
    assert upload["revision"] == "v2"
    assert calls_named(recording_hub, "create_repo")[0]["private"] is False


@pytest.mark.parametrize(
    ("step", "error", "fragment"),
    [
        ("create_repo", hub_errors.HfHubHTTPError("401", response=response(401)),
         "the Hub needs a login: log in with `hf auth login` or set HF_TOKEN"),
        ("create_repo", hub_errors.LocalTokenNotFoundError("no token"), "the Hub needs a login"),
        ("upload_folder", hub_errors.HfHubHTTPError("403", response=response(403)),
         "no write access"),
        ("create_repo", httpx2.ConnectError("[Errno -3] name resolution"),
         "the Hub could not be used"),
    ],
)  # fmt: skip
def test_push_errors_are_one_line(
    recording_hub: type[RecordingHub], step: str, error: Exception, fragment: str
) -> None:
    recording_hub.fail = {step: error}
    result = runner.invoke(app, ["push", str(SHIPPED), "alice/mnist-vae"])
    one_line_error(result, 1, "vae push to alice/mnist-vae: ", fragment)


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["alice"], 2, "invalid value for OWNER/NAME: 'alice'"),
        (["alice/a/b"], 2, "invalid value for OWNER/NAME"),
        (["alice/m.git"], 2, "invalid value for OWNER/NAME"),
        (["alice/x", "--revision", "a b"], 2, "invalid value for --revision: 'a b'"),
        (["alice/x", "--revision", "../main"], 2, "invalid value for --revision"),
        (["alice/x", "--license", "Not A Licence"], 2, "license"),
    ],
)
def test_push_refuses_before_contacting_the_hub(
    recording_hub: type[RecordingHub], argv: list[str], code: int, fragment: str
) -> None:
    result = runner.invoke(app, ["push", str(SHIPPED), *argv])
    one_line_error(result, code, fragment)
    assert recording_hub.calls == []


def test_push_of_a_missing_checkpoint_creates_no_repository(
    recording_hub: type[RecordingHub], tmp_path: Path
) -> None:
    result = runner.invoke(app, ["push", str(tmp_path / "nope.safetensors"), "alice/x"])
    one_line_error(result, 1, "checkpoint not found")
    assert recording_hub.calls == []


def test_the_download_is_of_the_commit_whose_size_was_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The branch may move between the size check and the download: the download is pinned to
    the checked commit, and the branch's ref is recorded so that offline use finds it."""
    calls = []

    def download(repo_id, filename, *, revision=None, dry_run=False):
        calls.append((revision, dry_run))
        if dry_run:
            return huggingface_hub.file_download.DryRunFileInfo(
                commit_hash=COMMIT, file_size=SHIPPED.stat().st_size, filename=filename,
                local_path="", is_cached=False, will_download=True,
            )  # fmt: skip
        return str(cache_file(tmp_path / "cache", repo_id, revision, filename, SHIPPED))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert info_json("hf://alice/mnist-vae@v3")["sha256"] == sha256(SHIPPED)
    assert calls == [("v3", True), (COMMIT, False)]
    ref = tmp_path / "cache" / "models--alice--mnist-vae" / "refs" / "v3"
    assert ref.read_text() == COMMIT


def test_the_hub_library_retry_warnings_are_held_back(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    import logging

    def download(repo_id, filename, **kwargs):
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 8s [Retry 4/5].")
        raise hub_errors.LocalEntryNotFoundError("cannot connect")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    info = runner.invoke(app, ["info", "hf://alice/x"])
    one_line_error(info, 1, "cannot reach the Hub")
    assert "Retrying" not in capfd.readouterr().err


def test_export_from_the_hub_checks_its_options_before_downloading(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    calls = []
    real = huggingface_hub.hf_hub_download
    monkeypatch.setattr(
        huggingface_hub, "hf_hub_download", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    one_line_error(runner.invoke(app, ["export", "hf://alice/mnist-vae", str(out)]), 2, "empty")
    one_line_error(
        runner.invoke(app, ["export", "hf://alice/mnist-vae", str(tmp_path / "o2"),
                            "--license", "Not A Licence"]), 2, "license",
    )  # fmt: skip
    assert calls == []
    result = runner.invoke(app, ["export", "hf://alice/mnist-vae@v1", str(tmp_path / "o3")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o3" / "model.safetensors").is_file()


def test_push_to_a_branch_says_how_to_load_that_branch(recording_hub: type[RecordingHub]) -> None:
    result = runner.invoke(app, ["push", str(SHIPPED), "alice/m", "--revision", "refs/pr/1"])
    assert result.exit_code == 0, result.output
    assert "https://huggingface.co/alice/m/tree/refs%2Fpr%2F1" in result.output
    assert "--checkpoint hf://alice/m@refs%2Fpr%2F1" in result.output
    card = calls_named(recording_hub, "upload_folder")[0]["files"]["README.md"].decode()
    assert 'vae.load("hf://alice/m@refs%2Fpr%2F1")' in card
    assert parse_hub_reference("hf://alice/m@refs%2Fpr%2F1").revision == "refs/pr/1"


def test_push_while_offline_says_so_before_exporting(
    recording_hub: type[RecordingHub], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vae.push

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(vae.push, "export_checkpoint", lambda *a, **k: pytest.fail("exported"))
    result = runner.invoke(app, ["push", str(SHIPPED), "alice/m"])
    one_line_error(result, 1, "HF_HUB_OFFLINE is set")
    assert recording_hub.calls == []


def test_latent_map_compares_with_a_hub_checkpoint(
    hub_cache: Path, tmp_path: Path, trained_run: Path, synthetic_data_dir: Path
) -> None:
    best = trained_run / "checkpoint_best.safetensors"
    cache_file(hub_cache, "bob/tiny", COMMIT, "model.safetensors", best)
    cache_ref(hub_cache, "bob/tiny", "main", COMMIT)
    picture = tmp_path / "map.png"
    result = runner.invoke(
        app,
        ["visualize", "latent-map", "--checkpoint", str(best), "--compare", "hf://bob/tiny",
         "--data-dir", str(synthetic_data_dir), "--no-download", "--output", str(picture)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert picture.stat().st_size > 0
