/* BatchNorm -> ReLU -> MaxPool2D over windows that tile the input (k x k, stride k), in few
 * passes over the full-size activations: the layers' training path on the CPU when the
 * compiled kernels are built (nn/fused_native.py says how it is called and what it measured).
 *
 * Every (sample, channel) plane of L values is contiguous, in one of two layouts:
 *   NCHW     the plane is H x W, window p = (oh, ow) holds (oh*k + a, ow*k + b);
 *   blocked  the plane is (k*k, P) window offset first (nn/conv_direct.py writes it): element
 *            t = a*k + b of window p is at t*P + p.
 * Within a window the elements are taken in the order t = a*k + b, and the first maximum wins
 * (as MaxPool2D's backward gives it the gradient). A NaN wins over every number and stays.
 *
 * The statistics are the two passes of the array code (the sum, then the squared deviations
 * about the global mean), each summed in double per plane and returned as double: the caller
 * reduces them over the ranks exactly as nn/norm.py does. */
#include "dpn.h"

#define DPN_POOL_BLOCK 16

#define DPN_GEN(T, SFX)                                                                     \
                                                                                            \
/* out[c] = sum of channel c over the batch: x (n, c, L). */                               \
DPN_EXPORT void dpn_channel_sums##SFX(const T *DPN_RESTRICT x, int64_t n, int64_t c,      \
                                      int64_t L, double *DPN_RESTRICT out)                \
{                                                                                           \
    for (int64_t ch = 0; ch < c; ch++) out[ch] = 0.0;                                       \
    for (int64_t s = 0; s < n; s++)                                                         \
        for (int64_t ch = 0; ch < c; ch++) {                                                \
            const T *p = x + (s * c + ch) * L;                                              \
            double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                       \
            int64_t i = 0;                                                                  \
            for (; i + 8 <= L; i += 8)                                                      \
                for (int j = 0; j < 8; j++) acc[j] += p[i + j];                             \
            for (; i < L; i++) acc[0] += p[i];                                              \
            out[ch] += ((acc[0] + acc[1]) + (acc[2] + acc[3]))                              \
                     + ((acc[4] + acc[5]) + (acc[6] + acc[7]));                             \
        }                                                                                   \
}                                                                                           \
                                                                                            \
/* out[c] = sum of (x - mean[c])^2 over channel c. */                                      \
DPN_EXPORT void dpn_channel_sqdev##SFX(const T *DPN_RESTRICT x, int64_t n, int64_t c,     \
                                       int64_t L, const T *DPN_RESTRICT mean,              \
                                       double *DPN_RESTRICT out)                           \
{                                                                                           \
    for (int64_t ch = 0; ch < c; ch++) out[ch] = 0.0;                                       \
    for (int64_t s = 0; s < n; s++)                                                         \
        for (int64_t ch = 0; ch < c; ch++) {                                                \
            const T *p = x + (s * c + ch) * L;                                              \
            const T m = mean[ch];                                                           \
            double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                       \
            int64_t i = 0;                                                                  \
            for (; i + 8 <= L; i += 8)                                                      \
                for (int j = 0; j < 8; j++) {                                               \
                    T d = p[i + j] - m;                                                     \
                    acc[j] += (double)(d * d);                                              \
                }                                                                           \
            for (; i < L; i++) { T d = p[i] - m; acc[0] += (double)(d * d); }              \
            out[ch] += ((acc[0] + acc[1]) + (acc[2] + acc[3]))                              \
                     + ((acc[4] + acc[5]) + (acc[6] + acc[7]));                             \
        }                                                                                   \
}                                                                                           \
                                                                                            \
/* Forward: z = scale[c] * x + shift[c] (the batch norm's output), y = max(0, max of z over \
 * the window); arg = the window element t of the first maximum, xsel = x there. y, arg,   \
 * xsel are (n, c, P) with P = oh * ow. */                                                  \
DPN_EXPORT void dpn_bn_relu_pool_forward##SFX(                                              \
    const T *DPN_RESTRICT x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,        \
    int blocked, const T *DPN_RESTRICT scale, const T *DPN_RESTRICT shift,                 \
    T *DPN_RESTRICT y, uint8_t *DPN_RESTRICT arg, T *DPN_RESTRICT xsel)                    \
{                                                                                           \
    const int64_t oh = h / k, ow = w / k, P = oh * ow, L = h * w;                           \
    for (int64_t pl = 0; pl < n * c; pl++) {                                                \
        const T g = scale[pl % c], b = shift[pl % c];                                       \
        const T *xp = x + pl * L;                                                           \
        T *yp = y + pl * P, *sp = xsel + pl * P;                                            \
        uint8_t *ap = arg + pl * P;                                                         \
        for (int64_t r = 0; r < oh; r++)                                                    \
            for (int64_t q0 = 0; q0 < ow; q0 += DPN_POOL_BLOCK) {                           \
                const int64_t nq = ow - q0 < DPN_POOL_BLOCK ? ow - q0 : DPN_POOL_BLOCK;     \
                /* a block of windows side by side, selects instead of branches (the first \
                 * maximum of random data is a coin toss a branch predictor loses) */       \
                T best[DPN_POOL_BLOCK], bv[DPN_POOL_BLOCK];                                  \
                int32_t ba[DPN_POOL_BLOCK];                                                 \
                for (int64_t t = 0; t < k * k; t++) {                                       \
                    const T *src = blocked ? xp + t * P + r * ow + q0                       \
                                           : xp + (r * k + t / k) * w + q0 * k + t % k;    \
                    const int64_t step = blocked ? 1 : k;                                   \
                    if (t == 0) {                                                           \
                        for (int64_t j = 0; j < nq; j++) {                                  \
                            T v = src[j * step];                                            \
                            best[j] = g * v + b; bv[j] = v; ba[j] = 0;                      \
                        }                                                                   \
                        continue;                                                           \
                    }                                                                       \
                    for (int64_t j = 0; j < nq; j++) {                                      \
                        T v = src[j * step], z = g * v + b, o = best[j];                    \
                        int take = (z > o) | ((z != z) & (o == o));                         \
                        best[j] = take ? z : o;                                             \
                        bv[j] = take ? v : bv[j];                                           \
                        ba[j] = take ? (int32_t)t : ba[j];                                  \
                    }                                                                       \
                }                                                                           \
                for (int64_t j = 0; j < nq; j++) {                                          \
                    T o = best[j];                                                          \
                    yp[r * ow + q0 + j] = o > 0 ? o : (o == o ? (T)0 : o);                  \
                    sp[r * ow + q0 + j] = bv[j];                                            \
                    ap[r * ow + q0 + j] = (uint8_t)ba[j];                                   \
                }                                                                           \
            }                                                                               \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* Backward sums per channel: dz = dy where y > 0 (else 0); out_dz = sum dz, out_dz_x =     \
 * sum dz * xsel (the caller turns it into sum dz * xhat). */                               \
DPN_EXPORT void dpn_bn_relu_pool_grad_sums##SFX(                                            \
    const T *DPN_RESTRICT dy, const T *DPN_RESTRICT y, const T *DPN_RESTRICT xsel,         \
    int64_t n, int64_t c, int64_t P, double *DPN_RESTRICT out_dz,                          \
    double *DPN_RESTRICT out_dz_x)                                                          \
{                                                                                           \
    for (int64_t ch = 0; ch < c; ch++) out_dz[ch] = out_dz_x[ch] = 0.0;                     \
    for (int64_t pl = 0; pl < n * c; pl++) {                                                \
        const T *d = dy + pl * P, *yy = y + pl * P, *xs = xsel + pl * P;                    \
        /* 8 lanes of T per plane (they vectorise; one chain would wait on each add's     \
         * latency), added up in double per plane */                                        \
        T s1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s2[8] = {0, 0, 0, 0, 0, 0, 0, 0};               \
        int64_t p = 0;                                                                      \
        for (; p + 8 <= P; p += 8)                                                          \
            for (int j = 0; j < 8; j++) {                                                   \
                T gz = yy[p + j] > 0 ? d[p + j] : (T)0;                                     \
                s1[j] += gz;                                                                \
                s2[j] += gz * xs[p + j];                                                    \
            }                                                                               \
        double t1 = 0.0, t2 = 0.0;                                                          \
        for (; p < P; p++) {                                                                \
            T gz = yy[p] > 0 ? d[p] : (T)0;                                                 \
            t1 += gz;                                                                       \
            t2 += (double)gz * xs[p];                                                       \
        }                                                                                   \
        for (int j = 0; j < 8; j++) { t1 += s1[j]; t2 += s2[j]; }                           \
        out_dz[pl % c] += t1;                                                               \
        out_dz_x[pl % c] += t2;                                                             \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* Input gradient: dx = a[c] + b[c] * x everywhere, plus g[c] * dz at each window's first  \
 * maximum (dz = dy where y > 0), in x's layout. */                                         \
DPN_EXPORT void dpn_bn_relu_pool_input_grad##SFX(                                           \
    const T *DPN_RESTRICT x, const T *DPN_RESTRICT dy, const T *DPN_RESTRICT y,            \
    const uint8_t *DPN_RESTRICT arg, int64_t n, int64_t c, int64_t h, int64_t w,           \
    int64_t k, int blocked, const T *DPN_RESTRICT a, const T *DPN_RESTRICT b,              \
    const T *DPN_RESTRICT g, T *DPN_RESTRICT dx)                                            \
{                                                                                           \
    const int64_t oh = h / k, ow = w / k, P = oh * ow, L = h * w;                           \
    for (int64_t pl = 0; pl < n * c; pl++) {                                                \
        const int64_t ch = pl % c;                                                          \
        const T aa = a[ch], bb = b[ch], gg = g[ch];                                         \
        const T *xp = x + pl * L;                                                           \
        T *dp = dx + pl * L;                                                                \
        for (int64_t i = 0; i < L; i++) dp[i] = aa + bb * xp[i];                            \
        const T *d = dy + pl * P, *yy = y + pl * P;                                         \
        const uint8_t *ap = arg + pl * P;                                                   \
        for (int64_t p = 0; p < P; p++) {     /* no branch on the ReLU: a coin toss */    \
            const int64_t t = ap[p];                                                        \
            const int64_t at = blocked ? t * P + p                                          \
                : ((p / ow) * k + t / k) * w + (p % ow) * k + t % k;                        \
            dp[at] += yy[p] > 0 ? gg * d[p] : (T)0;                                         \
        }                                                                                   \
    }                                                                                       \
}

DPN_GEN(float, _f32)
DPN_GEN(double, _f64)
