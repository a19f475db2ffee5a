/* Plain BatchNorm over the channels of NCHW (training), compiled: the normalised output in
 * one pass and the backward in two (nn/batchnorm_native.py calls them; the statistics come
 * from batchnorm_pool.c's channel sums). Nothing full-size is kept but the input: xhat is
 * recomputed from x, mean and inv_std where the backward needs it. */
#include "dpn.h"

#include <stdlib.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#define DPN_BN_LANES 8

#define DPN_DEFINE_BN(REAL, SFX)                                                             \
/* y = (x - mean) * inv_std * gamma + beta, then ReLU with ``relu``. With a ReLU linked, the \
 * backward takes the gradient at the ReLU output and y (dz = dy where y > 0, else dy * 0). */                                             \
DPN_EXPORT void dpn_bn_forward##SFX(const REAL *DPN_RESTRICT x, const REAL *DPN_RESTRICT mean, \
                                    const REAL *DPN_RESTRICT inv_std,                      \
                                    const REAL *DPN_RESTRICT gamma,                        \
                                    const REAL *DPN_RESTRICT beta, int64_t n, int64_t c,   \
                                    int64_t hw, int64_t relu, REAL *DPN_RESTRICT y) {      \
    for (int64_t i = 0; i < n; i++)                                                        \
        for (int64_t j = 0; j < c; j++) {                                                  \
            const REAL m = mean[j], is = inv_std[j], g = gamma[j], b = beta[j];            \
            const REAL *xp = x + (i * c + j) * hw;                                         \
            REAL *yp = y + (i * c + j) * hw;                                               \
            if (relu)                            /* max(z, 0), NaN kept */                 \
                for (int64_t e = 0; e < hw; e++) {                                         \
                    const REAL z = ((xp[e] - m) * is) * g + b;                             \
                    yp[e] = z <= 0 ? (REAL)0 : z;                                          \
                }                                                                          \
            else                                                                           \
                for (int64_t e = 0; e < hw; e++)                                           \
                    yp[e] = ((xp[e] - m) * is) * g + b;                                    \
        }                                                                                  \
}                                                                                          \
                                                                                           \
/* Per channel sum(dy) and sum(dy * xhat), plane by plane in memory order. */            \
static void dpn_bn_plane_sums##SFX(const REAL *DPN_RESTRICT dp, const REAL *DPN_RESTRICT xp, \
                                   const REAL *DPN_RESTRICT yp, int64_t hw, REAL m,        \
                                   REAL is, double *sd, double *sx) {                      \
    REAL ld[DPN_BN_LANES] = {0}, lx[DPN_BN_LANES] = {0};                                   \
    int64_t e = 0;                                                                         \
    if (yp != NULL)              /* dy * (y > 0), as NumPy: NaN and inf dy stay NaN */      \
        for (; e + DPN_BN_LANES <= hw; e += DPN_BN_LANES)                                  \
            for (int l = 0; l < DPN_BN_LANES; l++) {                                       \
                const REAL d = dp[e + l] * (REAL)(yp[e + l] > 0);                          \
                ld[l] += d;                                                                \
                lx[l] += d * ((xp[e + l] - m) * is);                                       \
            }                                                                              \
    else                                                                                   \
        for (; e + DPN_BN_LANES <= hw; e += DPN_BN_LANES)                                  \
            for (int l = 0; l < DPN_BN_LANES; l++) {                                       \
                const REAL d = dp[e + l];                                                  \
                ld[l] += d;                                                                \
                lx[l] += d * ((xp[e + l] - m) * is);                                       \
            }                                                                              \
    double a = 0.0, b = 0.0;                                                               \
    for (; e < hw; e++) {                                                                  \
        const REAL d = yp == NULL ? dp[e] : dp[e] * (REAL)(yp[e] > 0);                     \
        a += d;                                                                            \
        b += d * ((xp[e] - m) * is);                                                       \
    }                                                                                      \
    for (int l = 0; l < DPN_BN_LANES; l++) { a += ld[l]; b += lx[l]; }                     \
    *sd += a;                                                                              \
    *sx += b;                                                                              \
}                                                                                          \
                                                                                           \
DPN_EXPORT void dpn_bn_grad_sums##SFX(const REAL *DPN_RESTRICT dy, const REAL *DPN_RESTRICT x, \
                                      const REAL *DPN_RESTRICT y,                          \
                                      const REAL *DPN_RESTRICT mean,                       \
                                      const REAL *DPN_RESTRICT inv_std, int64_t n,         \
                                      int64_t c, int64_t hw, REAL *DPN_RESTRICT out_dy,    \
                                      REAL *DPN_RESTRICT out_dy_xhat) {                    \
    double *acc = calloc((size_t)(2 * c + 1), sizeof(double));                             \
    if (acc == NULL) return;             /* the caller sees NaN-filled outputs */          \
    for (int64_t i = 0; i < n; i++)                                                        \
        for (int64_t j = 0; j < c; j++)                                                    \
            dpn_bn_plane_sums##SFX(dy + (i * c + j) * hw, x + (i * c + j) * hw,            \
                                   y == NULL ? NULL : y + (i * c + j) * hw, hw,            \
                                   mean[j], inv_std[j], acc + j, acc + c + j);             \
    for (int64_t j = 0; j < c; j++) {                                                      \
        out_dy[j] = (REAL)acc[j];                                                          \
        out_dy_xhat[j] = (REAL)acc[c + j];                                                 \
    }                                                                                      \
    free(acc);                                                                             \
}                                                                                          \
                                                                                           \
/* dx = gamma inv_std / total * (total * dy - sum dy - xhat * sum(dy xhat)). */            \
DPN_EXPORT void dpn_bn_input_grad##SFX(const REAL *DPN_RESTRICT dy, const REAL *DPN_RESTRICT x, \
                                       const REAL *DPN_RESTRICT y,                         \
                                       const REAL *DPN_RESTRICT mean,                      \
                                       const REAL *DPN_RESTRICT inv_std,                   \
                                       const REAL *DPN_RESTRICT gamma_inv_std, REAL total, \
                                       const REAL *DPN_RESTRICT sum_dy,                    \
                                       const REAL *DPN_RESTRICT sum_dy_xhat, int64_t n,    \
                                       int64_t c, int64_t hw, REAL *DPN_RESTRICT dx) {     \
    for (int64_t i = 0; i < n; i++)                                                        \
        for (int64_t j = 0; j < c; j++) {                                                  \
            const REAL k = gamma_inv_std[j] / total, m = mean[j], is = inv_std[j];         \
            const REAL sd = sum_dy[j], sx = sum_dy_xhat[j];                                \
            const REAL *xp = x + (i * c + j) * hw, *dp = dy + (i * c + j) * hw;            \
            REAL *op = dx + (i * c + j) * hw;                                              \
            const REAL *yp = y == NULL ? NULL : y + (i * c + j) * hw;                      \
            if (yp != NULL)                                                                \
                for (int64_t e = 0; e < hw; e++) {                                         \
                    const REAL d = dp[e] * (REAL)(yp[e] > 0);                              \
                    op[e] = ((d * total - sd) - ((xp[e] - m) * is) * sx) * k;              \
                }                                                                          \
            else                                                                           \
                for (int64_t e = 0; e < hw; e++)                                           \
                    op[e] = ((dp[e] * total - sd) - ((xp[e] - m) * is) * sx) * k;          \
        }                                                                                  \
}

DPN_DEFINE_BN(float, _f32)
DPN_DEFINE_BN(double, _f64)
