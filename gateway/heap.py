"""The gateway's long-lived heap and the interpreter's cyclic garbage collector.

Once the gateway has started, most of what the process holds lives as long as it runs: the
modules, the web application, the settings, the meter list, the services (about 100 000 tracked
objects with 512 meters). A full collection walks every tracked object, 20 to 100 ms each time,
on whichever thread happens to allocate: in continuous mode that was a fifth of the gateway's
CPU (the gateway bench, measured with ``perf`` and ``gc.callbacks``), and a bus thread or the
trio loop stopped for as long. Frozen objects are left out of every collection (they are still
freed by reference counting), so collections walk only what came later.
"""

from __future__ import annotations

import gc


def settle() -> int:
    """Collect what is garbage now, then freeze what survives; returns how many objects are
    frozen. Call once the gateway has started."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def release() -> None:
    """Make the frozen objects collectable again: before another run in the same process, so
    that the cycles the stopped run leaves behind are freed."""
    gc.unfreeze()
