/* Winograd F(2x2, 5x5) transforms for nn/winograd5_native.py (the GEMMs stay in NumPy): the
 * 5x5 stride-1 convolutions with many input channels (thesis-cnn's second layer).
 *
 * Each 2x2 output tile comes from a 6x6 input tile d (stride 2): V = B^T d B, M = U . V with
 * U = G g G^T (36 products per channel pair where a direct 5x5 convolution needs 100),
 * y = A^T M A. The points are those of F(4x4, 3x3) (0, +-1, +-2 and infinity), so B^T is the
 * same matrix (winograd.c); A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 1]; G (6x5, sixths and
 * twenty-fourths) is applied in NumPy with the filter transform.
 *
 * Layouts as winograd.c's: x, y, dy, dx NCHW; V, dV (36, C, P), M, dM (36, K, P) with P the
 * tiles of a chunk of samples, tile p = (b * th + t) * tw + s, position 6a + b, the 36
 * matrices kstride elements apart. Rows outside the image read as zeros, columns outside it
 * stay zero in the row buffers (no padded copy). Defined once per floating type. */
#include <string.h>

#include "dpn.h"

/* The kernels' row buffers and the arrays they read are all T: ivdep tells GCC the stores
 * never feed the loop's own loads (it cannot prove it), so the loops vectorise. */
#if defined(__GNUC__) && !defined(__clang__)
#define W5_IVDEP _Pragma("GCC ivdep")
#else
#define W5_IVDEP
#endif

#define W5_GEN(T, SFX)                                                                      \
                                                                                            \
/* V (36, c, P) = B^T d B of every 6x6 input tile (stride 2) of x (n, c, h, w) padded by pad. */ \
DPN_EXPORT void dpn_wino5_input##SFX(const T *DPN_RESTRICT x, T *DPN_RESTRICT v, int64_t n,  \
        int64_t c, int64_t h, int64_t w, int64_t pad, int64_t th, int64_t tw, int64_t kstride) \
{                                                                                           \
    const int64_t width = 2 * tw + 4, P = n * th * tw;                                      \
    T zero[w], e[6][width];                                                                 \
    memset(zero, 0, sizeof(zero));                                                          \
    memset(e, 0, sizeof(e));                                                                \
    for (int64_t b = 0; b < n; b++)                                                         \
        for (int64_t ch = 0; ch < c; ch++) {                                                \
            const T *plane = x + (b * c + ch) * h * w;                                      \
            for (int64_t t = 0; t < th; t++) {                                              \
                const T *row[6];                                                            \
                for (int i = 0; i < 6; i++) {                                               \
                    int64_t r = 2 * t - pad + i;                                            \
                    row[i] = (r >= 0 && r < h) ? plane + r * w : zero;                      \
                }                                                                           \
                const T *r0 = row[0], *r1 = row[1], *r2 = row[2], *r3 = row[3],             \
                        *r4 = row[4], *r5 = row[5];                                         \
                T *e0 = e[0] + pad, *e1 = e[1] + pad, *e2 = e[2] + pad, *e3 = e[3] + pad,   \
                  *e4 = e[4] + pad, *e5 = e[5] + pad;                                       \
                W5_IVDEP                                                                    \
                for (int64_t j = 0; j < w; j++) {            /* B^T over the rows */        \
                    T d0 = r0[j], d1 = r1[j], d2 = r2[j], d3 = r3[j], d4 = r4[j], d5 = r5[j]; \
                    e0[j] = 4 * d0 - 5 * d2 + d4;                                           \
                    e1[j] = -4 * (d1 + d2) + d3 + d4;                                       \
                    e2[j] = 4 * (d1 - d2) - d3 + d4;                                        \
                    e3[j] = 2 * (d3 - d1) - d2 + d4;                                        \
                    e4[j] = 2 * (d1 - d3) - d2 + d4;                                        \
                    e5[j] = 4 * d1 - 5 * d3 + d5;                                           \
                }                                                                           \
                T *out = v + ch * P + (b * th + t) * tw;                                    \
                for (int a = 0; a < 6; a++) {                /* then over the columns */    \
                    const T *ea = e[a];                                                     \
                    T *o = out + (6 * a) * kstride;                                         \
                    W5_IVDEP                                                                \
                    for (int64_t s = 0; s < tw; s++) {                                      \
                        T d0 = ea[2 * s], d1 = ea[2 * s + 1], d2 = ea[2 * s + 2],           \
                          d3 = ea[2 * s + 3], d4 = ea[2 * s + 4], d5 = ea[2 * s + 5];       \
                        o[s] = 4 * d0 - 5 * d2 + d4;                                        \
                        o[kstride + s] = -4 * (d1 + d2) + d3 + d4;                          \
                        o[2 * kstride + s] = 4 * (d1 - d2) - d3 + d4;                       \
                        o[3 * kstride + s] = 2 * (d3 - d1) - d2 + d4;                       \
                        o[4 * kstride + s] = 2 * (d1 - d3) - d2 + d4;                       \
                        o[5 * kstride + s] = 4 * d1 - 5 * d3 + d5;                          \
                    }                                                                       \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
}                                                                                           \
                                                                                            \
/* y (n, k, oh, ow) = A^T m A of every tile of M (36, k, P), plus bias[k] (when not NULL). */ \
DPN_EXPORT void dpn_wino5_output##SFX(const T *DPN_RESTRICT m, const T *DPN_RESTRICT bias,  \
        T *DPN_RESTRICT y, int64_t n, int64_t k, int64_t oh, int64_t ow, int64_t th,        \
        int64_t tw, int64_t kstride)                                                        \
{                                                                                           \
    const int64_t P = n * th * tw;                                                          \
    T r[2][6][tw], out[2][2 * tw];                                                          \
    for (int64_t b = 0; b < n; b++)                                                         \
        for (int64_t ko = 0; ko < k; ko++) {                                                \
            const T add = bias ? bias[ko] : (T)0;                                           \
            T *plane = y + (b * k + ko) * oh * ow;                                          \
            for (int64_t t = 0; t < th; t++) {                                              \
                const T *in = m + ko * P + (b * th + t) * tw;                               \
                for (int col = 0; col < 6; col++) {          /* A^T over the rows */        \
                    const T *m0 = in + col * kstride, *m1 = m0 + 6 * kstride,               \
                            *m2 = m1 + 6 * kstride, *m3 = m2 + 6 * kstride,                 \
                            *m4 = m3 + 6 * kstride, *m5 = m4 + 6 * kstride;                 \
                    W5_IVDEP                                                                \
                    for (int64_t s = 0; s < tw; s++) {                                      \
                        r[0][col][s] = m0[s] + (m1[s] + m2[s]) + (m3[s] + m4[s]);           \
                        r[1][col][s] = (m1[s] - m2[s]) + 2 * (m3[s] - m4[s]) + m5[s];       \
                    }                                                                       \
                }                                                                           \
                for (int i = 0; i < 2; i++) {                /* then over the columns */    \
                    W5_IVDEP                                                                \
                    for (int64_t s = 0; s < tw; s++) {                                      \
                        T r0 = r[i][0][s], r1 = r[i][1][s], r2 = r[i][2][s],                \
                          r3 = r[i][3][s], r4 = r[i][4][s], r5 = r[i][5][s];                \
                        out[i][2 * s] = r0 + (r1 + r2) + (r3 + r4) + add;                   \
                        out[i][2 * s + 1] = (r1 - r2) + 2 * (r3 - r4) + r5 + add;           \
                    }                                                                       \
                    if (2 * t + i < oh)                                                     \
                        memcpy(plane + (2 * t + i) * ow, out[i], (size_t)ow * sizeof(T));   \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
}                                                                                           \
                                                                                            \
/* dM (36, k, P) = A dY A^T of every 2x2 tile of dy (zeros beyond its edges), the adjoint of \
 * dpn_wino5_output; db[k] += the sum of dy over its samples and pixels. */                 \
DPN_EXPORT void dpn_wino5_output_adjoint##SFX(const T *DPN_RESTRICT dy, T *DPN_RESTRICT dm, \
        double *DPN_RESTRICT db, int64_t n, int64_t k, int64_t oh, int64_t ow, int64_t th,  \
        int64_t tw, int64_t kstride)                                                        \
{                                                                                           \
    const int64_t width = 2 * tw, P = n * th * tw;                                          \
    T zero[width], g[6][width];                                                             \
    memset(zero, 0, sizeof(zero));                                                          \
    memset(g, 0, sizeof(g));                                                                \
    for (int64_t b = 0; b < n; b++)                                                         \
        for (int64_t ko = 0; ko < k; ko++) {                                                \
            const T *plane = dy + (b * k + ko) * oh * ow;                                   \
            double sum = 0.0;                                                               \
            for (int64_t t = 0; t < th; t++) {                                              \
                const T *r0 = plane + 2 * t * ow;                                           \
                const T *r1 = 2 * t + 1 < oh ? r0 + ow : zero;                              \
                T *g0 = g[0], *g1 = g[1], *g2 = g[2], *g3 = g[3], *g4 = g[4], *g5 = g[5];   \
                W5_IVDEP                                                                    \
                for (int64_t j = 0; j < ow; j++) {           /* A over the rows */          \
                    T y0 = r0[j], y1 = r1[j];                                               \
                    sum += (double)(y0 + y1);                                               \
                    g0[j] = y0;                                                             \
                    g1[j] = y0 + y1;                                                        \
                    g2[j] = y0 - y1;                                                        \
                    g3[j] = y0 + 2 * y1;                                                    \
                    g4[j] = y0 - 2 * y1;                                                    \
                    g5[j] = y1;                                                             \
                }                                                                           \
                T *out = dm + ko * P + (b * th + t) * tw;                                   \
                for (int a = 0; a < 6; a++) {                /* then over the columns */    \
                    const T *ga = g[a];                                                     \
                    T *o = out + (6 * a) * kstride;                                         \
                    W5_IVDEP                                                                \
                    for (int64_t s = 0; s < tw; s++) {                                      \
                        T y0 = ga[2 * s], y1 = ga[2 * s + 1];                               \
                        o[s] = y0;                                                          \
                        o[kstride + s] = y0 + y1;                                           \
                        o[2 * kstride + s] = y0 - y1;                                       \
                        o[3 * kstride + s] = y0 + 2 * y1;                                   \
                        o[4 * kstride + s] = y0 - 2 * y1;                                   \
                        o[5 * kstride + s] = y1;                                            \
                    }                                                                       \
                }                                                                           \
            }                                                                               \
            db[ko] += sum;                                                                  \
        }                                                                                   \
}                                                                                           \
                                                                                            \
/* dx (n, c, h, w) = the adjoint of dpn_wino5_input applied to dV (36, c, P): B dV B^T of    \
 * every tile added into its 6x6 window (windows overlap by 4), cropped to the image. */    \
DPN_EXPORT void dpn_wino5_input_adjoint##SFX(const T *DPN_RESTRICT dv, T *DPN_RESTRICT dx,  \
        int64_t n, int64_t c, int64_t h, int64_t w, int64_t pad, int64_t th, int64_t tw,    \
        int64_t kstride)                                                                    \
{                                                                                           \
    const int64_t width = 2 * tw + 4, height = 2 * th + 4, P = n * th * tw;                 \
    T acc[height][width], rr[6][width];                                                     \
    for (int64_t b = 0; b < n; b++)                                                         \
        for (int64_t ch = 0; ch < c; ch++) {                                                \
            memset(acc, 0, sizeof(acc));                                                    \
            for (int64_t t = 0; t < th; t++) {                                              \
                const T *in = dv + ch * P + (b * th + t) * tw;                              \
                memset(rr, 0, sizeof(rr));                                                  \
                for (int a = 0; a < 6; a++) {    /* B over the columns, windows overlap */  \
                    const T *v = in + (6 * a) * kstride;                                    \
                    T *ra = rr[a];                                                          \
                    for (int64_t s = 0; s < tw; s++) {                                      \
                        T v0 = v[s], v1 = v[kstride + s], v2 = v[2 * kstride + s],          \
                          v3 = v[3 * kstride + s], v4 = v[4 * kstride + s],                 \
                          v5 = v[5 * kstride + s];                                          \
                        ra[2 * s] += 4 * v0;                                                \
                        ra[2 * s + 1] += 4 * (v2 - v1 + v5) + 2 * (v4 - v3);                \
                        ra[2 * s + 2] += -5 * v0 - 4 * (v1 + v2) - v3 - v4;                 \
                        ra[2 * s + 3] += v1 - v2 + 2 * (v3 - v4) - 5 * v5;                  \
                        ra[2 * s + 4] += v0 + v1 + v2 + v3 + v4;                            \
                        ra[2 * s + 5] += v5;                                                \
                    }                                                                       \
                }                                                                           \
                T *a0 = acc[2 * t], *a1 = a0 + width, *a2 = a1 + width, *a3 = a2 + width,   \
                  *a4 = a3 + width, *a5 = a4 + width;                                       \
                W5_IVDEP                                                                    \
                for (int64_t j = 0; j < width; j++) {        /* then over the rows */       \
                    T v0 = rr[0][j], v1 = rr[1][j], v2 = rr[2][j], v3 = rr[3][j],           \
                      v4 = rr[4][j], v5 = rr[5][j];                                         \
                    a0[j] += 4 * v0;                                                        \
                    a1[j] += 4 * (v2 - v1 + v5) + 2 * (v4 - v3);                            \
                    a2[j] += -5 * v0 - 4 * (v1 + v2) - v3 - v4;                             \
                    a3[j] += v1 - v2 + 2 * (v3 - v4) - 5 * v5;                              \
                    a4[j] += v0 + v1 + v2 + v3 + v4;                                        \
                    a5[j] += v5;                                                            \
                }                                                                           \
            }                                                                               \
            T *plane = dx + (b * c + ch) * h * w;                                           \
            for (int64_t r = 0; r < h; r++)                                                 \
                memcpy(plane + r * w, acc[r + pad] + pad, (size_t)w * sizeof(T));           \
        }                                                                                   \
}

W5_GEN(float, _f32)
W5_GEN(double, _f64)
