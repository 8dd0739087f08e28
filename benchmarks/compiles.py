"""Counting XLA compilations, to show that training compiles once and then only runs."""

from __future__ import annotations

import contextlib

import jax

_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compiles():
    """Yields a list that collects the duration (s) of every XLA compile inside the block."""
    seen: list[float] = []

    def listener(event, duration, **kwargs):
        if event == _EVENT:
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
