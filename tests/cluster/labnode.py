"""A real node process driven by line commands on stdin, for the cluster tests.

Run as ``[ip netns exec NS] python tests/cluster/labnode.py --data DIR`` with
``PYTHONPATH`` at the repository root. It serves the node in ``DIR`` exactly as
``examnode run`` does (``open_context`` + ``RunningNode``), prints
``READY <node_id>`` once listening, and answers one command per line:

    put KEY VALUE     store.put("lab/KEY", {"v": VALUE, "by": node_id}) in the centre's
                      scope; prints ``ACK KEY VALUE`` only once the put returned (durable)
    burst PREFIX N    N such puts at once (keys PREFIX-0 ... PREFIX-<N-1>, value = key);
                      one ACK per completed put, then ``BURST PREFIX N FAILED``
    vv                ``VV {"<node id>/<scope>": seq, ...}``
    dump [COLL]       ``DUMP {key: data, ...}`` of every record of COLL (default ``lab``)
    status            ``STATUS {...}``: peers in session, dialers, pending, quarantined
    tasks             ``TASKS [...]``: every asyncio task and where it waits
    quit              stop cleanly (as SIGTERM does) and exit 0

A failed put prints ``NACK KEY <error>``. stdin closing also stops the node, so
a test that dies takes its nodes with it. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from node.identity import node_id_of
from node.runtime import RunningNode, open_context
from node.services.system import NodeContext

COLLECTION = "lab"
log = logging.getLogger("labnode")


def emit(line: str) -> None:
    """Write one line to the test and flush it at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Commands:
    """The command interpreter of one running node."""

    def __init__(self, ctx: NodeContext, stop: asyncio.Event) -> None:
        self.ctx = ctx
        self.stop = stop
        self.tasks: set[asyncio.Task[None]] = set()

    async def put(self, key: str, value: str) -> bool:
        try:
            await self.ctx.store.put(f"{COLLECTION}/{key}", {"v": value, "by": self.ctx.node_id},
                                     scope=self.ctx.center)
        except Exception as e:
            emit(f"NACK {key} {type(e).__name__}: {e}")
            return False
        emit(f"ACK {key} {value}")  # only after the put returned: the write is durable
        return True

    async def burst(self, prefix: str, n: int) -> None:
        # All n writes are in flight together, but they are started in slices so that
        # creating them never holds the event loop for long (that would stall sessions).
        running: list[asyncio.Task[bool]] = []
        for i in range(n):
            key = f"{prefix}-{i}"
            running.append(asyncio.create_task(self.put(key, key), name=f"lab-put-{key}"))
            if i % 250 == 249:
                await asyncio.sleep(0)
        done = await asyncio.gather(*running)
        emit(f"BURST {prefix} {n} {done.count(False)}")

    def vv(self) -> dict[str, int]:
        return {f"{node_id_of(o)}/{s}": n
                for (o, s), n in sorted(self.ctx.store.version_vector().items())}

    def dump(self, collection: str) -> dict[str, Any]:
        return {v.key: v.data for v in self.ctx.store.scan(collection, include_deleted=True)}

    def status(self) -> dict[str, Any]:
        stats = self.ctx.store.stats()
        rep = self.ctx.replicator
        return {
            "node_id": self.ctx.node_id,
            "peers": sorted(rep.sessions) if rep is not None else [],
            "sessions": {pid: {k: v for k, v in vars(sess.state).items()
                               if k in ("direction", "sent", "received", "refused")}
                         for pid, sess in rep.sessions.items()} if rep is not None else {},
            "dialing": dict(rep._dial_state) if rep is not None else {},
            "pending": stats["pending_entries"],
            "quarantined": stats["quarantine_entries"],
            "deltas": stats["log_entries"],
        }

    @staticmethod
    def tasks_now() -> list[str]:
        """Describe every task of the loop with where it waits (for failure reports)."""
        out = []
        for task in asyncio.all_tasks():
            frames = task.get_stack()
            where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
            out.append(f"{task.get_name()}: {where}")
        return sorted(out)

    def spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def handle(self, line: str) -> None:
        """Run one command line; long ones (put, burst) run as tasks."""
        parts = line.split()
        if not parts:
            return
        cmd, args = parts[0], parts[1:]
        if cmd == "put" and len(args) == 2:
            self.spawn(self.put(args[0], args[1]), f"lab-put-{args[0]}")
        elif cmd == "burst" and len(args) == 2 and args[1].isdigit():
            self.spawn(self.burst(args[0], int(args[1])), f"lab-burst-{args[0]}")
        elif cmd == "vv":
            emit("VV " + json.dumps(self.vv()))
        elif cmd == "dump":
            emit("DUMP " + json.dumps(self.dump(args[0] if args else COLLECTION)))
        elif cmd == "status":
            emit("STATUS " + json.dumps(self.status()))
        elif cmd == "tasks":
            emit("TASKS " + json.dumps(self.tasks_now()))
        elif cmd == "quit":
            self.stop.set()
        else:
            emit(f"ERROR unknown command {line!r}")


async def read_commands(commands: Commands) -> None:
    """Feed stdin lines to ``commands``; end of input stops the node."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            commands.handle(line.decode().strip())
    finally:
        transport.close()
        commands.stop.set()


async def watch_lag(limit: float = 0.5) -> None:
    """Log when the event loop was blocked longer than ``limit`` (a diagnosis aid)."""
    loop = asyncio.get_running_loop()
    while True:
        t0 = loop.time()
        await asyncio.sleep(0.1)
        late = loop.time() - t0 - 0.1
        if late > limit:
            log.warning("event loop blocked for %.2f s", late)


async def main(data: Path) -> None:
    """Serve the node in ``data`` and obey stdin until told to stop."""
    ctx = open_context(data)
    logging.getLogger().setLevel(ctx.config.log.level)
    node = RunningNode(ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    commands = Commands(ctx, stop)
    await node.start()
    emit(f"READY {ctx.node_id}")
    reading = asyncio.create_task(read_commands(commands), name="lab-stdin")
    commands.spawn(watch_lag(), "lab-lag")
    try:
        await stop.wait()
    finally:
        reading.cancel()
        for task in list(commands.tasks):
            if task.get_name() == "lab-lag":
                task.cancel()
        # Writes already submitted finish (and are acknowledged) before the store closes.
        await asyncio.gather(reading, *commands.tasks, return_exceptions=True)
        await node.stop()
        emit("STOPPED")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(parser.parse_args().data))
