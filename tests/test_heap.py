"""Settling the heap: objects frozen out of the collector's reach, and handed back."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import weakref

from gearshift.heap import quieter_collection


class _Node:
    """A cycle of one: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_a_cycle_that_dies_inside_the_block_is_freed_after_it() -> None:
    node = _Node()
    gone = weakref.ref(node)
    with quieter_collection():
        assert gc.get_freeze_count() > 0, "inside, what was alive is frozen"
        del node
        gc.collect()
        assert gone() is not None, "frozen: a full pass does not walk it"
        young = _Node()
        young_gone = weakref.ref(young)
        del young
        gc.collect()
        assert young_gone() is None, "what is made inside is still collected"
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gone() is None, "handed back after the block"


def test_a_settled_process_stays_settled_through_the_block() -> None:
    code = textwrap.dedent("""
        import gc
        from gearshift.heap import quieter_collection, settle
        settle()
        frozen = gc.get_freeze_count()
        assert frozen > 1000, frozen
        with quieter_collection():
            pass
        assert gc.get_freeze_count() == frozen, gc.get_freeze_count()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
