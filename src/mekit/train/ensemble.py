"""Train all folds of a cross-validation at once, as one batched ensemble.

`run_loso_ensemble` trains the F fold models of a LOSO run (or any folds) simultaneously and
returns the same `LosoResult` as `mekit.train.loso.run_loso`, so reports work unchanged. The F
models' parameters are stacked with a leading fold dimension and every optimisation step
advances all folds together, but each fold only ever sees its own data:

- fold f trains on its own `train_idx`, in its own mini-batches, shuffled and flipped by its
  own `torch.Generator` seeded `config.seed + f.index` with the same draws as `fit` (so the
  batch order and flips are exactly those of the plain loop), from the same initial weights
  (`create_model` under `torch.manual_seed(config.seed + f.index)`);
- BatchNorm statistics are computed per fold over that fold's real batch only (padding slots
  of shorter batches are never read);
- the loss (cross-entropy or focal, class weights counted on the fold's own training labels)
  and Adam (step counts, moments) are per fold.

Dropout masks come from a per-fold counter-based stream (splitmix64 keys, murmur3 mixing)
seeded from `config.seed + f.index`: results are deterministic for a given seed, identical
whatever the thread count, and the same in both backends, but not draw for draw those of
`fit` (torch's global RNG); with dropout 0 (`model_kwargs={"dropout": 0.0}`) the ensemble
reproduces the plain loop up to float rounding.

Backends: "native" is a fused C kernel, compiled on first use with the system C compiler
($CC, else gcc/cc; -O3 -march=native, AVX2/FMA through GCC vector extensions) and cached in
$MEKIT_ENSEMBLE_KERNEL_DIR or ~/.cache/mekit/kernels. Each thread trains whole folds: a
forward pass fusing convolution, ReLU, batch statistics and window selection that keeps only
the ReLU output; the pooled head, loss and a closed-form BatchNorm/max-pool backward; the
weight gradient in a second pass; Adam. "torch" is the same step in plain PyTorch (grouped
convolution over folds, autograd): slower, used where no compiler works (or with
MEKIT_ENSEMBLE_NATIVE=0). "auto" picks native when it builds.

Supported: model "ststnet" (default stream widths; any dropout), selection "fixed", loss "ce"
or "focal", class_weights "none"/"balanced", focal_alpha, weight_decay, augment_flip. Anything
else raises `MekitError` pointing to the plain loop (`run_loso` / `run_folds`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mekit.errors import MekitError
from mekit.models import create_model
from mekit.train.augment import hflip
from mekit.train.loop import TrainConfig, _batches, predict_proba
from mekit.train.loso import LosoResult, _assemble, _FoldOutput, _validate, _validate_folds
from mekit.train.losses import balanced_class_weights
from mekit.train.splits import Fold, loso_folds

log = logging.getLogger(__name__)

ENSEMBLE_MODELS: tuple[str, ...] = ("ststnet",)
BACKENDS: tuple[str, ...] = ("auto", "native", "torch")
Backend = Literal["auto", "native", "torch"]

# STSTNet geometry the kernel is written for: 3 x 28 x 28 input, padding 2 (-> 32 x 32),
# 16 conv channels (streams 3 + 5 + 8) on 30 x 30, 10 x 10 after max-pool, 5 x 5 after avg-pool.
_CHANNELS, _SIZE, _PAD, _WIDTH = 3, 28, 2, 16
_NFEAT = _WIDTH * 5 * 5
_OFF_B, _OFF_G, _OFF_BE, _OFF_L = 432, 448, 464, 480
_KERNEL_ENV = "MEKIT_ENSEMBLE_KERNEL_DIR"

_KERNEL_SOURCE = r"""
/* mekit ensemble kernel: one training step of F independent STSTNet models at once.
 *
 * Model per fold (mekit/models/ststnet.py): conv 3x3 (3 -> 16 channels: the three streams'
 * 3 + 5 + 8 convolutions side by side; padding 2, 28 -> 30 px) -> ReLU -> BatchNorm (batch
 * statistics) -> MaxPool(3, stride 3, pad 1) (30 -> 10) -> dropout -> AvgPool(2) (10 -> 5)
 * -> flatten (16 x 5 x 5) -> linear (K classes).
 *
 * Parameters of one fold, one float vector of P = 480 + 401 K rounded up to a multiple of 16
 * (64-byte aligned rows; the tail is unused):
 *   [0, 432)    conv weight, tap-major: w[t][c], t = ci*9 + kh*3 + kw, c = output channel
 *   [432, 448)  conv bias;  [448, 464) BN weight (gamma);  [464, 480) BN bias (beta)
 *   [480, 480 + 400 K) linear weight, [k][cell][c] with cell = y*5 + x of the 5 x 5 map
 *   (torch's weight[k, c*25 + cell]);  then K linear biases.
 *
 * Each fold is processed by one thread from start to end, so its floats do not depend on
 * the number of threads. Activations are channels-last: 16 floats (two 8-float vectors) per
 * pixel. BatchNorm sits between ReLU and the max-pool and is a per-channel affine map, so the
 * pooled BN output is BN of each window's max (gamma >= 0) or min (gamma < 0) ReLU output;
 * the backward pass is in closed form:
 *   dconv = [z > 0] (b + c z) + (scatter of [z_sel > 0] a dy to each window's pixel)
 * with per-channel constants a, b, c from the batch statistics and dy the gradient at the
 * pooled BN output. Only z (the ReLU output) is kept between the passes.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

#define CO 16
#define TAPS 27
#define IN 32
#define INSZ (3 * IN * IN)
#define OUT 30
#define NPOS (OUT * OUT)
#define POOL 10
#define NWIN (POOL * POOL)
#define AVG 5
#define NCELL (AVG * AVG)
#define NFEAT (CO * NCELL)
#define PB 5
#define OFF_B 432
#define OFF_G 448
#define OFF_BE 464
#define OFF_L 480
#define ABI_VERSION 4
#define INLINE static inline __attribute__((always_inline))

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));

INLINE v8 ld(const float *p) { v8 r; memcpy(&r, p, sizeof r); return r; }
INLINE v8i ldi(const int32_t *p) { v8i r; memcpy(&r, p, sizeof r); return r; }
INLINE void st(float *p, v8 v) { memcpy(p, &v, sizeof v); }
INLINE void sti(int32_t *p, v8i v) { memcpy(p, &v, sizeof v); }
INLINE v8 bc(float x) { return (v8){x, x, x, x, x, x, x, x}; }
INLINE v8i bci(int32_t x) { return (v8i){x, x, x, x, x, x, x, x}; }
INLINE v8u bcu(uint32_t x) { return (v8u){x, x, x, x, x, x, x, x}; }
#ifdef __AVX__
/* m is all-ones or all-zeros per lane: one blend instruction */
INLINE v8 sel(v8i m, v8 a, v8 b) { return (v8)_mm256_blendv_ps((__m256)b, (__m256)a, (__m256)m); }
INLINE v8i seli(v8i m, v8i a, v8i b) { return (v8i)sel(m, (v8)a, (v8)b); }
INLINE v8 relu(v8 a) { return (v8)_mm256_max_ps((__m256)a, _mm256_setzero_ps()); }
#else
INLINE v8 sel(v8i m, v8 a, v8 b) { return (v8)(((v8i)a & m) | ((v8i)b & ~m)); }
INLINE v8i seli(v8i m, v8i a, v8i b) { return (a & m) | (b & ~m); }
INLINE v8 relu(v8 a) { const v8 zero = {0}; return sel(a > zero, a, zero); }
#endif
INLINE float hsum(v8 v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}
/* A store the cache need not keep: z is read back only after the whole batch. */
INLINE void st_stream(float *p, v8 v) {
#ifdef __AVX__
    _mm256_stream_ps(p, (__m256)v);
#else
    st(p, v);
#endif
}

typedef struct {
    int32_t F, K, N, Bmax, P, nthreads;
    int32_t loss_kind; /* 0 cross-entropy, 1 focal */
    int32_t train;     /* 1: Adam step and running stats; 0: gradients to grad_out only */
    float focal_gamma, dropout_p, lr, beta1, beta2, adam_eps, weight_decay, bn_eps, bn_momentum;
    int32_t pad_;
    const float *xp;        /* [N][2][3][32][32] padded inputs, [.][1] mirrored */
    const int32_t *labels;  /* [N] */
    const int32_t *idx;     /* [F][Bmax] sample of each batch slot */
    const uint8_t *flip;    /* [F][Bmax] */
    const int32_t *bsz;     /* [F] batch size of each fold this step; 0 skips the fold */
    float *params, *adam_m, *adam_v; /* [F][P] */
    int64_t *adam_step;     /* [F] */
    float *running;         /* [F][32]: running mean, running var */
    const float *class_w;   /* [F][K] CE weights / focal alpha */
    uint64_t *rng;          /* [F] dropout stream state */
    double *loss_out;       /* [F] */
    float *grad_out;        /* [F][P] when train == 0 */
    float *scratch;         /* [nthreads][scratch_floats], 32-byte aligned */
    int64_t scratch_floats;
} EnsArgs;

int ens_abi_version(void) { return ABI_VERSION; }
int ens_args_size(void) { return (int)sizeof(EnsArgs); }

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

/* Scratch floats one thread needs for batches of up to bmax samples and k classes. */
int64_t ens_scratch_floats(int32_t bmax, int32_t k) {
    int64_t p = round16(OFF_L + (int64_t)k * NFEAT + k);
    return round16((int64_t)bmax * NPOS * CO) + 3 * round16((int64_t)bmax * NWIN * CO)
           + round16((int64_t)bmax * NFEAT) + 2 * round16((int64_t)bmax * k) + round16(p);
}

INLINE uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Dropout scales of one sample, d[w][c] in {0, scale}: a 64-bit key per sample from the
 * fold's splitmix64 stream, then 800 words h_i = fmix32(i * 0x9E3779B9 + key_lo) ^ key_hi;
 * word 8w + l gives channel l of window w (low 16 bits) and channel 8 + l (high 16 bits),
 * kept when below thr. */
static void dropout_scales(uint64_t *state, uint32_t thr, float scale, float *d) {
    const uint64_t key = splitmix(state);
    const v8u lo = bcu((uint32_t)key), hi = bcu((uint32_t)(key >> 32));
    const v8u lane = {0, 1, 2, 3, 4, 5, 6, 7};
    const v8u t = bcu(thr), mask16 = bcu(0xFFFFu);
    const v8 s = bc(scale), zero = {0};
    for (int w = 0; w < NWIN; w++) {
        v8u h = (bcu(8u * (uint32_t)w) + lane) * 0x9E3779B9u + lo;
        h ^= h >> 16;
        h *= 0x85EBCA6Bu;
        h ^= h >> 13;
        h *= 0xC2B2AE35u;
        h ^= h >> 16;
        h ^= hi;
        st(d + w * CO, sel((v8i)((h & mask16) < t), s, zero));
        st(d + w * CO + 8, sel((v8i)((h >> 16) < t), s, zero));
    }
}

/* One output row i of relu(conv + bias), taps kh in [KH0, KH1] (the others read padding). */
INLINE void conv_row(const float *x, const float *w, v8 b0, v8 b1, int i, const int KH0,
                     const int KH1, float *zrow, float *lrow, v8 *s, v8 *q) {
    for (int j0 = 0; j0 < OUT; j0 += PB) {
        v8 a[PB][2];
#pragma GCC unroll 8
        for (int p = 0; p < PB; p++) { a[p][0] = b0; a[p][1] = b1; }
#pragma GCC unroll 3
        for (int ci = 0; ci < 3; ci++) {
#pragma GCC unroll 3
            for (int kh = KH0; kh <= KH1; kh++) {
                const float *row = x + ci * IN * IN + (i + kh) * IN + j0;
                const float *wt = w + (ci * 9 + kh * 3) * CO;
#pragma GCC unroll 3
                for (int kw = 0; kw < 3; kw++) {
                    const v8 w0 = ld(wt + kw * CO), w1 = ld(wt + kw * CO + 8);
#pragma GCC unroll 8
                    for (int p = 0; p < PB; p++) {
                        const v8 xv = bc(row[p + kw]);
                        a[p][0] += w0 * xv;
                        a[p][1] += w1 * xv;
                    }
                }
            }
        }
#pragma GCC unroll 8
        for (int p = 0; p < PB; p++) {
            const v8 u0 = relu(a[p][0]), u1 = relu(a[p][1]);
            s[0] += u0; s[1] += u1; q[0] += u0 * u0; q[1] += u1 * u1;
            st_stream(zrow + (j0 + p) * CO, u0);
            st_stream(zrow + (j0 + p) * CO + 8, u1);
            st(lrow + (j0 + p) * CO, u0);
            st(lrow + (j0 + p) * CO + 8, u1);
        }
    }
}

/* For window row r: per window and channel the first pixel (row-major) with the largest
 * sgn * z, its z and its offset pixel * 16 + channel. rows[k] holds output row i0 + k. */
INLINE void pool_row(const float *const *rows, int i0, int nrows, int r, v8 g0, v8 g1,
                     float *zsel, int32_t *arg) {
    const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int q = 0; q < POOL; q++) {
        const int j0 = q ? 3 * q - 1 : 0, j1 = 3 * q + 1;
        v8 m0 = g0 * ld(rows[0] + j0 * CO), m1 = g1 * ld(rows[0] + j0 * CO + 8);
        v8i a0 = bci(i0 * OUT + j0), a1 = a0;
        for (int k = 0; k < nrows; k++) {
            for (int j = (k == 0 ? j0 + 1 : j0); j <= j1; j++) {
                const v8 v0 = g0 * ld(rows[k] + j * CO), v1 = g1 * ld(rows[k] + j * CO + 8);
                const v8i c0 = v0 > m0, c1 = v1 > m1;
                const v8i pix = bci((i0 + k) * OUT + j);
                m0 = sel(c0, v0, m0); m1 = sel(c1, v1, m1);
                a0 = seli(c0, pix, a0); a1 = seli(c1, pix, a1);
            }
        }
        const int w = r * POOL + q;
        st(zsel + w * CO, g0 * m0); st(zsel + w * CO + 8, g1 * m1);
        sti(arg + w * CO, a0 * CO + lane); sti(arg + w * CO + 8, a1 * CO + lane + 8);
    }
}

/* z[900][16] = relu(conv(x) + bias) (streamed out); batch-statistic sums; window selection. */
static void conv_forward(const float *x, const float *w, const float *bias, const float *sgn,
                         float *z, float *zsel, int32_t *arg, float *sum, float *sq) {
    float lb[3][OUT * CO] __attribute__((aligned(32)));
    const v8 b0 = ld(bias), b1 = ld(bias + 8), g0 = ld(sgn), g1 = ld(sgn + 8);
    v8 s[2] = {{0}, {0}}, q[2] = {{0}, {0}};
    for (int i = 0; i < OUT; i++) {
        float *zr = z + i * OUT * CO, *lr = lb[i % 3];
        if (i == 0) conv_row(x, w, b0, b1, i, 2, 2, zr, lr, s, q);
        else if (i == 1) conv_row(x, w, b0, b1, i, 1, 2, zr, lr, s, q);
        else if (i == OUT - 2) conv_row(x, w, b0, b1, i, 0, 1, zr, lr, s, q);
        else if (i == OUT - 1) conv_row(x, w, b0, b1, i, 0, 0, zr, lr, s, q);
        else conv_row(x, w, b0, b1, i, 0, 2, zr, lr, s, q);
        if (i == 1) {
            const float *rows[3] = {lb[0], lb[1], lb[1]};
            pool_row(rows, 0, 2, 0, g0, g1, zsel, arg);
        } else if (i % 3 == 1) {
            const float *rows[3] = {lb[2], lb[0], lb[1]};
            pool_row(rows, i - 2, 3, (i - 1) / 3, g0, g1, zsel, arg);
        }
    }
    for (int c = 0; c < 8; c++) {
        sum[c] += s[0][c]; sum[c + 8] += s[1][c];
        sq[c] += q[0][c]; sq[c + 8] += q[1][c];
    }
}

/* acc[t] += dc[j] x_t(j) for the taps t = (row r, kw) of pixel j; with EDGE (j constant)
 * the taps reading padding columns (padded column < 2 or > 29, where x is 0) are skipped. */
INLINE void dw_px(const float *dc, const int j, const float *r, v8 (*acc)[2], const int EDGE) {
    const v8 d0 = ld(dc + j * CO), d1 = ld(dc + j * CO + 8);
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; kw++) {
        if (EDGE && (j + kw < 2 || j + kw > OUT - 1)) continue;
        const v8 xv = bc(r[j + kw]);
        acc[kw][0] += d0 * xv;
        acc[kw][1] += d1 * xv;
    }
}

INLINE void dw_px2(const float *dc, const int j, const float *r0, const float *r1,
                   v8 (*acc)[2], const int EDGE) {
    const v8 d0 = ld(dc + j * CO), d1 = ld(dc + j * CO + 8);
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; kw++) {
        if (EDGE && (j + kw < 2 || j + kw > OUT - 1)) continue;
        const v8 xv = bc(r0[j + kw]);
        acc[kw][0] += d0 * xv;
        acc[kw][1] += d1 * xv;
    }
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; kw++) {
        if (EDGE && (j + kw < 2 || j + kw > OUT - 1)) continue;
        const v8 xv = bc(r1[j + kw]);
        acc[3 + kw][0] += d0 * xv;
        acc[3 + kw][1] += d1 * xv;
    }
}

/* gw[t][c] += sum_j dc[j][c] x_t(i, j) for the 3 taps (ci, kh, 0..2). */
INLINE void dw_one(const float *x, const float *dc, int i, int ci, int kh, float *gw) {
    const float *r0 = x + ci * IN * IN + (i + kh) * IN;
    float *g = gw + (ci * 9 + kh * 3) * CO;
    v8 acc[3][2];
#pragma GCC unroll 3
    for (int t = 0; t < 3; t++) {
        acc[t][0] = ld(g + t * CO);
        acc[t][1] = ld(g + t * CO + 8);
    }
    dw_px(dc, 0, r0, acc, 1);
    dw_px(dc, 1, r0, acc, 1);
    for (int j = 2; j < OUT - 2; j++) dw_px(dc, j, r0, acc, 0);
    dw_px(dc, OUT - 2, r0, acc, 1);
    dw_px(dc, OUT - 1, r0, acc, 1);
#pragma GCC unroll 3
    for (int t = 0; t < 3; t++) {
        st(g + t * CO, acc[t][0]);
        st(g + t * CO + 8, acc[t][1]);
    }
}

/* The 27 taps of an interior row: 4 blocks of two (ci, kh) rows (6 taps, 12 accumulators)
 * and the last (ci, kh) alone. */
INLINE void dw_row(const float *x, const float *dc, int i, float *gw) {
    for (int pr = 0; pr < 8; pr += 2) {
        const float *r0 = x + (pr / 3) * IN * IN + (i + pr % 3) * IN;
        const float *r1 = x + ((pr + 1) / 3) * IN * IN + (i + (pr + 1) % 3) * IN;
        float *g = gw + pr * 3 * CO;
        v8 acc[6][2];
#pragma GCC unroll 6
        for (int t = 0; t < 6; t++) {
            acc[t][0] = ld(g + t * CO);
            acc[t][1] = ld(g + t * CO + 8);
        }
        dw_px2(dc, 0, r0, r1, acc, 1);
        dw_px2(dc, 1, r0, r1, acc, 1);
        for (int j = 2; j < OUT - 2; j++) dw_px2(dc, j, r0, r1, acc, 0);
        dw_px2(dc, OUT - 2, r0, r1, acc, 1);
        dw_px2(dc, OUT - 1, r0, r1, acc, 1);
#pragma GCC unroll 6
        for (int t = 0; t < 6; t++) {
            st(g + t * CO, acc[t][0]);
            st(g + t * CO + 8, acc[t][1]);
        }
    }
    dw_one(x, dc, i, 2, 2, gw);
}

/* One sample's convolution gradient: gw[t][c] += sum over pixels dconv[c] x_t, gb[c] +=
 * sum dconv, with dconv = [z > 0] (b + c z) plus, at each window's selected pixel, its entry
 * of ad (a dy, already 0 where z_sel <= 0). Processed by window rows (3 pixel rows). */
static void conv_backward(const float *x, const float *z, const float *ad, const int32_t *arg,
                          const float *coef, float *gw, float *gb) {
    float buf[3 * OUT * CO] __attribute__((aligned(32)));
    const v8 zero = {0};
    const v8 b0 = ld(coef), b1 = ld(coef + 8), c0 = ld(coef + 16), c1 = ld(coef + 24);
    v8 s0 = zero, s1 = zero;
    for (int r = 0; r <= POOL; r++) {
        /* rows of window row r; row 29 (r = 10) is in no window */
        const int i0 = r == 0 ? 0 : (r == POOL ? OUT - 1 : 3 * r - 1);
        const int i1 = r == 0 ? 1 : (r == POOL ? OUT - 1 : 3 * r + 1);
        for (int i = i0; i <= i1; i++) {
            const float *zr = z + i * OUT * CO;
            float *br = buf + (i - i0) * OUT * CO;
            for (int j = 0; j < OUT; j++) {
                const v8 z0 = ld(zr + j * CO), z1 = ld(zr + j * CO + 8);
                const v8 v0 = sel(z0 > zero, b0 + c0 * z0, zero);
                const v8 v1 = sel(z1 > zero, b1 + c1 * z1, zero);
                s0 += v0;
                s1 += v1;
                st(br + j * CO, v0);
                st(br + j * CO + 8, v1);
            }
        }
        if (r < POOL) {
            const int base = i0 * OUT * CO;
            const int32_t *ar = arg + r * POOL * CO;
            const float *dr = ad + r * POOL * CO;
            for (int e = 0; e < POOL * CO; e++) buf[ar[e] - base] += dr[e];
        }
        if (r < POOL) { /* the next window row's z, while this one's weight gradient runs */
            const char *nz = (const char *)(z + (i1 + 1) * OUT * CO);
            const int bytes = (r + 1 < POOL ? 3 : 1) * OUT * CO * (int)sizeof(float);
            for (int o = 0; o < bytes; o += 64) __builtin_prefetch(nz + o, 0, 3);
        }
        for (int i = i0; i <= i1; i++) {
            const float *br = buf + (i - i0) * OUT * CO;
            if (i >= 2 && i <= OUT - 3) {
                dw_row(x, br, i, gw);
            } else {
                const int kh0 = i < 2 ? 2 - i : 0, kh1 = i > OUT - 3 ? OUT - 1 - i : 2;
                for (int ci = 0; ci < 3; ci++)
                    for (int kh = kh0; kh <= kh1; kh++) dw_one(x, br, i, ci, kh, gw);
            }
        }
    }
    for (int c = 0; c < 8; c++) {
        gb[c] += s0[c];
        gb[c + 8] += s1[c];
    }
}

static void fold_step(const EnsArgs *A, int f, float *scr) {
    const int B = A->bsz[f], K = A->K, P = A->P, Bmax = A->Bmax;
    float *prm = A->params + (int64_t)f * P;
    const float *W = prm, *bias = prm + OFF_B, *gam = prm + OFF_G, *bet = prm + OFF_BE;
    const float *LW = prm + OFF_L, *Lb = prm + OFF_L + K * NFEAT;
    const int32_t *idx = A->idx + (int64_t)f * Bmax;
    const uint8_t *flip = A->flip + (int64_t)f * Bmax;
    const float *cw = A->class_w + (int64_t)f * K;

    float *z = scr;
    float *zsel = z + round16((int64_t)Bmax * NPOS * CO);
    int32_t *arg = (int32_t *)(zsel + round16((int64_t)Bmax * NWIN * CO));
    /* dropout scale per pooled value, later overwritten by a dy (see conv_backward) */
    float *dm = (float *)arg + round16((int64_t)Bmax * NWIN * CO);
    float *feat = dm + round16((int64_t)Bmax * NWIN * CO); /* [B][cell][c] */
    float *logit = feat + round16((int64_t)Bmax * NFEAT);
    float *dlogit = logit + round16((int64_t)Bmax * K);
    float *grad = dlogit + round16((int64_t)Bmax * K);

    /* ---- forward: convolution, ReLU, batch statistics, window selection ---- */
    float sgn[CO];
    for (int c = 0; c < CO; c++) sgn[c] = gam[c] < 0.0f ? -1.0f : 1.0f;
    double dsum[CO] = {0}, dsq[CO] = {0};
    for (int b = 0; b < B; b++) {
        const float *x = A->xp + ((int64_t)idx[b] * 2 + flip[b]) * INSZ;
        float s[CO] = {0}, q[CO] = {0};
        conv_forward(x, W, bias, sgn, z + (int64_t)b * NPOS * CO, zsel + (int64_t)b * NWIN * CO,
                     arg + (int64_t)b * NWIN * CO, s, q);
        for (int c = 0; c < CO; c++) {
            dsum[c] += s[c];
            dsq[c] += q[c];
        }
    }
#ifdef __AVX__
    _mm_sfence();
#endif
    const double M = (double)B * NPOS;
    float mu[CO], invstd[CO], alpha[CO], shift[CO];
    double var[CO];
    for (int c = 0; c < CO; c++) {
        const double m = dsum[c] / M;
        double v = dsq[c] / M - m * m;
        if (v < 0) v = 0;
        var[c] = v;
        mu[c] = (float)m;
        invstd[c] = (float)(1.0 / sqrt(v + A->bn_eps));
        alpha[c] = invstd[c] * gam[c];
        shift[c] = bet[c] - mu[c] * alpha[c];
    }
    const v8 al0 = ld(alpha), al1 = ld(alpha + 8), sh0 = ld(shift), sh1 = ld(shift + 8);

    /* ---- head forward: BN on the selected values, dropout, 2x2 average, linear ---- */
    const float p = A->dropout_p;
    const float keep_scale = 1.0f / (1.0f - p);
    const uint32_t thr = (uint32_t)llround((1.0 - (double)p) * 65536.0);
    uint64_t rng = A->rng[f];
    for (int b = 0; b < B; b++) {
        const float *zs = zsel + (int64_t)b * NWIN * CO;
        float *d = dm + (int64_t)b * NWIN * CO;
        float *ft = feat + (int64_t)b * NFEAT;
        if (p > 0.0f) {
            dropout_scales(&rng, thr, keep_scale, d);
        } else {
            for (int e = 0; e < NWIN * CO; e++) d[e] = 1.0f;
        }
        for (int cell = 0; cell < NCELL; cell++) {
            const int w = (cell / AVG) * 2 * POOL + (cell % AVG) * 2;
            v8 f0 = {0}, f1 = {0};
            const int ws[4] = {w, w + 1, w + POOL, w + POOL + 1};
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                const int o = ws[u] * CO;
                f0 += (ld(zs + o) * al0 + sh0) * ld(d + o);
                f1 += (ld(zs + o + 8) * al1 + sh1) * ld(d + o + 8);
            }
            st(ft + cell * CO, f0 / 4.0f);
            st(ft + cell * CO + 8, f1 / 4.0f);
        }
        for (int k = 0; k < K; k++) {
            const float *lw = LW + k * NFEAT;
            v8 acc0 = {0}, acc1 = {0};
            for (int e = 0; e < NFEAT; e += 16) {
                acc0 += ld(lw + e) * ld(ft + e);
                acc1 += ld(lw + e + 8) * ld(ft + e + 8);
            }
            logit[b * K + k] = hsum(acc0 + acc1) + Lb[k];
        }
    }
    if (A->train) A->rng[f] = rng;

    /* ---- loss and its gradient w.r.t. the logits ---- */
    double total = 0.0, norm = 0.0;
    for (int b = 0; b < B; b++) {
        const float *lg = logit + b * K;
        const int t = A->labels[idx[b]];
        double mx = lg[0];
        for (int k = 1; k < K; k++) mx = lg[k] > mx ? lg[k] : mx;
        double se = 0.0;
        for (int k = 0; k < K; k++) se += exp(lg[k] - mx);
        const double logpt = lg[t] - (mx + log(se));
        const double w = cw[t];
        if (A->loss_kind == 0) {
            total += w * -logpt;
            norm += w;
        } else {
            const double om = fmax(1.0 - exp(logpt), 0.0);
            total += w * -pow(om, A->focal_gamma) * logpt;
            norm += 1.0;
        }
    }
    A->loss_out[f] = total / norm;
    for (int b = 0; b < B; b++) {
        const float *lg = logit + b * K;
        float *dl = dlogit + b * K;
        const int t = A->labels[idx[b]];
        double mx = lg[0];
        for (int k = 1; k < K; k++) mx = lg[k] > mx ? lg[k] : mx;
        double se = 0.0;
        for (int k = 0; k < K; k++) se += exp(lg[k] - mx);
        const double lse = mx + log(se);
        const double w = cw[t];
        double scale; /* d loss / d logit_k = scale (p_k - [k == t]) */
        if (A->loss_kind == 0) {
            scale = w / norm;
        } else {
            const double logpt = lg[t] - lse, pt = exp(logpt), om = fmax(1.0 - pt, 0.0);
            const double g = A->focal_gamma;
            const double t1 = (g != 0.0 && om > 0.0) ? g * pow(om, g - 1.0) * pt * logpt : 0.0;
            scale = -w / norm * (t1 - pow(om, g));
        }
        for (int k = 0; k < K; k++)
            dl[k] = (float)(scale * (exp(lg[k] - lse) - (k == t ? 1.0 : 0.0)));
    }

    /* ---- head backward ---- */
    memset(grad, 0, sizeof(float) * P);
    float *gLW = grad + OFF_L, *gLb = grad + OFF_L + K * NFEAT;
    const v8 mu0 = ld(mu), mu1 = ld(mu + 8), is0 = ld(invstd), is1 = ld(invstd + 8);
    float a[CO];
    for (int c = 0; c < CO; c++) a[c] = gam[c] * invstd[c];
    const v8 a0 = ld(a), a1 = ld(a + 8), zero = {0};
    double dgam[CO] = {0}, dbet[CO] = {0}, dsel_sum[CO] = {0};
    for (int b = 0; b < B; b++) {
        const float *dl = dlogit + b * K, *ft = feat + (int64_t)b * NFEAT;
        const float *zs = zsel + (int64_t)b * NWIN * CO;
        float *d = dm + (int64_t)b * NWIN * CO;
        float dft[NFEAT] __attribute__((aligned(32)));
        for (int e = 0; e < NFEAT; e += 8) st(dft + e, zero);
        for (int k = 0; k < K; k++) {
            gLb[k] += dl[k];
            const v8 g = bc(dl[k]);
            const float *lw = LW + k * NFEAT;
            float *gl = gLW + k * NFEAT;
            for (int e = 0; e < NFEAT; e += 8) {
                st(gl + e, ld(gl + e) + g * ld(ft + e));
                st(dft + e, ld(dft + e) + g * ld(lw + e));
            }
        }
        v8 sg0 = zero, sg1 = zero, sb0 = zero, sb1 = zero, sd0 = zero, sd1 = zero;
        for (int w = 0; w < NWIN; w++) {
            const int cell = (w / POOL / 2) * AVG + (w % POOL) / 2;
            const int o = w * CO;
            const v8 y0 = ld(dft + cell * CO) / 4.0f * ld(d + o);
            const v8 y1 = ld(dft + cell * CO + 8) / 4.0f * ld(d + o + 8);
            const v8 z0 = ld(zs + o), z1 = ld(zs + o + 8);
            sb0 += y0;
            sb1 += y1;
            sg0 += y0 * ((z0 - mu0) * is0);
            sg1 += y1 * ((z1 - mu1) * is1);
            const v8 e0 = sel(z0 > zero, a0 * y0, zero), e1 = sel(z1 > zero, a1 * y1, zero);
            sd0 += e0;
            sd1 += e1;
            st(d + o, e0);
            st(d + o + 8, e1);
        }
        for (int c = 0; c < 8; c++) {
            dgam[c] += sg0[c]; dgam[c + 8] += sg1[c];
            dbet[c] += sb0[c]; dbet[c + 8] += sb1[c];
            dsel_sum[c] += sd0[c]; dsel_sum[c + 8] += sd1[c];
        }
    }
    /* dz = a (dy_scattered - dbeta / M - zhat dgamma / M) = a dy_scattered + b + c z */
    float coef[2 * CO];
    for (int c = 0; c < CO; c++) {
        const double ac = a[c];
        coef[c] = (float)(-ac * dbet[c] / M + ac * invstd[c] * dgam[c] * mu[c] / M);
        coef[CO + c] = (float)(-ac * invstd[c] * dgam[c] / M);
        grad[OFF_G + c] = (float)dgam[c];
        grad[OFF_BE + c] = (float)dbet[c];
    }

    /* ---- convolution backward (weights and bias) ---- */
    double gwd[TAPS * CO] = {0}, gbd[CO] = {0};
    for (int b = 0; b < B; b++) {
        const float *x = A->xp + ((int64_t)idx[b] * 2 + flip[b]) * INSZ;
        float gw[TAPS * CO] __attribute__((aligned(32)));
        float gb[CO] = {0};
        memset(gw, 0, sizeof gw);
        conv_backward(x, z + (int64_t)b * NPOS * CO, dm + (int64_t)b * NWIN * CO,
                      arg + (int64_t)b * NWIN * CO, coef, gw, gb);
        for (int e = 0; e < TAPS * CO; e++) gwd[e] += gw[e];
        for (int c = 0; c < CO; c++) gbd[c] += gb[c];
    }
    for (int e = 0; e < TAPS * CO; e++) grad[e] = (float)gwd[e];
    for (int c = 0; c < CO; c++) grad[OFF_B + c] = (float)(gbd[c] + dsel_sum[c]);

    if (!A->train) {
        memcpy(A->grad_out + (int64_t)f * P, grad, sizeof(float) * P);
        return;
    }

    /* ---- running statistics (unbiased variance, as torch) ---- */
    float *run = A->running + (int64_t)f * 2 * CO;
    const float mom = A->bn_momentum;
    for (int c = 0; c < CO; c++) {
        run[c] = (1.0f - mom) * run[c] + mom * mu[c];
        const float uv = (float)(M > 1 ? var[c] * M / (M - 1) : var[c]);
        run[CO + c] = (1.0f - mom) * run[CO + c] + mom * uv;
    }

    /* ---- Adam (torch.optim.Adam; weight decay as L2 added to the gradient) ---- */
    const int64_t step = ++A->adam_step[f];
    const double bc1 = 1.0 - pow((double)A->beta1, (double)step);
    const double bc2 = 1.0 - pow((double)A->beta2, (double)step);
    const float step_size = (float)(A->lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float b1 = A->beta1, b2 = A->beta2, eps = A->adam_eps, wd = A->weight_decay;
    float *m = A->adam_m + (int64_t)f * P, *v = A->adam_v + (int64_t)f * P;
    for (int e = 0; e < P; e++) {
        float g = grad[e];
        if (wd != 0.0f) g += wd * prm[e];
        m[e] += (1.0f - b1) * (g - m[e]);
        v[e] = v[e] * b2 + (1.0f - b2) * g * g;
        const float denom = sqrtf(v[e]) / bc2_sqrt + eps;
        prm[e] -= step_size * (m[e] / denom);
    }
}

typedef struct {
    const EnsArgs *A;
    int tid;
    int *next;
} Worker;

static void *work(void *arg) {
    Worker *wk = (Worker *)arg;
    const EnsArgs *A = wk->A;
    float *scr = A->scratch + (int64_t)wk->tid * A->scratch_floats;
    for (;;) {
        const int f = __atomic_fetch_add(wk->next, 1, __ATOMIC_RELAXED);
        if (f >= A->F) break;
        if (A->bsz[f] > 0) fold_step(A, f, scr);
    }
    return NULL;
}

/* One training step of every fold with bsz[f] > 0. Returns 0, or a negative error code. */
int ens_step(const EnsArgs *A) {
    if (A->K < 1 || A->P != round16(OFF_L + (int64_t)A->K * NFEAT + A->K)) return -1;
    if (A->scratch_floats < ens_scratch_floats(A->Bmax, A->K) || A->scratch_floats % 16) return -2;
    if (((uintptr_t)A->scratch) % 32) return -5;
    for (int f = 0; f < A->F; f++) {
        if (A->bsz[f] < 0 || A->bsz[f] > A->Bmax) return -3;
        if (A->bsz[f] == 1) return -4; /* BatchNorm needs two samples */
    }
    int next = 0;
    int n = A->nthreads < 1 ? 1 : A->nthreads;
    if (n > 64) n = 64;
    Worker wk[64];
    pthread_t th[64];
    int started = 0;
    for (int t = 1; t < n; t++) {
        wk[t] = (Worker){A, t, &next};
        if (pthread_create(&th[t], NULL, work, &wk[t]) != 0) break;
        started = t;
    }
    wk[0] = (Worker){A, 0, &next};
    work(&wk[0]);
    for (int t = 1; t <= started; t++) pthread_join(th[t], NULL);
    return 0;
}
"""


# ---- the native kernel: build once, cache, load --------------------------------------------


class _EnsArgs(ctypes.Structure):
    """Mirror of the kernel's EnsArgs."""

    _fields_ = [
        *[(name, ctypes.c_int32) for name in ("F", "K", "N", "Bmax", "P", "nthreads")],
        ("loss_kind", ctypes.c_int32),
        ("train", ctypes.c_int32),
        *[
            (name, ctypes.c_float)
            for name in (
                "focal_gamma",
                "dropout_p",
                "lr",
                "beta1",
                "beta2",
                "adam_eps",
                "weight_decay",
                "bn_eps",
                "bn_momentum",
            )
        ],
        ("pad_", ctypes.c_int32),
        *[
            (name, ctypes.c_void_p)
            for name in (
                "xp",
                "labels",
                "idx",
                "flip",
                "bsz",
                "params",
                "adam_m",
                "adam_v",
                "adam_step",
                "running",
                "class_w",
                "rng",
                "loss_out",
                "grad_out",
                "scratch",
            )
        ],
        ("scratch_floats", ctypes.c_int64),
    ]


_ABI_VERSION = 4
_kernel_lock = threading.Lock()
_kernel: ctypes.CDLL | None = None
_kernel_error: str | None = None


def _cpu_fingerprint() -> str:
    """What -march=native depends on: a cached build must not run on a different CPU."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "model name", "Features", "CPU part")):
                    text += line
                    if line.startswith(("flags", "Features")):
                        break
    except OSError:
        pass
    return text


def _kernel_dirs() -> list[Path]:
    """Where the compiled kernel is cached: $MEKIT_ENSEMBLE_KERNEL_DIR, else the user cache,
    else (not writable) a per-user temporary directory."""
    if os.environ.get(_KERNEL_ENV):
        return [Path(os.environ[_KERNEL_ENV])]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    user = getattr(os, "getuid", lambda: "user")()
    return [
        Path(base) / "mekit" / "kernels",
        Path(tempfile.gettempdir()) / f"mekit-kernels-{user}",
    ]


def _compile(cc: list[str], flags: list[str], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mekit-kernel-") as tmp:
        src = Path(tmp) / "ensemble.c"
        src.write_text(_KERNEL_SOURCE)
        lib = Path(tmp) / "ensemble.so"
        proc = subprocess.run(
            [*cc, *flags, str(src), "-o", str(lib), "-lm"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cc)} failed: {proc.stderr.strip()[-2000:]}")
        # Atomic: a concurrent process sees no library or the complete one.
        fd, tmp_out = tempfile.mkstemp(prefix=".ensemble-", suffix=".so", dir=out.parent)
        os.close(fd)
        shutil.copyfile(lib, tmp_out)
        os.replace(tmp_out, out)


def _build_kernel() -> ctypes.CDLL:
    cc_env = os.environ.get("CC")
    cc = shlex.split(cc_env) if cc_env else [shutil.which("gcc") or shutil.which("cc") or "cc"]
    if shutil.which(cc[0]) is None:
        raise RuntimeError(f"no C compiler found (tried {cc[0]!r}; set CC)")
    base = ["-O3", "-ffp-contract=fast", "-fPIC", "-shared", "-pthread", "-std=gnu11"]
    errors = []
    for flags in (["-march=native", *base], base):
        key = hashlib.sha256(
            "\0".join([_KERNEL_SOURCE, *cc, *flags, _cpu_fingerprint()]).encode()
        ).hexdigest()[:20]
        lib = None
        for directory in _kernel_dirs():
            path = directory / f"ensemble-{key}.so"
            try:
                if not path.exists():
                    log.info("compiling the ensemble kernel to %s", path)
                    _compile(cc, flags, path)
                lib = ctypes.CDLL(str(path))
                break
            except OSError as e:  # unwritable directory, unloadable file: try the next
                errors.append(f"{path}: {e}")
            except (RuntimeError, subprocess.SubprocessError) as e:  # the compiler failed
                errors.append(str(e))
                break
        if lib is None:
            continue
        if lib.ens_abi_version() != _ABI_VERSION or lib.ens_args_size() != ctypes.sizeof(_EnsArgs):
            errors.append(f"{path}: kernel ABI mismatch")
            continue
        lib.ens_step.argtypes = [ctypes.POINTER(_EnsArgs)]
        lib.ens_step.restype = ctypes.c_int
        lib.ens_scratch_floats.argtypes = [ctypes.c_int32, ctypes.c_int32]
        lib.ens_scratch_floats.restype = ctypes.c_int64
        return lib
    raise RuntimeError("; ".join(errors))


def native_kernel_available() -> bool:
    """Whether the fused C kernel builds and loads here (builds it on first call)."""
    return _load_kernel() is not None


def _load_kernel() -> ctypes.CDLL | None:
    global _kernel, _kernel_error
    with _kernel_lock:
        if _kernel is None and _kernel_error is None:
            if os.environ.get("MEKIT_ENSEMBLE_NATIVE", "1") == "0":
                _kernel_error = "disabled by MEKIT_ENSEMBLE_NATIVE=0"
            else:
                try:
                    _kernel = _build_kernel()
                except Exception as e:  # any build problem: fall back to torch
                    _kernel_error = str(e) or type(e).__name__
        return _kernel


# ---- parameters: one flat vector per fold ------------------------------------------------


def _parts(model: torch.nn.Module) -> tuple[list[torch.nn.Conv2d], list[torch.nn.BatchNorm2d]]:
    convs = [stream[0][0] for stream in model.streams]
    bns = [stream[0][2] for stream in model.streams]
    return convs, bns


def _check_architecture(model: torch.nn.Module, num_classes: int) -> tuple[float, float, float]:
    """(dropout, bn_eps, bn_momentum) of an STSTNet the kernel can train; raises otherwise."""
    try:
        convs, bns = _parts(model)
        drops = {float(stream[2].p) for stream in model.streams}
        ok = (
            sum(c.out_channels for c in convs) == _WIDTH
            and all(
                c.in_channels == _CHANNELS
                and c.kernel_size == (3, 3)
                and c.padding == (_PAD, _PAD)
                and c.stride == (1, 1)
                and c.bias is not None
                for c in convs
            )
            and all(b.affine and b.track_running_stats and b.momentum is not None for b in bns)
            and len({(b.eps, b.momentum) for b in bns}) == 1
            and len(drops) == 1
            and model.classifier.in_features == _NFEAT
            and model.classifier.out_features == num_classes
        )
    except (AttributeError, IndexError, TypeError):
        ok = False
    if not ok:
        raise MekitError(
            "the ensemble trainer supports STSTNet with stream widths summing to 16 (default "
            "3, 5, 8) on 3 x 28 x 28 input; use run_loso (the plain loop) for other variants"
        )
    return drops.pop(), float(bns[0].eps), float(bns[0].momentum)


def _param_size(num_classes: int) -> int:
    """Floats per fold in the kernel's parameter layout (padded to 64-byte rows)."""
    return -(-(_OFF_L + num_classes * (_NFEAT + 1)) // 16) * 16


def _pack(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(parameter vector (P,), running stats (32,)) of an STSTNet, in the kernel's layout."""
    convs, bns = _parts(model)
    with torch.no_grad():
        weight = torch.cat([c.weight for c in convs]).reshape(_WIDTH, 27).t()
        vec = torch.cat(
            [
                weight.reshape(-1),
                torch.cat([c.bias for c in convs]),
                torch.cat([b.weight for b in bns]),
                torch.cat([b.bias for b in bns]),
                # [k][cell][c]: channels-last, like the kernel's feature map
                model.classifier.weight.reshape(-1, _WIDTH, 25).transpose(1, 2).reshape(-1),
                model.classifier.bias,
            ]
        )
        running = torch.cat(
            [torch.cat([b.running_mean for b in bns]), torch.cat([b.running_var for b in bns])]
        )
    vec = F.pad(vec.float(), (0, _param_size(model.classifier.out_features) - len(vec)))
    return vec.contiguous(), running.float().contiguous()


def _unpack(model: torch.nn.Module, vec: torch.Tensor, running: torch.Tensor, steps: int) -> None:
    """Load a kernel-layout parameter vector and running stats into an STSTNet, in place."""
    convs, bns = _parts(model)
    k = model.classifier.out_features
    weight = vec[:_OFF_B].reshape(27, _WIDTH).t().reshape(_WIDTH, _CHANNELS, 3, 3)
    with torch.no_grad():
        start = 0
        for conv, bn in zip(convs, bns, strict=True):
            end = start + conv.out_channels
            conv.weight.copy_(weight[start:end])
            conv.bias.copy_(vec[_OFF_B + start : _OFF_B + end])
            bn.weight.copy_(vec[_OFF_G + start : _OFF_G + end])
            bn.bias.copy_(vec[_OFF_BE + start : _OFF_BE + end])
            bn.running_mean.copy_(running[start:end])
            bn.running_var.copy_(running[_WIDTH + start : _WIDTH + end])
            bn.num_batches_tracked.fill_(steps)
            start = end
        lin = vec[_OFF_L : _OFF_L + k * _NFEAT].reshape(k, 25, _WIDTH).transpose(1, 2)
        model.classifier.weight.copy_(lin.reshape(k, _NFEAT))
        model.classifier.bias.copy_(vec[_OFF_L + k * _NFEAT : _OFF_L + k * _NFEAT + k])


_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15


def _mix64(z: int) -> int:
    """splitmix64's output function (a bijective 64-bit mix)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _dropout_seed(seed: int) -> int:
    """Initial state of a fold's dropout stream (decorrelated for consecutive seeds)."""
    return _mix64((seed * _GOLDEN64 + 0x632BE59BD9B4E019) & _MASK64)


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _dropout_scales(state: int, samples: int, p: float) -> tuple[np.ndarray, int]:
    """The kernel's dropout draws: (samples, 100, 16) float32 scales (0 or 1 / (1 - p)) per
    pooled value (window, channel) and the advanced stream state.

    Per sample a 64-bit key from the fold's splitmix64 stream, then 800 words
    h_i = fmix32(i * 0x9E3779B9 + key_lo) ^ key_hi; word 8 w + l gives channel l of window w
    (its low 16 bits) and channel 8 + l (its high 16 bits), kept when below
    round((1 - p) 2^16).
    """
    p32 = np.float32(p)
    threshold = np.uint32(int(np.floor((1.0 - float(p32)) * 65536.0 + 0.5)))
    scale = np.float32(1.0) / (np.float32(1.0) - p32)
    keys = []
    for _ in range(samples):
        state = (state + _GOLDEN64) & _MASK64
        keys.append(_mix64(state))
    key = np.asarray(keys, dtype=np.uint64).reshape(samples, 1)
    lo = (key & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hi = (key >> np.uint64(32)).astype(np.uint32)
    with np.errstate(over="ignore"):
        i = np.arange(800, dtype=np.uint32)[None, :]
        h = _fmix32(i * np.uint32(0x9E3779B9) + lo) ^ hi  # (samples, 800)
    h = h.reshape(samples, 100, 8)
    halves = np.concatenate([h & np.uint32(0xFFFF), h >> np.uint32(16)], axis=2)
    scales = np.where(halves < threshold, scale, np.float32(0.0)).astype(np.float32)
    return scales, state


# ---- trainers: the state of all folds, one step at a time ------------------------------


@dataclasses.dataclass
class _Setup:
    """Everything fixed for a run: data, hyper-parameters, per-fold constants."""

    x2: torch.Tensor  # (N, 2, 3, 28, 28): as given, mirrored
    labels: torch.Tensor  # (N,) int64
    class_w: torch.Tensor  # (F, K) CE weights / focal alpha (ones when none)
    seeds: list[int]  # per fold
    num_classes: int
    config: TrainConfig
    dropout: float
    bn_eps: float
    bn_momentum: float
    threads: int


class _Trainer:
    """Stacked state of F folds: parameters (F, P), Adam moments, steps, running stats."""

    def __init__(self, setup: _Setup, params: torch.Tensor, running: torch.Tensor) -> None:
        self.s = setup
        self.params = params.contiguous()
        self.running = running.contiguous()
        self.adam_m = torch.zeros_like(self.params)
        self.adam_v = torch.zeros_like(self.params)
        self.steps = torch.zeros(len(params), dtype=torch.int64)

    def step(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray) -> np.ndarray:
        """Train every fold with bsz[f] > 0 on its batch idx[f, :bsz[f]] (flip[f] mirrors
        samples); returns each fold's batch loss (0 for skipped folds)."""
        raise NotImplementedError

    def gradients(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray) -> torch.Tensor:
        """(F, P) loss gradients of the current parameters on the given batches, no update."""
        raise NotImplementedError


class _NativeTrainer(_Trainer):
    def __init__(
        self,
        setup: _Setup,
        params: torch.Tensor,
        running: torch.Tensor,
        lib: ctypes.CDLL,
        bmax: int,
    ) -> None:
        super().__init__(setup, params, running)
        self.lib = lib
        f, p = self.params.shape
        self.bmax = bmax
        xp = F.pad(setup.x2, (_PAD, _PAD, _PAD, _PAD))  # (N, 2, 3, 32, 32)
        self.xp = xp.contiguous()
        self.labels32 = setup.labels.to(torch.int32).contiguous()
        self.class_w = setup.class_w.float().contiguous()
        states = np.array([_dropout_seed(seed) for seed in setup.seeds], dtype=np.uint64)
        self.rng = torch.from_numpy(states.view(np.int64))  # the kernel reads uint64
        self.loss = torch.zeros(f, dtype=torch.float64)
        self.grad_out = torch.zeros(f, p)
        threads = max(1, min(setup.threads, f))
        per = int(lib.ens_scratch_floats(bmax, setup.num_classes))
        self.scratch = torch.empty(threads * per)
        self.idx = torch.zeros(f, bmax, dtype=torch.int32)
        self.flip = torch.zeros(f, bmax, dtype=torch.uint8)
        self.bsz = torch.zeros(f, dtype=torch.int32)
        cfg = setup.config
        self.args = _EnsArgs(
            F=f,
            K=setup.num_classes,
            N=len(setup.labels),
            Bmax=bmax,
            P=p,
            nthreads=threads,
            loss_kind=0 if cfg.loss == "ce" else 1,
            train=1,
            focal_gamma=cfg.focal_gamma,
            dropout_p=setup.dropout,
            lr=cfg.lr,
            beta1=0.9,
            beta2=0.999,
            adam_eps=1e-8,
            weight_decay=cfg.weight_decay,
            bn_eps=setup.bn_eps,
            bn_momentum=setup.bn_momentum,
            xp=self.xp.data_ptr(),
            labels=self.labels32.data_ptr(),
            idx=self.idx.data_ptr(),
            flip=self.flip.data_ptr(),
            bsz=self.bsz.data_ptr(),
            params=self.params.data_ptr(),
            adam_m=self.adam_m.data_ptr(),
            adam_v=self.adam_v.data_ptr(),
            adam_step=self.steps.data_ptr(),
            running=self.running.data_ptr(),
            class_w=self.class_w.data_ptr(),
            rng=self.rng.data_ptr(),
            loss_out=self.loss.data_ptr(),
            grad_out=self.grad_out.data_ptr(),
            scratch=self.scratch.data_ptr(),
            scratch_floats=per,
        )

    def _run(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray, train: int) -> None:
        self.idx.numpy()[:] = idx
        self.flip.numpy()[:] = flip
        self.bsz.numpy()[:] = bsz
        self.loss.zero_()
        self.args.train = train
        code = self.lib.ens_step(ctypes.byref(self.args))
        if code != 0:
            raise MekitError(f"internal: ensemble kernel failed with code {code}")

    def step(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray) -> np.ndarray:
        self._run(idx, flip, bsz, train=1)
        return self.loss.numpy().copy()

    def gradients(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray) -> torch.Tensor:
        self.grad_out.zero_()
        self._run(idx, flip, bsz, train=0)
        return self.grad_out.clone()


class _TorchTrainer(_Trainer):
    """The same step in plain PyTorch: folds in chunks, grouped convolution, autograd."""

    def __init__(self, setup: _Setup, params: torch.Tensor, running: torch.Tensor) -> None:
        super().__init__(setup, params, running)
        self.rng = [_dropout_seed(seed) for seed in setup.seeds]  # the kernel's streams

    def _loss(
        self,
        folds: torch.Tensor,
        theta: torch.Tensor,
        idx: torch.Tensor,
        flip: torch.Tensor,
        bsz: torch.Tensor,
        advance: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-fold losses (Fc,) and batch mean/var (Fc, 16) for folds `folds`; `advance`
        moves the folds' dropout streams on (a training step)."""
        s, k = self.s, self.s.num_classes
        fc, bmax = idx.shape
        valid = torch.arange(bmax)[:, None] < bsz[None, :]  # (Bmax, Fc)
        x = s.x2[idx.long(), flip.long()]  # (Fc, Bmax, 3, 28, 28)
        x = x.transpose(0, 1) * valid[:, :, None, None, None]  # padding slots: zeros
        x = x.reshape(bmax, fc * _CHANNELS, _SIZE, _SIZE)
        weight = theta[:, :_OFF_B].reshape(fc, 27, _WIDTH).transpose(1, 2)
        weight = weight.reshape(fc * _WIDTH, _CHANNELS, 3, 3)
        h = F.conv2d(x, weight, theta[:, _OFF_B:_OFF_G].reshape(-1), padding=_PAD, groups=fc)
        h = torch.relu(h).reshape(bmax, fc, _WIDTH, 30, 30)
        vm = valid.to(h.dtype)[:, :, None, None, None]
        count = (bsz.to(h.dtype) * 900)[:, None]  # (Fc, 1)
        mean = (h * vm).sum(dim=(0, 3, 4)) / count
        centred = h - mean[None, :, :, None, None]
        var = (centred.square() * vm).sum(dim=(0, 3, 4)) / count
        scale = torch.rsqrt(var + s.bn_eps) * theta[:, _OFF_G:_OFF_BE]
        y = (
            centred * scale[None, :, :, None, None]
            + theta[:, _OFF_BE:_OFF_L][None, :, :, None, None]
        )
        pooled = F.max_pool2d(y.reshape(bmax, fc * _WIDTH, 30, 30), 3, 3, 1)
        pooled = pooled.reshape(bmax, fc, _WIDTH, 10, 10)
        if s.dropout > 0:
            scales = np.zeros((bmax, fc, 100, _WIDTH), dtype=np.float32)
            for j, f in enumerate(folds.tolist()):
                n = int(bsz[j])
                scales[:n, j], state = _dropout_scales(self.rng[f], n, s.dropout)
                if advance:
                    self.rng[f] = state
            keep = torch.from_numpy(scales).reshape(bmax, fc, 10, 10, _WIDTH)
            pooled = pooled * keep.permute(0, 1, 4, 2, 3)
        feat = F.avg_pool2d(pooled.reshape(bmax, fc * _WIDTH, 10, 10), 2)
        feat = feat.reshape(bmax, fc, _NFEAT)
        lin_w = theta[:, _OFF_L : _OFF_L + k * _NFEAT].reshape(fc, k, 25, _WIDTH)
        lin_w = lin_w.transpose(2, 3).reshape(fc, k, _NFEAT)
        lin_b = theta[:, _OFF_L + k * _NFEAT : _OFF_L + k * _NFEAT + k]
        logits = torch.einsum("bfj,fkj->bfk", feat, lin_w) + lin_b
        target = s.labels[idx.long()].t()  # (Bmax, Fc)
        logpt = torch.log_softmax(logits, dim=2).gather(2, target[:, :, None]).squeeze(2)
        w = s.class_w[folds][torch.arange(fc)[None, :], target] * valid
        if s.config.loss == "ce":
            loss = -(w * logpt).sum(0) / w.sum(0)
        else:
            focal = -((1.0 - logpt.exp()).clamp_min(0.0) ** s.config.focal_gamma) * logpt
            loss = (w * focal).sum(0) / bsz.to(h.dtype)
        return loss, mean.detach(), var.detach()

    def _chunks(self, active: np.ndarray, bmax: int) -> list[np.ndarray]:
        per = max(1, 2048 // max(bmax, 1))
        return [active[i : i + per] for i in range(0, len(active), per)]

    def _grads(
        self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray, update_running: bool
    ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        grads = torch.zeros_like(self.params)
        losses = np.zeros(len(bsz))
        active = np.flatnonzero(bsz > 0)
        bmax = int(bsz.max()) if len(active) else 0
        for chunk in self._chunks(active, bmax):
            folds = torch.from_numpy(chunk)
            theta = self.params[folds].clone().requires_grad_(True)
            with torch.enable_grad():
                loss, mean, var = self._loss(
                    folds,
                    theta,
                    torch.from_numpy(idx[chunk, :bmax]),
                    torch.from_numpy(flip[chunk, :bmax]),
                    torch.from_numpy(bsz[chunk]),
                    advance=update_running,
                )
                loss.sum().backward()
            grads[folds] = theta.grad
            losses[chunk] = loss.detach().double().numpy()
            if update_running:
                m = torch.as_tensor(bsz[chunk] * 900, dtype=torch.float32)[:, None]
                unbiased = var * m / (m - 1).clamp_min(1)
                mom = self.s.bn_momentum
                run = self.running[folds]
                run[:, :_WIDTH] = (1 - mom) * run[:, :_WIDTH] + mom * mean
                run[:, _WIDTH:] = (1 - mom) * run[:, _WIDTH:] + mom * unbiased
                self.running[folds] = run
        return grads, losses, active

    def step(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            grads, losses, active = self._grads(idx, flip, bsz, update_running=True)
            if len(active):
                self._adam(torch.from_numpy(active), grads)
        return losses

    def gradients(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self._grads(idx, flip, bsz, update_running=False)[0]

    def _adam(self, folds: torch.Tensor, grads: torch.Tensor) -> None:
        """torch.optim.Adam's update, per fold (own step count), on folds `folds` only."""
        cfg = self.s.config
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        p, m, v = self.params[folds], self.adam_m[folds], self.adam_v[folds]
        g = grads[folds]
        if cfg.weight_decay:
            g = g + cfg.weight_decay * p
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        self.steps[folds] += 1
        step = self.steps[folds].double()
        step_size = (cfg.lr / (1 - beta1**step)).float()[:, None]
        bc2_sqrt = torch.sqrt(1 - beta2**step).float()[:, None]
        p -= step_size * (m / (v.sqrt() / bc2_sqrt + eps))
        self.params[folds], self.adam_m[folds], self.adam_v[folds] = p, m, v


# ---- the run -----------------------------------------------------------------------------


def _check_config(config: TrainConfig) -> None:
    if config.selection != "fixed":
        raise MekitError(
            f"the ensemble trainer supports selection 'fixed' only, got {config.selection!r}; "
            "use run_loso (the plain per-fold loop) for val-split or test-oracle"
        )
    if config.augment_affine:
        raise MekitError(
            "the ensemble trainer supports augment_flip only; set augment_rotation_deg, "
            "augment_scale and augment_translate to 0 or use run_loso (the plain loop)"
        )


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class EnsembleFit:
    """Trained fold models (eval mode, in fold order) and their per-epoch histories."""

    models: list[torch.nn.Module]
    histories: list[list[dict[str, float]]]
    backend: str


def fit_fold_ensemble(
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    num_classes: int,
    config: TrainConfig,
    model_name: str = "ststnet",
    model_kwargs: Mapping[str, Any] | None = None,
    threads: int | None = None,
    backend: Backend = "auto",
    progress: bool = False,
) -> EnsembleFit:
    """Train one model per fold on X[fold.train_idx], all folds at once; no prediction.

    Fold f starts from the weights fit() would draw with seed `config.seed + f.index` and
    draws its batches and flips as fit() does. See `run_loso_ensemble` for the arguments.
    """
    if model_name not in ENSEMBLE_MODELS:
        raise MekitError(
            f"the ensemble trainer supports models {', '.join(ENSEMBLE_MODELS)}, not "
            f"{model_name!r}; use run_loso (the plain per-fold loop) for other models"
        )
    if backend not in BACKENDS:
        raise MekitError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    _check_config(config)
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if X.shape[1:] != (_CHANNELS, _SIZE, _SIZE) or len(X) != len(y):
        raise MekitError(
            f"the ensemble trainer wants X of shape (N, 3, 28, 28) and N labels, got "
            f"{tuple(X.shape)} and {len(y)}"
        )
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise MekitError(f"y must hold class indices 0..{num_classes - 1}")
    folds = list(folds)
    if not folds:
        raise MekitError("no folds to train")
    if threads is not None and threads < 1:
        raise MekitError(f"threads must be at least 1, got {threads}")
    if config.focal_alpha is not None and len(config.focal_alpha) != num_classes:
        raise MekitError(
            f"train.focal_alpha has {len(config.focal_alpha)} values for {num_classes} "
            "classes; give one per class, in label order"
        )
    sizes = [len(fold.train_idx) for fold in folds]
    for fold, n in zip(folds, sizes, strict=True):
        idx = np.asarray(fold.train_idx)
        if n and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= len(y)):
            raise MekitError(
                f"fold {fold.test_subject!r}: train indices must be positions 0..{len(y) - 1}"
            )
        if n < 2:
            raise MekitError(
                f"fold {fold.test_subject!r} has {n} training sample(s); BatchNorm needs 2"
            )

    # Per-fold initial weights, exactly as fit() draws them.
    seeds = [config.seed + fold.index for fold in folds]
    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(create_model(model_name, num_classes, **dict(model_kwargs or {})))
    dropout, bn_eps, bn_momentum = _check_architecture(models[0], num_classes)
    packed, runs = zip(*(_pack(model) for model in models), strict=True)

    class_w = np.ones((len(folds), num_classes), dtype=np.float32)
    for f, fold in enumerate(folds):
        if config.class_weights == "balanced":
            class_w[f] = balanced_class_weights(y[fold.train_idx], num_classes)
        elif config.focal_alpha is not None:
            class_w[f] = np.asarray(config.focal_alpha, dtype=np.float32)
    lib = _load_kernel() if backend in ("auto", "native") else None
    if backend == "native" and lib is None:
        raise MekitError(f"the native ensemble kernel is unavailable: {_kernel_error}")
    if lib is None and backend == "auto":
        log.warning(
            "native ensemble kernel unavailable (%s); training with the slower torch backend",
            _kernel_error,
        )
    if threads is None:
        # native: one fold per thread, so every CPU; torch: intra-op threads, which slow down
        # badly on oversubscribed CPUs, so as many as the plain loop uses (num_threads)
        threads = _usable_cpus() if lib is not None else config.num_threads

    x = torch.from_numpy(X)
    setup = _Setup(
        x2=torch.stack([x, hflip(x, models[0].spec.u_channel)], dim=1).contiguous(),
        labels=torch.from_numpy(y),
        class_w=torch.from_numpy(class_w),
        seeds=seeds,
        num_classes=num_classes,
        config=config,
        dropout=dropout,
        bn_eps=bn_eps,
        bn_momentum=bn_momentum,
        threads=threads,
    )
    bmax = max(max(len(c) for c in _batches(torch.arange(n), config.batch_size)) for n in sizes)
    params, running = torch.stack(packed), torch.stack(runs)
    trainer: _Trainer = (
        _NativeTrainer(setup, params, running, lib, bmax)
        if lib is not None
        else _TorchTrainer(setup, params, running)
    )
    used = "native" if lib is not None else "torch"
    log.info(
        "ensemble %s: %d samples, %d folds, %s backend, %d threads",
        model_name,
        len(y),
        len(folds),
        used,
        threads,
    )
    histories = _train(trainer, folds, config, bmax, progress, model_name)
    for f, model in enumerate(models):
        _unpack(model, trainer.params[f], trainer.running[f], int(trainer.steps[f]))
        model.eval()
    return EnsembleFit(models=models, histories=histories, backend=used)


def run_loso_ensemble(
    X: np.ndarray,
    y: np.ndarray,
    subjects: Sequence[str],
    ids: Sequence[str],
    labels: Sequence[str],
    config: TrainConfig,
    model_name: str = "ststnet",
    progress: bool = True,
    folds: Sequence[Fold] | None = None,
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    threads: int | None = None,
    backend: Backend = "auto",
) -> LosoResult:
    """Train every fold's model at once (see the module docstring) and predict its test set.

    X: (N, 3, 28, 28) float32 u/v/strain flow images; y: (N,) class indices into `labels`;
    subjects, ids: one string per sample (ids unique). folds: default leave-one-subject-out
    (`loso_folds(subjects)`); any protocol's folds may be passed (same rules as `run_folds`).
    Fold i uses seed `config.seed + i`, as in `run_loso`.

    model_kwargs: STSTNet options (e.g. dropout). threads: CPU threads; the native backend
    trains folds side by side, one thread each (default: all usable CPUs), so its results do
    not depend on the count; the torch backend uses them as torch intra-op threads (default
    `config.num_threads`), whose float sums may depend on it. backend: "native" (fused
    C kernel), "torch", or "auto" (native when a C compiler can build it, else torch with a
    warning). Returns a `LosoResult` like `run_loso`: every fold keeps its last epoch
    (best_epoch = epochs); histories hold the training loss per epoch.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    _validate(X, y, subjects, ids, labels)
    subj = np.asarray([str(s) for s in subjects])
    folds = list(folds) if folds is not None else loso_folds(subj)
    _validate_folds(folds, len(y))
    fitted = fit_fold_ensemble(
        X,
        y,
        folds,
        len(labels),
        config,
        model_name=model_name,
        model_kwargs=model_kwargs,
        threads=threads,
        backend=backend,
        progress=progress,
    )
    outputs = []
    # Predict on config.num_threads threads, as run_loso does (same float sums).
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    try:
        for fold, model, history in zip(folds, fitted.models, fitted.histories, strict=True):
            outputs.append(
                _FoldOutput(
                    index=fold.index,
                    test_subject=fold.test_subject,
                    probs=predict_proba(model, X[fold.test_idx]),
                    history=history,
                    best_epoch=config.epochs,
                )
            )
    finally:
        torch.set_num_threads(torch_threads)
    return _assemble(outputs, folds, y, subj, ids, labels, model_name, config)


def _train(
    trainer: _Trainer,
    folds: list[Fold],
    config: TrainConfig,
    bmax: int,
    progress: bool,
    model_name: str,
) -> list[list[dict[str, float]]]:
    """All epochs of all folds; returns per-fold histories (epoch, train_loss)."""
    n_folds = len(folds)
    generators = [torch.Generator().manual_seed(config.seed + fold.index) for fold in folds]
    train_idx = [np.asarray(fold.train_idx, dtype=np.int64) for fold in folds]
    histories: list[list[dict[str, float]]] = [[] for _ in folds]
    idx = np.zeros((n_folds, bmax), dtype=np.int32)
    flip = np.zeros((n_folds, bmax), dtype=np.uint8)
    bsz = np.zeros(n_folds, dtype=np.int32)
    threads = torch.get_num_threads()
    torch.set_num_threads(trainer.s.threads)
    bar = tqdm(
        total=config.epochs,
        desc=f"ensemble {model_name} x{n_folds}",
        unit="epoch",
        disable=not progress,
    )
    try:
        for epoch in range(1, config.epochs + 1):
            # The draws of fit(): randperm per epoch, then one rand(B) per batch for flips.
            plans = []
            for f in range(n_folds):
                g = generators[f]
                chunks = _batches(torch.randperm(len(train_idx[f]), generator=g), config.batch_size)
                flips = [
                    (torch.rand(len(c), generator=g) < 0.5).numpy()
                    if config.augment_flip
                    else np.zeros(len(c), dtype=bool)
                    for c in chunks
                ]
                plans.append((chunks, flips))
            totals = np.zeros(n_folds)
            for s in range(max(len(chunks) for chunks, _ in plans)):
                bsz[:] = 0
                for f, (chunks, flips) in enumerate(plans):
                    if s < len(chunks):
                        n = len(chunks[s])
                        idx[f, :n] = train_idx[f][chunks[s].numpy()]
                        idx[f, n:] = 0
                        flip[f, :n] = flips[s]
                        flip[f, n:] = 0
                        bsz[f] = n
                losses = trainer.step(idx, flip, bsz)
                totals += losses * bsz
            for f in range(n_folds):
                histories[f].append(
                    {"epoch": epoch, "train_loss": float(totals[f] / len(train_idx[f]))}
                )
            bar.update()
    finally:
        bar.close()
        torch.set_num_threads(threads)
    return histories
