"""The conformance catalogue: importing this package registers every case, group by group."""

from . import (  # noqa: F401  (each module registers its cases on import)
    async_semantics,
    atomics,
    channels,
    collectives,
    equivalence,
    language,
    litmus,
    memory,
    progress,
    stress,
    sync,
)
