/* Layout kernels around the OpenBLAS GEMMs of a channels-last convolution
 * (dptrain/nn/conv_native.py): they replace NumPy's strided copies (im2col's window copy,
 * col2im's 25 strided adds, the NCHW <-> NHWC transposes of x, y, dY and dX). */
#include "dpn.h"

#define REAL float
#define SUF _f32
#include "conv_layout.h"
#undef REAL
#undef SUF

#define REAL double
#define SUF _f64
#include "conv_layout.h"
#undef REAL
#undef SUF
