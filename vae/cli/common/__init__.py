"""What every command shares, one job a module: how a command fails (:mod:`.errors`), the options
several commands declare (:mod:`.options`), the checks of their values (:mod:`.checks`), what a
command writes (:mod:`.output`), and the images a picture command shows its model
(:mod:`.image_source`). Every name is re-exported here: ``from vae.cli.common import ...``.

Nothing here imports torch: ``info`` must start without it.
"""

from __future__ import annotations

from vae.cli.common.checks import (
    check_finite_positive,
    check_grid_fits,
    check_picture_output,
    check_picture_size,
    check_pictures,
    check_positive,
    read_paths,
)
from vae.cli.common.errors import handle_errors, is_main_process
from vae.cli.common.image_source import ImageSource, reads_images
from vae.cli.common.options import (
    IMAGES_DIR,
    AliasCommand,
    BinarizeInputOption,
    CheckpointOption,
    DataDirOption,
    DatasetOption,
    DeviceOption,
    DownloadOption,
    GridSizeOption,
    InputOption,
    InvertOption,
    LimitOption,
    SeedOption,
    ShownClassOption,
    checkpoint_source,
    shipped_default,
)
from vae.cli.common.output import (
    _write_json,
    _write_safely,
    count,
    explain_samples,
    say,
    write_json,
    write_safely,
)

__all__ = [
    "IMAGES_DIR",
    "AliasCommand",
    "BinarizeInputOption",
    "CheckpointOption",
    "DataDirOption",
    "DatasetOption",
    "DeviceOption",
    "DownloadOption",
    "GridSizeOption",
    "ImageSource",
    "InputOption",
    "InvertOption",
    "ShownClassOption",
    "LimitOption",
    "SeedOption",
    "_write_json",
    "_write_safely",
    "check_finite_positive",
    "check_grid_fits",
    "check_picture_output",
    "check_picture_size",
    "check_pictures",
    "check_positive",
    "count",
    "explain_samples",
    "handle_errors",
    "is_main_process",
    "read_paths",
    "reads_images",
    "say",
    "checkpoint_source",
    "shipped_default",
    "write_json",
    "write_safely",
]
