"""Short garbage-collector pauses in the processes that serve and that measure.

CPython's full (generation 2) collection walks every object the collector tracks, and the
process stops meanwhile. `gearshift serve` holds ~90,000 of them once its modules, app and
policy tables are built: live (static ResNet-18 at 30 requests/s, 40 s runs,
`benchmarks/bench_gc.py`), its full pass took 47-60 ms once a run, and the requests in the
front end's hands waited it out (the latency beyond queue and service time of the run's
slowest request: 54-100 ms, against 18-26 ms with the heap settled, where no full pass fell in
a run). The load generator's pass holds its sends and its clock likewise.

`settle` collects once and freezes what is alive (`gc.freeze`): those objects leave the
collector's reach for the process's life, and later passes walk only what was made since. A
process that goes on to other work (the experiment, which measures and then plots) uses
`quieter_collection` around a bounded stretch instead: frozen during it, handed back after.
That one freezes without collecting first: a freeze moves the collector's lists as they are,
where a collection would walk the experiment's whole heap before each of its dozens of short
calibration runs.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


def settle() -> None:
    """Collect, then freeze every object alive now for the rest of the process's life: for a
    process that serves, once its start-up is built."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def quieter_collection() -> Iterator[None]:
    """Every object alive at the start frozen for the duration of the block, and collectable
    again after it (garbage among them, and cycles that died meanwhile, go at the next full
    pass). In a process settled already, nothing: unfreezing there would hand back what is
    frozen for its life."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
