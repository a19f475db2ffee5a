"""The optimiser's update rules as CUDA kernels (their Python side: optim/fused.py).

They sit with the layers' kernels so that one module holds, compiles and host-builds every
kernel of dptrain (compile.py); this file imports nothing, so the optimiser can use it
without importing the layers.
"""

SOURCE = r"""
/* the gradient with weight decay, as Optimizer.update adds it (only when set) */
#define DECAYED(gi, i) T gi = g[i]; if (wd != (T)0) gi = gi + wd * w[i];

extern "C" __global__ void sgd(T* __restrict__ w, const T* __restrict__ g, long long n,
        T wd, T lr,
        const T* __restrict__ dyn)
{
    lr = lr * dyn[0];
    GRID_LOOP(i, n) { DECAYED(gi, i) w[i] = w[i] - lr * gi; }
}

/* heavy ball, or Nesterov's look-ahead when nesterov != 0 */
extern "C" __global__ void momentum(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ v, long long n, T wd, T lr, T mu, int nesterov,
        const T* __restrict__ dyn)
{
    lr = lr * dyn[0];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T vi = v[i] * mu;
        vi = vi - lr * gi;
        v[i] = vi;
        w[i] = w[i] + (nesterov ? mu * vi - lr * gi : vi);
    }
}

extern "C" __global__ void adagrad(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ G, long long n, T wd, T lr, T eps,
        const T* __restrict__ dyn)
{
    lr = lr * dyn[0];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T Gi = G[i] + gi * gi;
        G[i] = Gi;
        w[i] = w[i] - lr * gi / sqrt(Gi + eps);
    }
}

extern "C" __global__ void rmsprop(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ v, long long n, T wd, T lr, T gamma, T one_minus_gamma, T eps,
        const T* __restrict__ dyn)
{
    lr = lr * dyn[0];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T vi = v[i] * gamma;
        vi = vi + one_minus_gamma * gi * gi;
        v[i] = vi;
        w[i] = w[i] - lr * gi / sqrt(vi + eps);
    }
}

extern "C" __global__ void adadelta(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ v, T* __restrict__ s, long long n, T wd, T lr, T rho,
        T one_minus_rho, T eps,
        const T* __restrict__ dyn)
{
    lr = lr * dyn[0];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T vi = v[i] * rho;
        vi = vi + one_minus_rho * gi * gi;
        v[i] = vi;
        T si = s[i];
        T dw = -sqrt(si + eps) / sqrt(vi + eps) * gi;
        si = si * rho;
        s[i] = si + one_minus_rho * dw * dw;
        w[i] = w[i] + lr * dw;
    }
}

/* c1 = 1 - beta1^t, c2 = 1 - beta2^t: the bias corrections, from the host */
extern "C" __global__ void adam(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ m, T* __restrict__ v, long long n, T wd, T lr, T beta1,
        T one_minus_beta1, T beta2, T one_minus_beta2, T c1, T c2, T eps,
        const T* __restrict__ dyn)
{
    lr = lr * dyn[0];
    c1 = c1 * dyn[1];
    c2 = c2 * dyn[2];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T mi = m[i] * beta1;
        mi = mi + one_minus_beta1 * gi;
        m[i] = mi;
        T vi = v[i] * beta2;
        vi = vi + one_minus_beta2 * gi * gi;
        v[i] = vi;
        w[i] = w[i] - lr * (mi / c1) / sqrt(vi / c2 + eps);
    }
}

/* step = lr / (1 - beta1^t), from the host; the max propagates NaN as numpy.maximum does */
extern "C" __global__ void adamax(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ m, T* __restrict__ u, long long n, T wd, T beta1,
        T one_minus_beta1, T beta2, T step, T eps,
        const T* __restrict__ dyn)
{
    step = step * dyn[0];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T mi = m[i] * beta1;
        mi = mi + one_minus_beta1 * gi;
        m[i] = mi;
        T a = beta2 * u[i], b = fabs(gi);
        T ui = (a >= b || a != a) ? a : b;
        u[i] = ui;
        w[i] = w[i] - step * mi / (ui + eps);
    }
}
"""

# p: array pointer, q: 64-bit integer, t: a scalar of the element type. Every kernel takes
# (w, g, the rule's state slots in Optimizer.slot_names order, n, weight decay, its scalars,
# dyn): dyn, a device array, scales the scalars that change from step to step -- dyn[0] the
# learning rate (AdaMax: its lr / (1 - beta1^t)), dyn[1] and dyn[2] Adam's bias corrections.
# All ones for scalars given on the host; the values themselves, with host scalars of 1, for
# a replayed CUDA graph, whose launches keep the scalars of their capture.
DYNAMIC_SCALARS = 3
SIGNATURES = {
    "sgd": "ppqttp",
    "momentum": "pppqtttip",
    "adagrad": "pppqtttp",
    "rmsprop": "pppqtttttp",
    "adadelta": "ppppqtttttp",
    "adam": "ppppqtttttttttp",
    "adamax": "ppppqttttttp",
}
