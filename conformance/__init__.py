"""The cross-vendor conformance suite: cases, a runner writing JSON, and a matrix renderer."""
