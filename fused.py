"""Compiled loops for what cost the models a dozen small torch operations per time step.

A step of a hand-built GRU is a matrix product and then about ten element-wise
operations on small tensors, each paying torch's dispatch and, in training, an autograd
node and its backward. Here the element-wise part of a step, forwards and backwards, is
one C function (compiled with gcc on first use, then cached), the products stay torch's,
and the whole sequence is one autograd node whose weight gradient is one product over
all time steps. In float32 and float64 the C loop calls torch's own BLAS product (MKL's
sgemm_/dgemm_ in torch's library), so a sequence runs in one call with no Python per step;
bfloat16 products stay a Python loop of torch's. The letter counts' look-ups
(`model.LetterCounts`) are C functions too.
`model` falls back to plain torch operations, the same maths, where no compiler is at
hand; the tests check the two agree and `gradcheck` the backward.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = r"""
#include <stdint.h>
#include <math.h>

/* exp in float with a 6-term polynomial (Cephes' expf): branch-free, so gcc vectorises the loops below. */
static inline float exp_f(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round to nearest: 1.5 * 2^23 */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t bits; float value; } scale = { .bits = ((int32_t)n + 127) << 23 };  /* 2^n */
    return p * scale.value;
}
static inline double exp_d(double x) { return exp(x); }

/* Threads for a large step: torch's count, set before each call (a Python thread's own OpenMP default
   may differ from what torch was told, as in the server). */
static int threads = 1;
void set_threads(int64_t n) { threads = (int)n; }

/* Row kernels: one name's H state units. restrict lets gcc vectorise them. */
#define ROW (rows ? rows[b] : b)
#define CELLS(T, EXP)                                                                                        \
static inline T sigmoid_##T(T x) { return (T)1 / ((T)1 + EXP(-x)); }                                        \
static inline T tanh_##T(T x) { return (T)2 / ((T)1 + EXP(-2 * x)) - (T)1; }                                \
                                                                                                             \
static void gru_row_##T(int64_t H, const T *restrict x, const T *restrict g, const T *restrict c,           \
                        const T *restrict h, T *restrict out, T *restrict saved) {                           \
    for (int64_t j = 0; j < H; j++) {                                                                        \
        T r = sigmoid_##T(x[j] + g[j] + c[j]), z = sigmoid_##T(x[H + j] + g[H + j] + c[H + j]);              \
        T hn = g[2 * H + j] + c[2 * H + j], n = tanh_##T(x[2 * H + j] + r * hn);                             \
        out[j] = n + z * (h[j] - n);                                                                         \
        saved[j] = r; saved[H + j] = z; saved[2 * H + j] = n; saved[3 * H + j] = hn;                         \
    }                                                                                                        \
}                                                                                                            \
                                                                                                             \
static void gru_row_inference_##T(int64_t H, const T *restrict x, const T *restrict g, const T *restrict c, \
                                  const T *restrict h, T *restrict out) {                                    \
    for (int64_t j = 0; j < H; j++) {                                                                        \
        T r = sigmoid_##T(x[j] + g[j] + c[j]), z = sigmoid_##T(x[H + j] + g[H + j] + c[H + j]);              \
        T n = tanh_##T(x[2 * H + j] + r * (g[2 * H + j] + c[2 * H + j]));                                   \
        out[j] = n + z * (h[j] - n);                                                                         \
    }                                                                                                        \
}                                                                                                            \
                                                                                                             \
static void gru_row_backward_##T(int64_t H, const T *restrict dh, const T *restrict saved,                  \
                                 const T *restrict h, T *restrict dx, T *restrict dhg, T *restrict back) {   \
    for (int64_t j = 0; j < H; j++) {                                                                        \
        T g = dh[j], r = saved[j], z = saved[H + j], n = saved[2 * H + j], hn = saved[3 * H + j];            \
        T dn = g * (1 - z) * (1 - n * n);                                                                    \
        T dr = dn * hn * r * (1 - r);                                                                        \
        T dz = g * (h[j] - n) * z * (1 - z);                                                                 \
        dx[j] = dr; dx[H + j] = dz; dx[2 * H + j] = dn;                                                      \
        dhg[j] = dr; dhg[H + j] = dz; dhg[2 * H + j] = dn * r;                                               \
        back[j] = g * z;                                                                                     \
    }                                                                                                        \
}                                                                                                            \
                                                                                                             \
static void rnn_row_##T(int64_t H, const T *restrict x, const T *restrict g, const T *restrict c,           \
                        T *restrict out) {                                                                   \
    for (int64_t j = 0; j < H; j++) out[j] = tanh_##T(x[j] + g[j] + c[j]);                                   \
}                                                                                                            \
                                                                                                             \
static void rnn_row_backward_##T(int64_t H, const T *restrict dh, const T *restrict out, T *restrict dx,    \
                                 T *restrict dhg, T *restrict back) {                                        \
    for (int64_t j = 0; j < H; j++) { dx[j] = dhg[j] = dh[j] * (1 - out[j] * out[j]); back[j] = 0; }         \
}                                                                                                            \
                                                                                                             \
static void copy_##T(int64_t n, const T *restrict from, T *restrict to) {                                   \
    for (int64_t j = 0; j < n; j++) to[j] = from[j];                                                         \
}                                                                                                            \
                                                                                                             \
static void add_##T(int64_t n, const T *restrict from, T *restrict to) {                                    \
    for (int64_t j = 0; j < n; j++) to[j] += from[j];                                                        \
}                                                                                                            \
                                                                                                             \
/* One step of B rows: x and hg are the input's and the state's projections (for a GRU its r, z, n parts),  \
   bias the state projection's bias, h the state; the new state goes to out. With rows, row b's x is row    \
   rows[b] of a table (input projections looked up as they are read), else x's b-th row. With saved not     \
   NULL, what backward needs is kept there (a GRU's r, z, n and hg's n part). A row whose live byte is 0    \
   keeps its state. Each pointer steps by its own row stride. */                                             \
void gru_forward_##T(int64_t B, int64_t H, const T *x, int64_t sx, const int64_t *rows, const T *hg,       \
                     int64_t shg, const T *bias,                                                             \
                     const T *h,                                                                             \
                     int64_t sh, const uint8_t *live, T *out, int64_t so, T *saved, int64_t ss) {           \
    _Pragma("omp parallel for num_threads(threads) if (B * H >= 8192) schedule(static)")                    \
    for (int64_t b = 0; b < B; b++) {                                                                        \
        if (live && !live[b]) copy_##T(H, h + b * sh, out + b * so);                                         \
        else if (saved) gru_row_##T(H, x + ROW * sx, hg + b * shg, bias, h + b * sh, out + b * so, saved + b * ss); \
        else gru_row_inference_##T(H, x + ROW * sx, hg + b * shg, bias, h + b * sh, out + b * so);           \
    }                                                                                                        \
}                                                                                                            \
                                                                                                             \
void rnn_forward_##T(int64_t B, int64_t H, const T *x, int64_t sx, const int64_t *rows, const T *hg,       \
                     int64_t shg, const T *bias,                                                             \
                     const T *h,                                                                             \
                     int64_t sh, const uint8_t *live, T *out, int64_t so, T *saved, int64_t ss) {           \
    (void)saved; (void)ss;                                                                                   \
    _Pragma("omp parallel for num_threads(threads) if (B * H >= 8192) schedule(static)")                    \
    for (int64_t b = 0; b < B; b++) {                                                                        \
        if (live && !live[b]) copy_##T(H, h + b * sh, out + b * so);                                         \
        else rnn_row_##T(H, x + ROW * sx, hg + b * shg, bias, out + b * so);                                 \
    }                                                                                                        \
}                                                                                                            \
                                                                                                             \
/* Their backward: from dh (B, H), the gradient of the new state, the gradients of x and hg (dx, dhg; for   \
   the tanh cell they are equal) and of the old state except through hg: back                               \
   (B, H), plus `also` where given, the gradient the old state gets from outside. saved is what forward      \
   kept (for the tanh cell, the new state). */                                                               \
void gru_backward_##T(int64_t B, int64_t H, const T *dh, const T *saved, int64_t ss, const T *h, int64_t sh, \
                      const uint8_t *live, T *dx, int64_t sdx, T *dhg, int64_t sdhg, T *back, const T *also, \
                      int64_t sa) {                                                                          \
    _Pragma("omp parallel for num_threads(threads) if (B * H >= 8192) schedule(static)")                    \
    for (int64_t b = 0; b < B; b++) {                                                                        \
        if (live && !live[b]) {                                                                              \
            for (int64_t j = 0; j < 3 * H; j++) { dx[b * sdx + j] = 0; dhg[b * sdhg + j] = 0; }              \
            copy_##T(H, dh + b * H, back + b * H);                                                           \
        } else {                                                                                             \
            gru_row_backward_##T(H, dh + b * H, saved + b * ss, h + b * sh, dx + b * sdx, dhg + b * sdhg,    \
                                 back + b * H);                                                              \
        }                                                                                                    \
        if (also) add_##T(H, also + b * sa, back + b * H);                                                   \
    }                                                                                                        \
}                                                                                                            \
                                                                                                             \
void rnn_backward_##T(int64_t B, int64_t H, const T *dh, const T *saved, int64_t ss, const T *h, int64_t sh, \
                      const uint8_t *live, T *dx, int64_t sdx, T *dhg, int64_t sdhg, T *back, const T *also, \
                      int64_t sa) {                                                                          \
    (void)h; (void)sh;                                                                                       \
    _Pragma("omp parallel for num_threads(threads) if (B * H >= 8192) schedule(static)")                    \
    for (int64_t b = 0; b < B; b++) {                                                                        \
        if (live && !live[b]) {                                                                              \
            for (int64_t j = 0; j < H; j++) { dx[b * sdx + j] = 0; dhg[b * sdhg + j] = 0; }                  \
            copy_##T(H, dh + b * H, back + b * H);                                                           \
        } else {                                                                                             \
            rnn_row_backward_##T(H, dh + b * H, saved + b * ss, dx + b * sdx, dhg + b * sdhg, back + b * H); \
        }                                                                                                    \
        if (also) add_##T(H, also + b * sa, back + b * H);                                                   \
    }                                                                                                        \
}

CELLS(float, exp_f)
CELLS(double, exp_d)

/* BLAS's matrix product in Fortran's form, the one torch's own CPU products call (MKL, in torch's CPU build):
   found in torch's library when this one is loaded (`set_gemm`), so that a whole sequence is one call. */
typedef void (*gemm_float)(const char *, const char *, const int *, const int *, const int *, const float *,
                           const float *, const int *, const float *, const int *, const float *, float *,
                           const int *);
typedef void (*gemm_double)(const char *, const char *, const int *, const int *, const int *, const double *,
                            const double *, const int *, const double *, const int *, const double *, double *,
                            const int *);
static gemm_float gemm_p_float;
static gemm_double gemm_p_double;
void set_gemm(void *single, void *twice) { gemm_p_float = (gemm_float)single; gemm_p_double = (gemm_double)twice; }

/* A whole sequence, as fused.run's loop of torch products and *_forward calls: each step's state projection
   h W^T (W row-major (G, H), G = 3H for a GRU, H for the tanh cell) into hg, then the step. x steps by xt
   per time step, rows (steps, B) as in *_forward; states (steps, B, H), saved (steps, B, 4H) or NULL. */
#define SEQUENCES(T)                                                                                         \
void sequence_forward_##T(int64_t gru, int64_t steps, int64_t B, int64_t H, const T *x, int64_t sx,         \
                          int64_t xt, const int64_t *rows, const T *W, const T *bias, const T *h0,           \
                          const uint8_t *live, int64_t shortest, T *states, T *saved, T *hg) {               \
    int m = gru ? 3 * H : H, n = B, k = H;                                                                   \
    T one = 1, zero = 0;                                                                                     \
    const T *h = h0;                                                                                         \
    for (int64_t t = 0; t < steps; t++) {                                                                    \
        gemm_p_##T("T", "N", &m, &n, &k, &one, W, &k, h, &k, &zero, hg, &m);                                \
        (gru ? gru_forward_##T : rnn_forward_##T)(B, H, x + t * xt, sx, rows ? rows + t * B : 0, hg, m,     \
            bias, h, H, t < shortest ? 0 : live + t * B, states + t * B * H, H,                              \
            saved ? saved + t * B * 4 * H : 0, 4 * H);                                                       \
        h = states + t * B * H;                                                                              \
    }                                                                                                        \
}                                                                                                            \
                                                                                                             \
/* Its backward, as Sequence.backward's loop: dh (B, H) holds the last state's gradient, then the first     \
   state's. kept is saved (a GRU) or states (the tanh cell), ks its row length; dinputs (B, steps, G),       \
   dhg (steps, B, G), back (B, H) scratch, grad_states (steps, B, H). */                                      \
void sequence_backward_##T(int64_t gru, int64_t steps, int64_t B, int64_t H, T *dh, const T *kept,          \
                           int64_t ks, const T *states, const T *h0, const uint8_t *live, int64_t shortest,  \
                           T *dinputs, T *dhg, T *back, const T *grad_states, const T *W) {                  \
    int m = H, n = B, k = gru ? 3 * H : H;                                                                   \
    T one = 1;                                                                                               \
    for (int64_t t = steps - 1; t >= 0; t--) {                                                               \
        (gru ? gru_backward_##T : rnn_backward_##T)(B, H, dh, kept + t * B * ks, ks,                         \
            t ? states + (t - 1) * B * H : h0, H, t < shortest ? 0 : live + t * B, dinputs + t * k,          \
            steps * k, dhg + t * B * k, k, back, t ? grad_states + (t - 1) * B * H : 0, H);                  \
        copy_##T(B * H, back, dh);  /* dh = back + dhg[t] W */                                               \
        gemm_p_##T("N", "N", &m, &n, &k, &one, W, &m, dhg + t * B * k, &k, &one, dh, &m);                   \
    }                                                                                                        \
}

SEQUENCES(float)
SEQUENCES(double)


/* The first of n sorted keys not below wanted (n if none is). */
static int64_t lower_bound(const int64_t *keys, int64_t n, int64_t wanted) {
    int64_t low = 0, high = n;
    while (low < high) {
        int64_t middle = low + (high - low) / 2;
        if (keys[middle] < wanted) low = middle + 1; else high = middle;
    }
    return low;
}

/* Where wanted sits among n sorted keys, or -1. */
static int64_t find(const int64_t *keys, int64_t n, int64_t wanted) {
    int64_t at = lower_bound(keys, n, wanted);
    return at < n && keys[at] == wanted ? at : -1;
}

/* model.ngram_ids: every name's hashed 1- to 4-letter pieces, start and end marked, in the order torch
   writes them (all 1-letter pieces, then 2-letter, ...), `buckets` for a piece past the name's end. */
void ngram_ids(int64_t B, int64_t W, const int64_t *letters, const int64_t *lengths, int64_t buckets,
               int64_t start, int64_t end, int64_t longest, int64_t *out) {
    int64_t G = 0;
    for (int64_t n = 1; n <= longest; n++) G += W + 3 - n;
    for (int64_t b = 0; b < B; b++) {
        int64_t codes[W + 2], length = lengths[b], *row = out + b * G;
        codes[0] = start;
        for (int64_t i = 0; i < W; i++) codes[i + 1] = i < length ? letters[b * W + i] + 1 : 0;
        codes[W + 1] = 0;
        codes[length + 1] = end;
        for (int64_t n = 1; n <= longest; n++) {
            for (int64_t i = 0; i + n <= W + 2; i++) {
                int64_t value = 0, scale = 1;
                for (int64_t k = 0; k < n; k++, scale *= 64) value += codes[i + k] * scale;
                *row++ = i + n <= length + 2 ? (value * 2654435761LL) % 4294967296LL * buckets >> 32 : buckets;
            }
        }
    }
}

/* model.LetterCounts.forward: each row's next-token probabilities (B, N) after its context (B, W: the last
   tokens, -1 before the start), in its language, from the counts' sorted (history, next, language) keys and
   their weights. A history's keys lie side by side, so one search finds where they start. */
void counts_next(int64_t B, int64_t W, int64_t order, int64_t N, int64_t L, int64_t sos, float discount,
                 const int64_t *language, const int64_t *contexts, const int64_t *keys, int64_t n_keys,
                 const float *weights, float *out) {
    _Pragma("omp parallel for num_threads(threads) if (B >= 256) schedule(static)")
    for (int64_t b = 0; b < B; b++) {
        float *probs = out + b * N, counts[N];
        for (int64_t t = 0; t < N; t++) probs[t] = 1.0f / (float)(N - 1);
        probs[sos] = 0;
        const int64_t *recent = contexts + b * W;
        for (int64_t length = 0; length < order; length++) {
            int64_t key = length, present = 1;
            for (int64_t i = W - length; i < W; i++) {
                present &= recent[i] >= 0;
                key = key * 64 + recent[i] + 1;
            }
            if (!present) continue;
            int64_t end = (key * 64 + N + 1) * L;
            float total = 0, taken = 0;
            for (int64_t t = 0; t < N; t++) counts[t] = 0;
            for (int64_t k = lower_bound(keys, n_keys, (key * 64 + 1) * L); k < n_keys && keys[k] < end; k++) {
                if (keys[k] % L != language[b]) continue;
                counts[keys[k] / L - key * 64 - 1] = weights[k];
            }
            for (int64_t t = 0; t < N; t++) {
                total += counts[t];
                taken += discount * (counts[t] < 1 ? counts[t] : 1);
            }
            if (total <= 0) continue;
            for (int64_t t = 0; t < N; t++)
                probs[t] = (counts[t] - discount * (counts[t] < 1 ? counts[t] : 1) + taken * probs[t])
                           / (total > 1e-12f ? total : 1e-12f);
        }
    }
}

/* model.LetterCounts.log_likelihoods, the same sums in the same order: each name's log-likelihood in each
   of L languages from teacher-forcing tokens and targets (B, T; a target < 0 is past the end). next_keys
   and history_keys are the counts' sorted language-free keys; beside them, per key, L counts of what
   followed, and L totals then L discounted masses. Written to out (B, L). */
void counts_log_likelihoods(int64_t B, int64_t T, int64_t L, int64_t order, int64_t n_tokens, float discount,
                            const int64_t *tokens, const int64_t *targets, const int64_t *next_keys,
                            int64_t n_next, const float *next_counts, const int64_t *history_keys,
                            int64_t n_history, const float *history_values, float *out) {
    _Pragma("omp parallel for num_threads(threads) if (B * T >= 4096) schedule(static)")
    for (int64_t b = 0; b < B; b++) {
        float probs[L];
        float *row = out + b * L;
        for (int64_t l = 0; l < L; l++) row[l] = 0;
        for (int64_t t = 0; t < T; t++) {
            int64_t target = targets[b * T + t];
            if (target < 0) continue;
            for (int64_t l = 0; l < L; l++) probs[l] = 1.0f / (float)(n_tokens - 1);
            for (int64_t length = 0; length < order && t - length + 1 >= 0; length++) {
                int64_t key = length;
                for (int64_t i = t - length + 1; i <= t; i++) key = key * 64 + tokens[b * T + i] + 1;
                int64_t h = find(history_keys, n_history, key);
                if (h < 0) continue;
                int64_t c = find(next_keys, n_next, key * 64 + target + 1);
                const float *total = history_values + h * 2 * L, *mass = total + L;
                for (int64_t l = 0; l < L; l++) {
                    if (total[l] <= 0) continue;
                    float count = c < 0 ? 0 : next_counts[c * L + l];
                    float taken = discount * (count < 1 ? count : 1);
                    probs[l] = (count - taken + mass[l] * probs[l]) / (total[l] > 1e-12f ? total[l] : 1e-12f);
                }
            }
            for (int64_t l = 0; l < L; l++) row[l] += logf(probs[l]);
        }
    }
}
"""

FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-std=c99"]
# OpenMP shares a large step's rows among torch's own threads (the same libgomp, already loaded by torch); a
# thread of our own would fight torch's, which spin for a while after each product.
OPENMP = ["-fopenmp"]


def _machine() -> str:
    """What -march=native compiles for: the CPU's model and features, not its changing clock speed."""
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return platform.machine() + platform.processor()
    return platform.machine() + "".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))


def _build() -> ctypes.CDLL | None:
    """The compiled kernels, built once per source and machine into a cache; None where no C compiler works."""
    compiler = shutil.which(os.environ.get("CC", "gcc"))
    if compiler is None or os.environ.get("SURNAMES_NO_C"):
        return None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "surnames"
    for folder in (cache, Path(tempfile.gettempdir()) / f"surnames-{os.getuid()}"):
        for flags in (FLAGS + OPENMP, FLAGS):
            tag = hashlib.sha256("\0".join([SOURCE, *flags, compiler, _machine()]).encode()).hexdigest()[:16]
            library = folder / f"cells-{tag}.so"
            try:
                if not library.exists():
                    folder.mkdir(parents=True, exist_ok=True)
                    with tempfile.TemporaryDirectory(dir=folder) as work:  # built apart, renamed into place whole
                        (Path(work) / "cells.c").write_text(SOURCE)
                        subprocess.run([compiler, *flags, "cells.c", "-o", "cells.so", "-lm"], cwd=work,
                                       check=True, capture_output=True, timeout=120)
                        os.replace(Path(work) / "cells.so", library)
                return _declare(ctypes.CDLL(str(library)))
            except (OSError, subprocess.SubprocessError):
                continue
    return None


def _declare(library: ctypes.CDLL) -> ctypes.CDLL:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for kind in ("gru", "rnn"):
        for dtype in ("float", "double"):
            getattr(library, f"{kind}_forward_{dtype}").argtypes = [i64, i64, ptr, i64, ptr, ptr, i64, ptr, ptr,
                                                                     i64, ptr, ptr, i64, ptr, i64]
            getattr(library, f"{kind}_backward_{dtype}").argtypes = [i64, i64, ptr, ptr, i64, ptr, i64, ptr, ptr,
                                                                      i64, ptr, i64, ptr, ptr, i64]
    for dtype in ("float", "double"):
        getattr(library, f"sequence_forward_{dtype}").argtypes = [i64, i64, i64, i64, ptr, i64, i64, ptr, ptr, ptr,
                                                                  ptr, ptr, i64, ptr, ptr, ptr]
        getattr(library, f"sequence_backward_{dtype}").argtypes = [i64, i64, i64, i64, ptr, ptr, i64, ptr, ptr, ptr,
                                                                   i64, ptr, ptr, ptr, ptr, ptr]
    library.set_gemm.argtypes = [ptr, ptr]
    library.set_threads.argtypes = [i64]
    library.ngram_ids.argtypes = [i64, i64, ptr, ptr, i64, i64, i64, i64, ptr]
    library.counts_next.argtypes = [i64, i64, i64, i64, i64, i64, ctypes.c_float, ptr, ptr, ptr, i64, ptr, ptr]
    library.counts_log_likelihoods.argtypes = [i64, i64, i64, i64, i64, ctypes.c_float, ptr, ptr, ptr, i64, ptr,
                                               ptr, i64, ptr, ptr]
    return library


def _torch_gemm(library: ctypes.CDLL | None) -> bool:
    """Hand the C loops the matrix product torch's CPU build calls itself (MKL's sgemm_ and dgemm_, which its
    library exports), so that a float sequence runs in one call: a step's Python bookkeeping cost the
    classifier's training a tenth of its time. False where there is no such library or symbol."""
    if library is None:
        return False
    try:
        blas = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        library.set_gemm(ctypes.cast(blas.sgemm_, ctypes.c_void_p), ctypes.cast(blas.dgemm_, ctypes.c_void_p))
    except (OSError, AttributeError):
        return False
    return True


LIBRARY = _build()
GEMM = _torch_gemm(LIBRARY)
DTYPES = {torch.float32: "float", torch.float64: "double"}


def available(*tensors: torch.Tensor) -> bool:
    """Whether the compiled loop can take these tensors: it was built, for their dtype (all one), on the CPU."""
    return (LIBRARY is not None and tensors[0].dtype in DTYPES
            and all(t.dtype == tensors[0].dtype and t.device.type == "cpu" for t in tensors))


def ngram_ids(letters: torch.Tensor, lengths: torch.Tensor, buckets: int, start: int, end: int) -> torch.Tensor:
    """`model.ngram_ids` in one C call: its dozens of torch operations cost a classifier step 3%."""
    letters, lengths = letters.contiguous(), lengths.contiguous()
    batch, width = letters.shape
    longest = min(4, width + 2)
    out = torch.empty(batch, sum(width + 3 - n for n in range(1, longest + 1)), dtype=torch.long)
    LIBRARY.ngram_ids(batch, width, letters.data_ptr(), lengths.data_ptr(), buckets, start, end, longest,
                      out.data_ptr())
    return out


def next_token_probabilities(language: torch.Tensor, contexts: torch.Tensor, keys: torch.Tensor,
                             weights: torch.Tensor, n_tokens: int, n_languages: int, order: int, start: int,
                             discount: float) -> torch.Tensor:
    """`model.LetterCounts.forward` in one C call, for rows language (B,) and contexts (B, order - 1)."""
    language, contexts = language.contiguous(), contexts.contiguous()
    out = torch.empty(len(language), n_tokens)
    LIBRARY.set_threads(torch.get_num_threads())
    LIBRARY.counts_next(len(language), contexts.shape[1], order, n_tokens, n_languages, start, discount,
                        language.data_ptr(), contexts.data_ptr(), keys.data_ptr(), len(keys),
                        weights.contiguous().data_ptr(), out.data_ptr())
    return out


def log_likelihoods(tokens: torch.Tensor, targets: torch.Tensor, next_rows: tuple[torch.Tensor, torch.Tensor],
                    history_rows: tuple[torch.Tensor, torch.Tensor], n_tokens: int, order: int,
                    discount: float) -> torch.Tensor:
    """`model.LetterCounts.log_likelihoods` in one C call: a binary search per history length and position, where
    torch needed a dozen operations over the whole batch for each."""
    tokens, targets = tokens.contiguous(), targets.contiguous()
    (next_keys, next_counts), (history_keys, history_values) = next_rows, history_rows
    languages = next_counts.shape[-1]
    out = torch.empty(len(tokens), languages)
    LIBRARY.set_threads(torch.get_num_threads())
    LIBRARY.counts_log_likelihoods(len(tokens), tokens.shape[1], languages, order, n_tokens, discount,
                                   tokens.data_ptr(), targets.data_ptr(), next_keys.data_ptr(), len(next_keys),
                                   next_counts.contiguous().data_ptr(), history_keys.data_ptr(), len(history_keys),
                                   history_values.contiguous().data_ptr(), out.data_ptr())
    return out


def _step(tensor: torch.Tensor, t: int, dim: int = 0) -> int:
    """The address of time step t along dim, for the C functions: no tensor view made per step."""
    return tensor.data_ptr() + t * tensor.stride(dim) * tensor.element_size()


def product_dtype() -> torch.dtype | None:
    """bfloat16 inside a CPU bfloat16 autocast region (`train.matmuls`), else None: the products' precision."""
    if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16:
        return torch.bfloat16
    return None


def _one_call(low: torch.dtype | None) -> bool:
    """Whether a sequence runs as one C call: float products, with torch's BLAS handed to C (`_torch_gemm`)."""
    return low is None and GEMM


def _product(a: torch.Tensor, b: torch.Tensor, low: torch.dtype | None) -> torch.Tensor:
    return a @ b if low is None else (a.to(low) @ b.to(low)).to(a.dtype)


class Sequence(torch.autograd.Function):
    """A cell run over a padded batch: (B, T, W*H) input projections to the (B, T, H) state after each step."""

    @staticmethod
    def forward(ctx, kind: str, inputs: torch.Tensor, h0: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                live: torch.Tensor | None, shortest: int) -> torch.Tensor:
        low, h0 = product_dtype(), h0.contiguous()
        weight_low = weight.contiguous() if low is None else weight.detach().to(low)  # cast once, for both passes
        with torch.autocast("cpu", enabled=False):
            states, saved = run(kind, inputs, h0, weight_low, bias, live, shortest, low, keep=True)
        ctx.kind, ctx.shortest, ctx.low = kind, shortest, low
        ctx.save_for_backward(h0, weight_low, states, saved, live)
        return states.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_states: torch.Tensor):
        h0, weight, states, saved, live = ctx.saved_tensors  # states (T, B, H), saved (T, B, 4H): time first
        # weight is in the products' precision (ctx.low), as forward cast it
        kind, shortest, low = ctx.kind, ctx.shortest, ctx.low
        grad_states = grad_states.transpose(0, 1).contiguous()
        steps, batch, hidden = states.shape
        width = weight.shape[0]
        LIBRARY.set_threads(torch.get_num_threads())
        dinputs = states.new_empty(batch, steps, width)  # batch first, as the inputs came: no copy downstream
        dhg = states.new_empty(steps, batch, width)  # time first, for one weight-gradient product
        dh = grad_states[-1].clone()
        back = states.new_empty(batch, hidden)
        kept = saved if kind == "gru" else states
        if _one_call(low):  # the loop below in one C call
            getattr(LIBRARY, f"sequence_backward_{DTYPES[states.dtype]}")(
                kind == "gru", steps, batch, hidden, dh.data_ptr(), kept.data_ptr(), kept.shape[2], states.data_ptr(),
                h0.data_ptr(), None if live is None else live.data_ptr(), shortest, dinputs.data_ptr(),
                dhg.data_ptr(), back.data_ptr(), grad_states.data_ptr(), weight.data_ptr())
        else:
            backward = getattr(LIBRARY, f"{kind}_backward_{DTYPES[states.dtype]}")
            for t in range(steps - 1, -1, -1):
                backward(batch, hidden, dh.data_ptr(), _step(kept, t), kept.shape[2],
                         _step(states, t - 1) if t else h0.data_ptr(), hidden,
                         None if t < shortest else _step(live, t), _step(dinputs, t, 1), steps * width,
                         _step(dhg, t), width, back.data_ptr(), _step(grad_states, t - 1) if t else None, hidden)
                dh = torch.addmm(back, dhg[t], weight) if low is None else back + dhg[t].to(low) @ weight  # float32
        previous = torch.cat((h0[None], states[:-1])).reshape(-1, hidden)
        flat = dhg.reshape(-1, width)
        return None, dinputs, dh, _product(flat.t(), previous, low), flat.sum(0), None, None


def run(kind: str, inputs: torch.Tensor, h0: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
        live: torch.Tensor | None, shortest: int, low: torch.dtype | None = None, keep: bool = False,
        rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The states (T, B, H), time first so that each step's are contiguous, and with keep what backward needs.

    inputs (B, T, W*H), h0 (B, H); live (T, B) bytes, 0 where a name has ended, read from step `shortest` on.
    With rows (B, T) indices, inputs is instead a table (V, W*H) of input projections, and each step reads
    the rows it needs from it: for inference, where no (B, T, W*H) tensor of them need ever be written.
    """
    inputs, h0, weight = inputs.contiguous(), h0.contiguous(), weight.contiguous()
    batch, hidden = h0.shape
    if rows is None:
        _, steps, width = inputs.shape
        index, x_stride, x_step = None, steps * width, width
    else:
        steps, width = rows.shape[1], inputs.shape[1]
        index, x_stride, x_step = rows.t().contiguous(), width, 0
        if index.numel() and not 0 <= int(index.min()) <= int(index.max()) < len(inputs):
            raise IndexError("a row index outside the table")  # the C loop would read outside it
    LIBRARY.set_threads(torch.get_num_threads())
    states = inputs.new_empty(steps, batch, hidden)
    saved = inputs.new_empty(steps, batch, 4 * hidden) if keep and kind == "gru" else None
    hg = inputs.new_empty(batch, width)
    bias = bias.contiguous()
    if _one_call(low):  # the loop below in one C call
        getattr(LIBRARY, f"sequence_forward_{DTYPES[inputs.dtype]}")(
            kind == "gru", steps, batch, hidden, inputs.data_ptr(), x_stride, x_step,
            None if index is None else index.data_ptr(), weight.data_ptr(), bias.data_ptr(),
            h0.data_ptr(), None if live is None else live.data_ptr(), shortest, states.data_ptr(),
            None if saved is None else saved.data_ptr(), hg.data_ptr())
        return states, saved
    forward = getattr(LIBRARY, f"{kind}_forward_{DTYPES[inputs.dtype]}")
    transposed = weight.t() if low is None else weight.to(low).t()  # a no-op cast where the caller cast it
    h = h0
    for t in range(steps):  # the C step adds the bias: addmm would first copy it into every row
        if low is None:
            torch.mm(h, transposed, out=hg)
        else:
            hg = (h.to(low) @ transposed).float()
        forward(batch, hidden, inputs.data_ptr() + t * x_step * inputs.element_size(), x_stride,
                None if index is None else _step(index, t), hg.data_ptr(), width, bias.data_ptr(),
                h.data_ptr(), hidden, None if t < shortest else _step(live, t), _step(states, t), hidden,
                None if saved is None else _step(saved, t), 4 * hidden)
        h = states[t]
    return states, saved
