"""Where a split's decoded images live: in this process's memory, or in memory-mapped files that
every process on the machine shares. One rule decides (:meth:`Storage.maps`), ``--storage``
forces either way, and ``--cache-dir`` / ``VAE_CACHE_DIR`` says where decoded shards are written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vae.config import CACHE_DIR_ENV, DataConfig, resolve_data_dir
from vae.reporting import Reporter

# A split is mapped when the copies of it that this machine's training processes would hold in
# memory add up to more than this; below it, reading it into memory costs little and indexing a
# tensor is a little faster than gathering from files.
MAP_ABOVE_BYTES = 1 << 30
CACHE_FOLDER = "vae-cache"


@dataclass
class Storage:
    """How one load stores decoded images: ``mode`` (auto, memory, mapped), the cache folder
    (``cache_root``), the decoding processes, and where progress and notes go."""

    mode: str = "auto"
    cache_root: Path = field(default_factory=lambda: Path("data") / CACHE_FOLDER)
    workers: int = 1
    reporter: Reporter = field(default_factory=Reporter)
    # torchrun's processes on this machine (LOCAL_WORLD_SIZE): each would hold its own copy.
    local_processes: int = 1
    _noted: set[str] = field(default_factory=set)

    @classmethod
    def for_config(cls, config: DataConfig, reporter: Reporter | None = None) -> Storage:
        """The storage ``config`` asks for: ``cache_dir``, else $VAE_CACHE_DIR, else the data
        root's ``vae-cache``."""
        from vae.data.decoding import default_workers
        from vae.distributed import local_process_count

        chosen = config.cache_dir or os.environ.get(CACHE_DIR_ENV)
        root = (
            Path(chosen).expanduser()
            if chosen
            else resolve_data_dir(config.data_dir) / CACHE_FOLDER
        )
        return cls(
            mode=config.storage,
            cache_root=root,
            # 0 and 1 both decode in this process (PyTorch's num_workers=0 is the same).
            workers=default_workers() if config.decode_workers is None else config.decode_workers,
            reporter=reporter or Reporter(),
            local_processes=local_process_count(),
        )

    def maps(self, nbytes: int) -> bool:
        """Whether a split of ``nbytes`` decoded bytes is mapped: always with ``mapped``, never
        with ``memory``, and with ``auto`` when this machine's processes would together hold more
        than MAP_ABOVE_BYTES of it in memory."""
        if self.mode != "auto":
            return self.mode == "mapped"
        return nbytes * self.local_processes > MAP_ABOVE_BYTES

    def note_once(self, text: str) -> None:
        """A one-line note for the user, said once per load however many splits it concerns."""
        if text not in self._noted:
            self._noted.add(text)
            self.reporter.warning(text)
