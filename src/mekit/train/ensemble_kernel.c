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

/* dw_px for two rows at once: taps 0..2 from r0, taps 3..5 from r1. */
INLINE void dw_px2(const float *dc, const int j, const float *r0, const float *r1,
                   v8 (*acc)[2], const int EDGE) {
    dw_px(dc, j, r0, acc, EDGE);
    dw_px(dc, j, r1, acc + 3, EDGE);
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
