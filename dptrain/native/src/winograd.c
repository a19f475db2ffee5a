/* Winograd F(4x4, 3x3) transforms for nn/winograd_native.py (the GEMMs stay in NumPy).
 *
 * Each 4x4 output tile comes from a 6x6 input tile d (stride 4): V = B^T d B, M = U . V with
 * U = G g G^T the filter's transform (36 products per channel pair where a direct 3x3
 * convolution needs 144), y = A^T M A. Matrices (Lavin & Gray 2016, points 0, +-1, +-2):
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
 *          0 4 0 -5 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 *
 * Layouts: x, y, dy, dx NCHW; the transformed tiles V, dV (36, C, P) and M, dM (36, K, P),
 * P = n * th * tw tiles of one chunk of n samples, tile p = (b * th + t) * tw + s, position
 * 6a + b (a the row, b the column in the tile); the 36 matrices lie kstride elements apart.
 * With the tiles last, the 36 products M[i] = U[i]^T V[i], dV[i] = U[i] dM[i] and
 * dU[i] = V[i] dM[i]^T are plain (or transposed) row-major GEMMs for np.matmul, and every
 * kernel below walks one row of tiles of one channel with unit-stride stores. Padding is
 * handled in place: a row above or below the image is read from a zero row, the columns left
 * and right of it stay zero in the kernels' row buffers (no padded copy of the input). The
 * functions are defined once per floating type (winograd_kernels.h). */
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
