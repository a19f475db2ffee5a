"""The CUDA kernels' source by layer (conv, pool, norm, fused) and the optimiser's
(optimizer), the code that assembles, compiles and launches them (compile.py), the layout of
the reduction kernels (grid.py) and the build for the CPU (host.py); nn/cuda_kernels.py is
the entry point the layers use. Imports go one way: compile.py and host.py import the
sources, the sources import only grid.py, and every kernel function is handed its launcher
(compile.cupy_launcher on a GPU, host.py's on the CPU) by the caller."""
