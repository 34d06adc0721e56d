"""GPU kernels (Triton).

Imported only by the engines that run them: importing attnkit never imports Triton.
"""
