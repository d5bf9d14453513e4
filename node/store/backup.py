"""Hot backup and restore of a node (``examnode backup`` / ``restore``).

A backup is a tar archive holding the node's files (configuration, keys,
certificates) and a compacted, consistent copy of the LMDB environment made
by LMDB's own copy inside one read transaction, so it can be taken while the
node serves. A restored node marks itself *restored*: it refuses local
writes until a peer has given back every delta of its own chains made after
the backup, so it never signs a second, different delta with a sequence
number that peers already hold (a fork). Its CRDT client id is fresh on
every start anyway.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from pathlib import Path

import lmdb
import msgpack

from node.errors import StoreError
from node.store import layout
from node.store.store import STORE_DIR

BACKUP_FILES = ("node.toml", "node.key", "authority.crt", "node.crt", "signer.key",
                "signer.crt", "invites.json")
META_RESTORED = layout.META_RESTORED
MAX_MEMBER = 64 * 1024**3


def backup(data_dir: Path, out: Path) -> int:
    """Write a backup of ``data_dir`` to ``out`` (mode 0600); return its size."""
    store_dir = data_dir / STORE_DIR
    if not (store_dir / "data.mdb").exists():
        raise StoreError(f"{data_dir} holds no store")
    env = lmdb.open(str(store_dir), readonly=True, lock=True, max_dbs=len(layout.DB_NAMES) + 2)
    try:
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".backup-") as tmp:
            env.copy(tmp, compact=True)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
                for name in BACKUP_FILES:
                    if (data_dir / name).exists():
                        tar.add(data_dir / name, arcname=name)
                tar.add(Path(tmp) / "data.mdb", arcname=f"{STORE_DIR}/data.mdb")
                stamp = f"examnode backup {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
                info = tarfile.TarInfo("BACKUP")
                info.size = len(stamp)
                tar.addfile(info, io.BytesIO(stamp.encode()))
                f.flush()
                os.fsync(f.fileno())
    finally:
        env.close()
    return out.stat().st_size


def restore(archive: Path, data_dir: Path, *, standalone: bool = False) -> None:
    """Unpack a backup into a new ``data_dir`` and mark it restored."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise StoreError(f"{data_dir} is not empty; restore needs a new directory")
    allowed = {*BACKUP_FILES, f"{STORE_DIR}/data.mdb", "BACKUP"}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = tar.getmembers()
            names = {m.name for m in members}
            if "BACKUP" not in names or f"{STORE_DIR}/data.mdb" not in names:
                raise StoreError(f"{archive} is not an examnode backup")
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            (data_dir / STORE_DIR).mkdir(mode=0o700, exist_ok=True)
            for m in members:
                if m.name not in allowed or not m.isfile() or m.size > MAX_MEMBER:
                    raise StoreError(f"{archive}: unexpected member {m.name!r}")
                src = tar.extractfile(m)
                assert src is not None
                target = data_dir / m.name
                private = m.name.endswith(".key") or m.name == "invites.json"
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o600 if private else 0o644)
                with os.fdopen(fd, "wb") as f:
                    while chunk := src.read(1 << 20):
                        f.write(chunk)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise StoreError(f"{archive}: cannot read the backup: {e}") from e
    env = lmdb.open(str(data_dir / STORE_DIR), max_dbs=len(layout.DB_NAMES) + 2)
    try:
        meta = env.open_db(b"meta")
        with env.begin(write=True) as txn:
            if standalone:
                txn.delete(META_RESTORED, db=meta)
            else:
                txn.put(META_RESTORED, msgpack.packb(int(time.time())), db=meta)
    finally:
        env.close()
