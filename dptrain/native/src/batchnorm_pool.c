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

/* Keep a * b + c rounded twice, as NumPy computes it (the outputs match it bit for bit). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define DPN_INDEX(blocked, k, w, p_per_row, P, t, p)                                      \
    ((blocked) ? (int64_t)(t) * (P) + (p)                                                  \
               : ((int64_t)((p) / (p_per_row)) * (k) + (t) / (k)) * (w)                     \
                     + (int64_t)((p) % (p_per_row)) * (k) + (t) % (k))

#define DPN_DEFINE(REAL, SFX)                                                                \
/* Per channel sum of x (accumulated in double). */                                       \
DPN_EXPORT void dpn_bn_channel_sum##SFX(const REAL *DPN_RESTRICT x, int64_t n, int64_t c,   \
                                        int64_t hw, REAL *DPN_RESTRICT out) {              \
    for (int64_t j = 0; j < c; j++) {                                                      \
        double acc = 0.0;                                                                  \
        for (int64_t i = 0; i < n; i++) {                                                  \
            const REAL *plane = x + (i * c + j) * hw;                                      \
            REAL part = 0;                                                                 \
            double sub = 0.0;                                                              \
            for (int64_t e = 0; e < hw; e++) {                                             \
                part += plane[e];                                                          \
                if ((e & 255) == 255) { sub += part; part = 0; }                           \
            }                                                                              \
            acc += sub + part;                                                             \
        }                                                                                  \
        out[j] = (REAL)acc;                                                                \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* Per channel sum of (x - mean)^2 (two passes over x: exact for float32, as norm.py). */   \
DPN_EXPORT void dpn_bn_channel_sqdev##SFX(const REAL *DPN_RESTRICT x,                      \
                                          const REAL *DPN_RESTRICT mean, int64_t n,        \
                                          int64_t c, int64_t hw, REAL *DPN_RESTRICT out) { \
    for (int64_t j = 0; j < c; j++) {                                                      \
        const REAL m = mean[j];                                                            \
        double acc = 0.0;                                                                  \
        for (int64_t i = 0; i < n; i++) {                                                  \
            const REAL *plane = x + (i * c + j) * hw;                                      \
            REAL part = 0;                                                                 \
            double sub = 0.0;                                                              \
            for (int64_t e = 0; e < hw; e++) {                                             \
                const REAL d = plane[e] - m;                                               \
                part += d * d;                                                             \
                if ((e & 255) == 255) { sub += part; part = 0; }                           \
            }                                                                              \
            acc += sub + part;                                                             \
        }                                                                                  \
        out[j] = (REAL)acc;                                                                \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* Pooled output y (N, C, P) and each window's first-maximum offset arg (N, C, P). */      \
DPN_EXPORT void dpn_bn_relu_pool_forward##SFX(                                             \
    const REAL *DPN_RESTRICT x, const REAL *DPN_RESTRICT mean,                             \
    const REAL *DPN_RESTRICT inv_std, const REAL *DPN_RESTRICT gamma,                      \
    const REAL *DPN_RESTRICT beta, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,  \
    int64_t blocked, REAL *DPN_RESTRICT y, uint8_t *DPN_RESTRICT arg) {                    \
    const int64_t pw = w / k, P = (h / k) * pw, hw = h * w, kk = k * k;                    \
    for (int64_t i = 0; i < n; i++)                                                        \
        for (int64_t j = 0; j < c; j++) {                                                  \
            const REAL *plane = x + (i * c + j) * hw;                                      \
            REAL *yp = y + (i * c + j) * P;                                                \
            uint8_t *ap = arg + (i * c + j) * P;                                           \
            const REAL s = gamma[j] < 0 ? (REAL)-1 : (REAL)1;                              \
            const REAL m = mean[j], a = inv_std[j] * s, g = gamma[j] * s, b = beta[j];     \
            if (k == 2 && !blocked) {                                                      \
                for (int64_t p = 0; p < P; p++) {                                          \
                    const REAL *r0 = plane + (p / pw) * 2 * w + (p % pw) * 2;              \
                    const REAL v0 = (r0[0] - m) * a, v1 = (r0[1] - m) * a;                 \
                    const REAL v2 = (r0[w] - m) * a, v3 = (r0[w + 1] - m) * a;             \
                    REAL best = v0;                                                        \
                    int t = 0;                                                             \
                    if (v1 > best || v1 != v1) { best = v1; t = 1; }                       \
                    if (best == best && (v2 > best || v2 != v2)) { best = v2; t = 2; }     \
                    if (best == best && (v3 > best || v3 != v3)) { best = v3; t = 3; }     \
                    REAL z = best * g + b;                                                 \
                    yp[p] = z > 0 ? z : (z != z ? z : 0);                                  \
                    ap[p] = (uint8_t)t;                                                    \
                }                                                                          \
                continue;                                                                  \
            }                                                                              \
            for (int64_t p = 0; p < P; p++) {                                              \
                REAL best = (plane[DPN_INDEX(blocked, k, w, pw, P, 0, p)] - m) * a;        \
                int t = 0;                                                                 \
                for (int64_t q = 1; q < kk && best == best; q++) {                         \
                    const REAL v = (plane[DPN_INDEX(blocked, k, w, pw, P, q, p)] - m) * a; \
                    if (v > best || v != v) { best = v; t = (int)q; }                      \
                }                                                                          \
                REAL z = best * g + b;                                                     \
                yp[p] = z > 0 ? z : (z != z ? z : 0);                                      \
                ap[p] = (uint8_t)t;                                                        \
            }                                                                              \
        }                                                                                  \
}                                                                                          \
                                                                                           \
/* gz = dy * (y > 0) (written to gz) and per channel sum(gz), sum(gz * xs_max) * s: the    \
 * local sum(dz) and sum(dz * xhat); xs_max is recovered from y as (y - beta) / (gamma s)  \
 * would lose bits, so it is recomputed from x at the saved offset. */                     \
DPN_EXPORT void dpn_bn_relu_pool_grad_sums##SFX(                                           \
    const REAL *DPN_RESTRICT dy, const REAL *DPN_RESTRICT y,                               \
    const uint8_t *DPN_RESTRICT arg, const REAL *DPN_RESTRICT x,                           \
    const REAL *DPN_RESTRICT mean, const REAL *DPN_RESTRICT inv_std,                       \
    const REAL *DPN_RESTRICT gamma, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, \
    int64_t blocked, REAL *DPN_RESTRICT gz, REAL *DPN_RESTRICT out_dz,                     \
    REAL *DPN_RESTRICT out_dz_xhat) {                                                      \
    const int64_t pw = w / k, P = (h / k) * pw, hw = h * w;                                \
    for (int64_t j = 0; j < c; j++) {                                                      \
        const REAL s = gamma[j] < 0 ? (REAL)-1 : (REAL)1;                                  \
        const REAL m = mean[j], a = inv_std[j] * s;                                        \
        double sdz = 0.0, sdx = 0.0;                                                       \
        for (int64_t i = 0; i < n; i++) {                                                  \
            const int64_t o = (i * c + j) * P;                                             \
            const REAL *plane = x + (i * c + j) * hw;                                      \
            REAL pz = 0, px = 0;                                                           \
            for (int64_t p = 0; p < P; p++) {                                              \
                const REAL g = y[o + p] > 0 ? dy[o + p] : dy[o + p] * (REAL)0;              \
                const REAL xs = (plane[DPN_INDEX(blocked, k, w, pw, P, arg[o + p], p)]     \
                                 - m) * a;                                                 \
                gz[o + p] = g;                                                             \
                pz += g;                                                                   \
                px += g * xs;                                                              \
            }                                                                              \
            sdz += pz;                                                                     \
            sdx += px;                                                                     \
        }                                                                                  \
        out_dz[j] = (REAL)sdz;                                                             \
        out_dz_xhat[j] = (REAL)sdx * s;                                                    \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* dx = gamma inv_std / total * (total * dz - sum dz - xhat * sum(dz xhat)), dz being gz   \
 * at each window's first maximum and 0 elsewhere: one write of the full-size dx. */       \
DPN_EXPORT void dpn_bn_relu_pool_input_grad##SFX(                                          \
    const REAL *DPN_RESTRICT gz, const uint8_t *DPN_RESTRICT arg,                          \
    const REAL *DPN_RESTRICT x, const REAL *DPN_RESTRICT mean,                             \
    const REAL *DPN_RESTRICT inv_std, const REAL *DPN_RESTRICT gamma_inv_std, REAL total,  \
    const REAL *DPN_RESTRICT sum_dz, const REAL *DPN_RESTRICT sum_dz_xhat, int64_t n,      \
    int64_t c, int64_t h, int64_t w, int64_t k, int64_t blocked, REAL *DPN_RESTRICT dx) {  \
    const int64_t pw = w / k, P = (h / k) * pw, hw = h * w;                                \
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
            const uint8_t *ap = arg + (i * c + j) * P;                                     \
            for (int64_t p = 0; p < P; p++)                                                \
                dp[DPN_INDEX(blocked, k, w, pw, P, ap[p], p)] += gp[p] * cg;               \
        }                                                                                  \
}

DPN_DEFINE(float, _f32)
DPN_DEFINE(double, _f64)
