/* BatchNorm -> ReLU -> MaxPool2D (training, windows k x k tiling each plane), compiled: the
 * passes of nn/fused_cpu.py, each one sweep over the full-size input (nn/fused_native.py
 * calls them).
 *
 * A plane is one (n, c) image of H*W = k*k*P elements, P = OH*OW windows. Layouts:
 *   blocked == 0: NCHW, window (oh, ow) offset (a, b) at (k*oh + a) * W + k*ow + b;
 *   blocked != 0: window offset first (conv_direct.py's hand-off), offset t at t*P + p.
 * Forward works on xs = (x - mean) * inv_std * s, s = -1 where gamma < 0 else 1, so that
 * gamma * xhat + beta increases with xs (fused_cpu.py): the pooled maximum and its first
 * position (the offset t, 0..k*k-1, of the window's first maximum; NaN wins and is kept)
 * are found on xs; ReLU and the affine map act on the pooled value only. */
#include "dpn.h"

#include <stdlib.h>

/* Comparisons may be if-converted (vectorised) without caring for the floating-point
 * exception flags, which nothing reads; NaN and infinity still propagate. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

/* Where offset t of a window lies from the window's first element, per layout (k*k <= 256). */
static void dpn_offsets(int64_t blocked, int64_t k, int64_t w, int64_t P, int64_t *off) {
    for (int64_t t = 0; t < k * k; t++)
        off[t] = blocked ? t * P : (t / k) * w + t % k;
}

/* The top-left element of each 2 x 2 window of an NCHW plane, window by window (NULL when
 * out of memory: the row-by-row loops run). */
static int32_t *dpn_corners(int64_t h, int64_t w) {
    const int64_t pw = w / 2, P = (h / 2) * pw;
    int32_t *corner = malloc((size_t)(P > 0 ? P : 1) * sizeof(int32_t));
    if (corner != NULL)
        for (int64_t p = 0; p < P; p++)
            corner[p] = (int32_t)((p / pw) * 2 * w + (p % pw) * 2);
    return corner;
}

/* Lane-wise partial sums (LANES independent accumulators, which GCC vectorises without
 * reassociating), folded into double per plane. */
#define DPN_LANES 16

#define DPN_DEFINE(REAL, SFX)                                                                \
static double dpn_plane_sum##SFX(const REAL *DPN_RESTRICT p, int64_t hw, REAL m, int sq) {   \
    REAL lane[DPN_LANES] = {0};                                                            \
    int64_t e = 0;                                                                         \
    if (sq) {                                                                              \
        for (; e + DPN_LANES <= hw; e += DPN_LANES)                                        \
            for (int l = 0; l < DPN_LANES; l++) {                                          \
                const REAL d = p[e + l] - m;                                               \
                lane[l] += d * d;                                                          \
            }                                                                              \
    } else {                                                                               \
        for (; e + DPN_LANES <= hw; e += DPN_LANES)                                        \
            for (int l = 0; l < DPN_LANES; l++)                                            \
                lane[l] += p[e + l];                                                       \
    }                                                                                      \
    double acc = 0.0;                                                                      \
    for (; e < hw; e++) {                                                                  \
        const REAL d = sq ? (p[e] - m) * (p[e] - m) : p[e];                                \
        acc += d;                                                                          \
    }                                                                                      \
    for (int l = 0; l < DPN_LANES; l++) acc += lane[l];                                    \
    return acc;                                                                            \
}                                                                                          \
                                                                                           \
/* Per channel sum of x. */                                                                \
DPN_EXPORT void dpn_bn_channel_sum##SFX(const REAL *DPN_RESTRICT x, int64_t n, int64_t c,   \
                                        int64_t hw, REAL *DPN_RESTRICT out) {              \
    for (int64_t j = 0; j < c; j++) {                                                      \
        double acc = 0.0;                                                                  \
        for (int64_t i = 0; i < n; i++)                                                    \
            acc += dpn_plane_sum##SFX(x + (i * c + j) * hw, hw, 0, 0);                     \
        out[j] = (REAL)acc;                                                                \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* Per channel sum of (x - mean)^2 (two passes over x: exact for float32, as norm.py). */   \
DPN_EXPORT void dpn_bn_channel_sqdev##SFX(const REAL *DPN_RESTRICT x,                      \
                                          const REAL *DPN_RESTRICT mean, int64_t n,        \
                                          int64_t c, int64_t hw, REAL *DPN_RESTRICT out) { \
    for (int64_t j = 0; j < c; j++) {                                                      \
        double acc = 0.0;                                                                  \
        for (int64_t i = 0; i < n; i++)                                                    \
            acc += dpn_plane_sum##SFX(x + (i * c + j) * hw, hw, mean[j], 1);               \
        out[j] = (REAL)acc;                                                                \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* One offset o of a row of windows against the running maximum yp (its offset in ap); the \
 * fast form, for a channel whose mean and scale are finite (then xs has no NaN: a NaN in x   \
 * makes its channel's mean NaN), and the careful one where a NaN replaces the maximum and   \
 * stays, as NumPy's maximum propagates it. Inlined with a constant step, GCC vectorises. */ \
static inline void dpn_pool_offset##SFX(const REAL *DPN_RESTRICT at, REAL m, REAL a,       \
                                        REAL *DPN_RESTRICT yp, int32_t *DPN_RESTRICT ap,   \
                                        int64_t pw, int64_t step, int32_t o, int careful) { \
    if (!careful) {                                                                        \
        for (int64_t q = 0; q < pw; q++) {                                                 \
            const REAL v = (at[q * step] - m) * a, best = yp[q];                           \
            ap[q] = v > best ? o : ap[q];                                                  \
            yp[q] = v > best ? v : best;                                                   \
        }                                                                                  \
        return;                                                                            \
    }                                                                                      \
    for (int64_t q = 0; q < pw; q++) {                                                     \
        const REAL v = (at[q * step] - m) * a, best = yp[q];                               \
        if (best == best && (v > best || v != v)) { yp[q] = v; ap[q] = o; }                \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* Pooled output y (N, C, P) and each window's first-maximum offset arg (N, C, P), a row    \
 * of windows at a time, offset by offset (y holds the running maximum of xs). A window    \
 * whose y is NaN gets gz 0 or NaN, so where its offset points does not matter. */         \
DPN_EXPORT void dpn_bn_relu_pool_forward##SFX(                                             \
    const REAL *DPN_RESTRICT x, const REAL *DPN_RESTRICT mean,                             \
    const REAL *DPN_RESTRICT inv_std, const REAL *DPN_RESTRICT gamma,                      \
    const REAL *DPN_RESTRICT beta, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,  \
    int64_t blocked, REAL *DPN_RESTRICT y, REAL *DPN_RESTRICT pooled,                      \
    int32_t *DPN_RESTRICT arg) {                                                           \
    const int64_t ph = h / k, pw = w / k, P = ph * pw, hw = h * w, kk = k * k;             \
    int64_t off[256];                                                                      \
    dpn_offsets(blocked, k, w, P, off);                                                    \
    const int64_t step = blocked ? 1 : k;                                                  \
    int32_t *corner = k == 2 && !blocked && hw < INT32_MAX ? dpn_corners(h, w) : NULL;    \
    const int32_t w32 = (int32_t)w;                                                        \
    for (int64_t i = 0; i < n; i++)                                                        \
        for (int64_t j = 0; j < c; j++) {                                                  \
            const REAL *plane = x + (i * c + j) * hw;                                      \
            const REAL s = gamma[j] < 0 ? (REAL)-1 : (REAL)1;                              \
            const REAL m = mean[j], a = inv_std[j] * s, g = gamma[j] * s, b = beta[j];     \
            const int careful = !(m - m == 0 && a - a == 0);                               \
            if (corner != NULL && !careful) {   /* k = 2, NCHW: all windows in one loop */ \
                REAL *DPN_RESTRICT yp = y + (i * c + j) * P;                               \
                REAL *DPN_RESTRICT pp = pooled + (i * c + j) * P;                          \
                int32_t *DPN_RESTRICT ap = arg + (i * c + j) * P;                          \
                for (int64_t p = 0; p < P; p++) {                                          \
                    const int32_t e = corner[p];       /* indexed loads: GCC gathers */    \
                    const REAL a0 = (plane[e] - m) * a, a1 = (plane[e + 1] - m) * a;       \
                    const REAL b0 = (plane[e + w32] - m) * a;                              \
                    const REAL b1 = (plane[e + w32 + 1] - m) * a;                          \
                    const int32_t ta = a1 > a0 ? 1 : 0, tb = b1 > b0 ? 3 : 2;              \
                    const REAL top = a1 > a0 ? a1 : a0, bot = b1 > b0 ? b1 : b0;           \
                    const int u = bot > top;                                               \
                    const REAL best = u ? bot : top, z = best * g + b;                     \
                    pp[p] = best;                                                          \
                    yp[p] = z <= 0 ? (REAL)0 : z;                                          \
                    ap[p] = u ? tb : ta;                                                   \
                }                                                                          \
                continue;                                                                  \
            }                                                                              \
            for (int64_t r = 0; r < ph; r++) {                                             \
                REAL *DPN_RESTRICT yp = y + (i * c + j) * P + r * pw;                      \
                REAL *DPN_RESTRICT pp = pooled + (i * c + j) * P + r * pw;                 \
                int32_t *DPN_RESTRICT ap = arg + (i * c + j) * P + r * pw;                 \
                const REAL *row = plane + (blocked ? r * pw : r * k * w);                  \
                for (int64_t q = 0; q < pw; q++) {                                         \
                    yp[q] = (row[q * step] - m) * a;                                       \
                    ap[q] = 0;                                                             \
                }                                                                          \
                for (int64_t o = 1; o < kk; o++) {                                         \
                    if (careful)                                                           \
                        dpn_pool_offset##SFX(row + off[o], m, a, yp, ap, pw, step, o, 1);  \
                    else if (step == 1)                                                    \
                        dpn_pool_offset##SFX(row + off[o], m, a, yp, ap, pw, 1, o, 0);     \
                    else if (step == 2)                                                    \
                        dpn_pool_offset##SFX(row + off[o], m, a, yp, ap, pw, 2, o, 0);     \
                    else                                                                   \
                        dpn_pool_offset##SFX(row + off[o], m, a, yp, ap, pw, step, o, 0);  \
                }                                                                          \
                for (int64_t q = 0; q < pw; q++) {                                         \
                    const REAL z = yp[q] * g + b;                                          \
                    pp[q] = yp[q];                                                         \
                    yp[q] = z <= 0 ? (REAL)0 : z;                                          \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    free(corner);                                                                          \
}                                                                                          \
                                                                                           \
/* gz = dy * (y > 0) (written to gz) and per channel sum(gz), sum(gz * pooled) * s: the   \
 * local sum(dz) and sum(dz * xhat), from the pooled arrays only (P per plane). */         \
DPN_EXPORT void dpn_bn_relu_pool_grad_sums##SFX(                                           \
    const REAL *DPN_RESTRICT dy, const REAL *DPN_RESTRICT y,                               \
    const REAL *DPN_RESTRICT pooled, const REAL *DPN_RESTRICT gamma, int64_t n, int64_t c, \
    int64_t P, REAL *DPN_RESTRICT gz, REAL *DPN_RESTRICT out_dz,                           \
    REAL *DPN_RESTRICT out_dz_xhat) {                                                      \
    for (int64_t j = 0; j < c; j++) {                                                      \
        double sdz = 0.0, sdx = 0.0;                                                       \
        for (int64_t i = 0; i < n; i++) {                                                  \
            const int64_t o = (i * c + j) * P;                                             \
            REAL lz[DPN_LANES] = {0}, lx[DPN_LANES] = {0};                                 \
            int64_t p = 0;                                                                 \
            for (; p + DPN_LANES <= P; p += DPN_LANES)                                     \
                for (int l = 0; l < DPN_LANES; l++) {                                      \
                    const int64_t e = o + p + l;                                           \
                    const REAL g = y[e] > 0 ? dy[e] : dy[e] * (REAL)0;                      \
                    gz[e] = g;                                                             \
                    lz[l] += g;                                                            \
                    lx[l] += g * pooled[e];                                                \
                }                                                                          \
            for (; p < P; p++) {                                                           \
                const int64_t e = o + p;                                                   \
                const REAL g = y[e] > 0 ? dy[e] : dy[e] * (REAL)0;                          \
                gz[e] = g;                                                                 \
                sdz += g;                                                                  \
                sdx += g * pooled[e];                                                      \
            }                                                                              \
            for (int l = 0; l < DPN_LANES; l++) { sdz += lz[l]; sdx += lx[l]; }            \
        }                                                                                  \
        out_dz[j] = (REAL)sdz;                                                             \
        out_dz_xhat[j] = (REAL)sdx * (gamma[j] < 0 ? (REAL)-1 : (REAL)1);                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* dx = gamma inv_std / total * (total * dz - sum dz - xhat * sum(dz xhat)), dz being gz   \
 * at each window's first maximum and 0 elsewhere: one write of the full-size dx. */       \
DPN_EXPORT void dpn_bn_relu_pool_input_grad##SFX(                                          \
    const REAL *DPN_RESTRICT gz, const int32_t *DPN_RESTRICT arg,                          \
    const REAL *DPN_RESTRICT x, const REAL *DPN_RESTRICT mean,                             \
    const REAL *DPN_RESTRICT inv_std, const REAL *DPN_RESTRICT gamma_inv_std, REAL total,  \
    const REAL *DPN_RESTRICT sum_dz, const REAL *DPN_RESTRICT sum_dz_xhat, int64_t n,      \
    int64_t c, int64_t h, int64_t w, int64_t k, int64_t blocked, REAL *DPN_RESTRICT dx) {  \
    const int64_t ph = h / k, pw = w / k, P = ph * pw, hw = h * w;                         \
    int64_t off[256];                                                                      \
    dpn_offsets(blocked, k, w, P, off);                                                    \
    for (int64_t i = 0; i < n; i++)                                                        \
        for (int64_t j = 0; j < c; j++) {                                                  \
            const REAL scale = gamma_inv_std[j] / total;                                   \
            const REAL m = mean[j], is = inv_std[j];                                       \
            const REAL cx = -scale * sum_dz_xhat[j], c0 = -scale * sum_dz[j];              \
            const REAL cg = scale * total;                                                 \
            const REAL *plane = x + (i * c + j) * hw;                                      \
            REAL *dp = dx + (i * c + j) * hw;                                              \
            for (int64_t e = 0; e < hw; e++)                                               \
                dp[e] = ((plane[e] - m) * is) * cx + c0;                                   \
            const REAL *gp = gz + (i * c + j) * P;                                         \
            const int32_t *ap = arg + (i * c + j) * P;                                     \
            for (int64_t r = 0; r < ph; r++) {                                             \
                REAL *row = dp + (blocked ? r * pw : r * k * w);                           \
                const int64_t step = blocked ? 1 : k;                                      \
                for (int64_t q = 0; q < pw; q++)                                           \
                    row[q * step + off[ap[r * pw + q]]] += gp[r * pw + q] * cg;            \
            }                                                                              \
        }                                                                                  \
}

DPN_DEFINE(float, _f32)
DPN_DEFINE(double, _f64)
