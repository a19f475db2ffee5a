/* Winograd F(2x2, 3x3) transforms for nn/winograd_native.py (the GEMMs stay in NumPy).
 *
 * Layouts: x, y, dy, dx NCHW; the transformed tiles V, dV (16, C, P) and M, dM (16, K, P),
 * P = n * th * tw tiles of one chunk of n samples, tile p = (b * th + t) * tw + s. With the
 * tiles last, the 16 products M[k] = U[k]^T V[k], dV[k] = U[k] dM[k] and dU[k] = V[k] dM[k]^T
 * are plain (or transposed) row-major GEMMs for np.matmul, and every kernel below walks one
 * row of tiles of one channel with unit-stride loads and stores.
 *
 * Position k = 4a + b: a the row, b the column of the 4x4 tile (V = B^T d B). Padding is
 * handled by copying each input row, zero-extended, into a small row buffer (no padded copy
 * of the input). The functions are defined once per floating type (winograd_kernels.h). */
#include "dpn.h"

#define WG_REAL float
#define WG_SUF(name) name##_f32
#include "winograd_kernels.h"
#undef WG_REAL
#undef WG_SUF

#define WG_REAL double
#define WG_SUF(name) name##_f64
#include "winograd_kernels.h"
#undef WG_REAL
#undef WG_SUF
