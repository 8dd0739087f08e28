"""What XLA made of a train step: op counts of the optimised HLO of a compiled function.

Two programs that run the same kernels take the same time, so when ``backprop`` and
``autodiff`` compile to the same counts of matmuls, convolutions, fusions and copies, any
difference in their step times is noise; where they differ, the counts show where.
"""

from __future__ import annotations

import collections
import re

# Kernels that cost something at run time; bookkeeping (parameter, tuple, bitcast, ...) left out.
COUNTED = ("fusion", "dot", "convolution", "copy", "transpose", "reduce", "reduce-window",
           "select-and-scatter", "custom-call", "while", "sort", "scatter", "gather")

# The one layout XLA's CPU convolution kernels are written for (NHWC input, HWIO kernel).
CANONICAL_CONV = "b01f_01io->b01f"


def op_counts(hlo_text: str) -> dict[str, int]:
    """Counts of the ops in :data:`COUNTED` in an optimised HLO module, plus
    ``"non-canonical conv"``: convolutions in any layout but :data:`CANONICAL_CONV`.

    Inside fused computations only ``dot`` and ``convolution`` are counted.
    """
    counts: collections.Counter = collections.Counter()
    fused = False
    for line in hlo_text.splitlines():
        head = line.strip()
        if not line.startswith(" ") and head.endswith("{"):
            # A computation header: fused bodies are named %fused_computation..., %wrapped_...
            fused = bool(re.match(r"%?(fused_|wrapped_|ynn_|.*_fusion)", head))
            continue
        m = re.search(r"=.*?\s([a-z][a-z0-9-]*)\((?:%|\))", head)
        op = m.group(1) if m else None
        # Matmuls and convolutions count wherever they sit, fused or not; other ops only
        # outside fusions (a fusion is one kernel, whatever it contains).
        if op in ("dot", "convolution") or (op in COUNTED and not fused):
            counts[op] += 1
        if op == "convolution" and f"dim_labels={CANONICAL_CONV}" not in head:
            counts["non-canonical conv"] += 1
    return dict(counts)


def summary(counts: dict[str, int]) -> str:
    keys = [k for k in (*COUNTED, "non-canonical conv") if counts.get(k)]
    return ", ".join(f"{counts[k]} {k}" for k in keys)
