"""The host of the livex demo: a job queue whose jobs cross plugin versions.

Every heartbeat the current kitchen version schedules an order (live data) in the host's
``JobQueue``; a worker thread cooks each order when it is due, with the live type and live
function of the version current *at that moment*, looked up by name in the vault. After
``demo/livex/reload.sh`` the orders taken by the old version are cooked by the new one
("handed over"), and on exit the host drains the queue and reports that no job was lost.
Every second order is a banquet: it must be cooked by the version that took it, so the host
takes a lease (``swapper.lease``) when the order is taken and the worker cooks it with the
leased manager, then releases the lease; the old version is freed only after that.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence

from demo import common
from demo.livex.shared import Job, JobQueue, Receipt
from hotswap_runtime import HotswapError, PluginManagerSwapper
from hotswap_runtime.triggers import reload_on_signal

log = logging.getLogger("demo.livex")

#: seconds before a failed job is tried again
RETRY_DELAY = 1.0


class Worker(threading.Thread):
    """Handles due jobs with the live type and live function of the current version."""

    def __init__(self, swapper: PluginManagerSwapper, queue: JobQueue) -> None:
        super().__init__(name="livex-worker", daemon=True)
        self.swapper = swapper
        self.queue = queue
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            job = self.queue.next_due(timeout=0.1)
            if job is not None:
                self.handle(job)

    def stop(self) -> None:
        """Stop after the job in hand, if any; the rest stay queued."""
        self._stopping.set()
        self.join()

    def handle(self, job: Job) -> bool:
        """Handle ``job`` with the current version (a pinned job: with its leased version);
        on failure put it back and return False."""
        manager = job.lease.manager if job.lease is not None else self.swapper.current()
        try:
            if manager is None:
                raise RuntimeError("no plugins loaded")
            live_type = manager.vault.live_types[job.type_name]
            live_func = manager.vault.live_funcs[job.handler]
            receipt = live_func(job.data.unwrap(live_type))
            if not isinstance(receipt, Receipt):
                raise TypeError(f"{job.handler} returned {type(receipt).__name__}, not a Receipt")
        except Exception:
            log.exception("job %d (%s) failed; trying again in %.0f s", job.id, job.handler,
                          RETRY_DELAY)
            self.queue.retry(job, RETRY_DELAY)
            return False
        self.queue.finish(job, receipt)
        pinned = ""
        if job.lease is not None:
            pinned = f' on its version (lease "{job.lease.name}")'
            job.lease.release()  # done with that version: it may be freed now
        print(f"job {job.id}: {receipt.text}, taken by {job.scheduled_by}, "
              f"cooked by {receipt.handled_by}{pinned}", flush=True)
        return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the kitchen until SIGINT or SIGTERM, then drain the queue; return the exit status."""
    args, interval, stop = common.start("livex", argv)

    # an order is due 2.5 heartbeats after it was taken: a reload always finds some pending
    queue = JobQueue(delay=2.5 * interval)
    swapper = PluginManagerSwapper(args.plugin_dir, free_delay=1.0)
    unhandled = 0
    try:
        try:
            details = swapper.load_plugins(None)
        except HotswapError as exc:
            return common.cannot_load("livex", exc)
        if not details:
            return common.nothing_built("livex", args.plugin_dir)

        worker = Worker(swapper, queue)
        worker.start()
        stop_reloading = reload_on_signal(swapper)
        try:
            with common.pid_file(args.pid_file):
                for tick in common.heartbeats(stop, interval):
                    # a banquet must be cooked to the menu it was ordered from: lease it
                    lease = swapper.lease(f"banquet {tick}") if tick % 2 == 0 else None
                    manager = lease.manager if lease is not None else swapper.current()
                    kitchen = manager.find_plugin("kitchen")
                    if kitchen is None:
                        log.error("no kitchen plugin in %s", args.plugin_dir)
                        if lease is not None:
                            lease.release()
                    else:
                        try:
                            if lease is not None:
                                with queue.pinned_to(lease):
                                    kitchen.invoke_func("take_order", queue, tick)
                            else:
                                kitchen.invoke_func("take_order", queue, tick)
                        except Exception:
                            log.exception("kitchen failed to take order %d", tick)
                            if lease is not None:
                                lease.release()
                        version = kitchen.lookup("CompileTimeString")
                        common.say(f"heartbeat {tick}: kitchen {version}: {queue.report()}")
        finally:
            stop_reloading()
            worker.stop()
        # drain: every order still queued is cooked now, by the current version
        for job in queue.take_all():
            worker.handle(job)
        print(f"summary: {queue.report()}", flush=True)
        unhandled = queue.pending()
    finally:
        swapper.close()
    if unhandled:
        log.error("%d jobs could not be handled before exit; see the errors above", unhandled)
        return 1
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
