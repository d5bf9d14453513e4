"""Helper process for the durability test: write concurrently, acknowledge each durable put.

Usage: python tests/store/ackwriter.py DATA_DIR [WORKERS] [KEYS_PER_WORKER]

Creates the node key in DATA_DIR (Identity.save), opens the Store there and
runs WORKERS concurrent writers forever. Each prints ``ACK <key> <value>`` and
flushes stdout only after ``await store.put(...)`` has returned, i.e. once the
write's batch is committed. Values per key only grow. The test kills this
process with SIGKILL and checks that every acknowledged value survived.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from node.identity import Identity
from node.store import Store, StoreOptions

SCOPE = "S1"


async def _worker(store: Store, worker: int, keys: int) -> None:
    i = 0
    while True:
        key = f"acks/w{worker}-k{i % keys}"
        await store.put(key, {"v": i, "w": worker}, scope=SCOPE)
        sys.stdout.write(f"ACK {key} {i}\n")
        sys.stdout.flush()
        i += 1


async def main(data_dir: Path, workers: int, keys: int) -> None:
    identity = Identity.generate()
    identity.save(data_dir)
    store = Store(data_dir, identity, StoreOptions(map_size=256 * 1024**2))
    store.open()
    try:
        await asyncio.gather(*(_worker(store, w, keys) for w in range(workers)))
    finally:
        store.close()


if __name__ == "__main__":
    directory = Path(sys.argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(directory,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 8,
                     int(sys.argv[3]) if len(sys.argv) > 3 else 5))
