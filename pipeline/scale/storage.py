"""Where a Ray run keeps its files: a directory every node can reach, named by a path or a URI.

``--storage`` takes a local or NFS path (``/mnt/shared/tastebud``) or a URI that pyarrow has a
filesystem for (``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///mnt/shared``). Ray Train
writes its checkpoints there (``RunConfig(storage_path=...)``) and Ray Data reads the exported
Parquet shards from there, so every node sees the same files and a restarted driver finds them again.

Without ``--storage`` a run uses a directory on this machine: enough for a local Ray instance or a
one-node cluster; a cluster of several nodes refuses such a run (:func:`require_shared_storage`), since
its other nodes could not read the shards nor leave checkpoints where a restarted run finds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from store.errors import TastebudError


@dataclass(frozen=True)
class RunStorage:
    """A run's folder on shared storage (or on this machine): where its shards and checkpoints go.

    Example:
        >>> RunStorage.at("/mnt/shared", "run-1").uri("data", "train")
        '/mnt/shared/run-1/data/train'
    """

    root: str  # the --storage value as Ray Train takes it: an absolute path or a URI
    name: str  # this run's folder under root
    shared: bool = True  # False: a folder on this machine that other nodes cannot read

    @classmethod
    def at(cls, storage: str, name: str, *, shared: bool = True) -> RunStorage:
        """The folder ``name`` under ``storage``; a bad URI or an unknown scheme is a one-line error."""
        root = storage.rstrip("/") if "://" in storage else str(Path(storage).expanduser().resolve())
        try:
            pafs.FileSystem.from_uri(root if "://" in root else Path(root).as_uri())
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise TastebudError(f"--storage {storage!r}: {exc}") from None
        return cls(root, name, shared)

    @property
    def is_uri(self) -> bool:
        return "://" in self.root

    def uri(self, *parts: str) -> str:
        """A path or URI under this run's folder, as Ray Data and Ray Train take it."""
        return "/".join([self.root, self.name, *parts])

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        if self.is_uri:
            return pafs.FileSystem.from_uri(self.uri())
        return pafs.LocalFileSystem(), self.uri()

    def local_dir(self, *parts: str) -> Path | None:
        """The folder as a local directory (created), or None when the storage is remote (s3://, gs://)."""
        fs, base = self._fs()
        if not isinstance(fs, pafs.LocalFileSystem):
            return None
        folder = Path(base, *parts)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def upload(self, local: Path, *parts: str) -> None:
        """Copy a local file, or a directory's files, to ``parts`` under this run's folder (pyarrow's filesystems)."""
        fs, base = self._fs()
        target = "/".join([base, *parts])
        fs.create_dir(target if Path(local).is_dir() else target.rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(str(local), target, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)

    def exists(self, *parts: str) -> bool:
        fs, base = self._fs()
        return fs.get_file_info("/".join([base, *parts])).type != pafs.FileType.NotFound

    def remove(self, *parts: str) -> None:
        """Delete this run's folder (or a part of it); a folder already gone is fine."""
        fs, base = self._fs()
        target = "/".join([base, *parts])
        if fs.get_file_info(target).type != pafs.FileType.NotFound:
            fs.delete_dir(target)


def require_shared_storage(ray, shared: bool, what: str) -> None:
    """Refuse a run whose files would sit on this machine's disk (``shared`` False) while the cluster has
    other nodes that need them."""
    if shared:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1:
        raise TastebudError(
            f"this Ray cluster has {len(nodes)} nodes: {what} needs --storage, a path or URI every node can reach "
            "(an NFS mount, s3://..., gs://...)")


def check_client_storage(address: str | None, storage: str | None) -> None:
    """A Ray Client driver (``ray://``) is no node of its cluster: its files must be on shared storage."""
    if address and address.startswith("ray://") and not storage:
        raise TastebudError("a Ray Client address (ray://) needs --storage: the cluster cannot read this machine's disk")
