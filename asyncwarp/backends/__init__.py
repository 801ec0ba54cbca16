"""Backends: each an emitter plus a runtime behind core.backend.Backend."""
