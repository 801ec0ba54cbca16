"""CUDA backend: PTX emission and a cuda-python driver runtime."""
