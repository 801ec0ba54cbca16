"""Vulkan backend: SPIR-V emission and a runtime on the `vulkan` package."""
