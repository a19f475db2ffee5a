"""The CUDA kernels' source by layer (conv, pool, norm, fused), the code that compiles and
launches it (compile.py) and its build for the CPU (host.py); nn/cuda_kernels.py is the
entry point the layers use."""
