/* CPU kernels of the factorized block's training step (univenc.models.FactorizedBlock), and at the end of the file
 * the VGG-11s' 2x2 max-pooling (univenc.models.MaxPool2d).
 *
 * They fuse the memory-bound work around the block's 1x1 convolution, which PyTorch would run as a dozen
 * separate passes over 10 Cin-channel tensors: the frozen depthwise convolution, the ReLU and the BatchNorm
 * statistics in the forward pass; the BatchNorm/ReLU gradient and the depthwise transposed convolution in
 * the backward pass. All arrays are channels-last and contiguous. Compiled once per REAL type by
 * univenc.kernels (-DREAL=float or double); the 1x1 convolution itself stays with PyTorch's GEMM.
 *
 * Shapes: x, dx (N, H, W, cin); filters f (n, k, k); h, G (N, H, W, 2C) with C = n cin (in the backward pass N
 * is the chunk of images that G holds): h = [relu(z), relu(-z)],
 * the naive block's 10 Cin channels, channel j*cin + c of each half from z = f_j * x_c.
 *
 * h and G are stored as `hreal`: REAL, or with -DBF16 (and REAL=float) bfloat16, for bf16 training: the 1x1
 * convolution's GEMMs then run in bfloat16 and these kernels move half the bytes. Arithmetic stays in REAL and the
 * statistics in double; values are rounded to bfloat16 (to nearest even) only where they are stored.
 *
 * k <= 7: the taps of a filter live in fixed arrays (univenc.kernels.MAX_KERNEL_SIZE leaves larger ones to PyTorch).
 */
#if defined(__GNUC__) && !defined(__clang__)
/* GCC would turn the short copy loops (cin values of a pixel) into calls to memcpy, which cost more than the copy
 * itself for cin < 32: 20% of the forward pass. */
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
/* AVX-512 rows (float and bfloat16 variants, not with -DUNIVENC_PORTABLE): the first layer's few channels, and cin
 * a multiple of 16. They compute what the portable loops compute, bit for bit (tests/test_models.py). */
#if defined(REAL_IS_FLOAT) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    !defined(UNIVENC_PORTABLE)
#include <immintrin.h>
#define FEW_CHANNELS 16  /* C = n cin up to this fits one vector: the first layer's (n = 5 filters, cin = 3 or 1) */
#endif

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#ifdef BF16
typedef uint16_t hreal;
static inline REAL ld(hreal b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }
static inline hreal st(REAL v)
{
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (hreal)(u >> 16);
}
#define FN(name) CAT(name, bf16)
#else
typedef REAL hreal;
#define ld(v) (v)
#define st(v) (v)
#define FN(name) CAT(name, REAL)
#endif

/* out[c] = sum_t f[t] taps[t][c] (plus out[c] with `add`), c < count: the 3x3 case unrolled so that it vectorises
 * over c. */
static void FN(tap_sum)(REAL *restrict out, const REAL **taps, const REAL *restrict f, long T, long count, int add)
{
    if (T == 9) {
        const REAL *restrict t0 = taps[0], *restrict t1 = taps[1], *restrict t2 = taps[2], *restrict t3 = taps[3],
                   *restrict t4 = taps[4], *restrict t5 = taps[5], *restrict t6 = taps[6], *restrict t7 = taps[7],
                   *restrict t8 = taps[8];
        for (long c = 0; c < count; c++)
            out[c] = (add ? out[c] : 0) + f[0] * t0[c] + f[1] * t1[c] + f[2] * t2[c] + f[3] * t3[c] + f[4] * t4[c] +
                     f[5] * t5[c] + f[6] * t6[c] + f[7] * t7[c] + f[8] * t8[c];
        return;
    }
    if (!add)
        for (long c = 0; c < count; c++) out[c] = 0;
    for (long t = 0; t < T; t++) {
        const REAL *restrict x = taps[t];
        for (long c = 0; c < count; c++) out[c] += f[t] * x[c];
    }
}

/* pos = relu(z), neg = relu(-z), in this form so that the compiler emits selects: a branch on the sign of z
 * is mispredicted half the time. */
static void FN(relu_pair)(hreal *restrict pos, hreal *restrict neg, const REAL *restrict z, long count)
{
    for (long i = 0; i < count; i++) {
        const REAL v = z[i], m = -z[i];
        pos[i] = st(v > 0 ? v : 0);
        neg[i] = st(m > 0 ? m : 0);
    }
}

/* s[i] += sum_w hrow[w][i], s[C2 + i] += sum_w hrow[w][i]^2 for i < C2: the sums of h and h^2 over one image
 * row of W pixels (C2 channels each), in REAL and then added to the double s. Blocks of 32 channels are summed
 * over the row in small local arrays rather than pixel by pixel into s. */
static void FN(row_sums)(double *restrict s, const hreal *restrict hrow, long W, long C2)
{
    for (long i0 = 0; i0 < C2; i0 += 32) {
        const long B = C2 - i0 < 32 ? C2 - i0 : 32;
        REAL a[32] = {0}, q[32] = {0};
        if (B == 32)
            for (long w = 0; w < W; w++) {
                const hreal *restrict v = hrow + w * C2 + i0;
                for (long i = 0; i < 32; i++) {
                    const REAL e = ld(v[i]);
                    a[i] += e;
                    q[i] += e * e;
                }
            }
        else
            for (long w = 0; w < W; w++) {
                const hreal *restrict v = hrow + w * C2 + i0;
                for (long i = 0; i < B; i++) {
                    const REAL e = ld(v[i]);
                    a[i] += e;
                    q[i] += e * e;
                }
            }
        for (long i = 0; i < B; i++) {
            s[i0 + i] += a[i];
            s[C2 + i0 + i] += q[i];
        }
    }
}

#ifdef FEW_CHANNELS
/* One image row of h and its sums when C = n cin <= 16 (the image's channels), with all C values of a pixel in one
 * vector, lane l = j cin + c: z = sum_t F[t] X_t, X_t the pixel's tap t (its cin values, lane l reading c = l % cin),
 * F[t][l] = f_j[t]; then h's pixel is [relu(z) | relu(-z)], rounded as st() rounds, and the row's sums of h and h^2
 * are kept in four vectors, added to s (as row_sums adds them) at the row's end. The same operations in the same
 * order as tap_sum, relu_pair and row_sums, so the same h and statistics, bit for bit; those loops run over the cin
 * values of a pixel, 3 long, and took 2-3x the time per value of the wider layers. */
static inline __m512 FN(few_channels_z)(const REAL **taps, const __m512 *F, __m512i lane_c, __mmask16 in, long off,
                                        long T)
{
    __m512 z = _mm512_setzero_ps();
    for (long t = 0; t < T; t++)
        z = _mm512_fmadd_ps(F[t], _mm512_permutexvar_ps(lane_c, _mm512_maskz_loadu_ps(in, taps[t] + off)), z);
    return z;
}

/* 16 stored values as floats, and a float rounded to what storing it as hreal keeps (both as ld() and st() do). */
static inline __m512 FN(load16)(const hreal *p)
{
#ifdef BF16
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
#else
    return _mm512_loadu_ps(p);
#endif
}

static inline __m512 FN(rounded16)(__m512 v)
{
#ifdef BF16
    __m512i u = _mm512_castps_si512(v);
    u = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF),
                                             _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
    return _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32(-65536)));
#else
    return v;
#endif
}

/* Stores the lanes of v in mask, floats that hreal holds exactly (loaded or rounded16 ones, their max, or plus 0),
 * as hreal. */
static inline void FN(store16)(hreal *p, __mmask16 mask, __m512 v)
{
#ifdef BF16
    _mm256_mask_storeu_epi16(p, mask, _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(v), 16)));
#else
    _mm512_mask_storeu_ps(p, mask, v);
#endif
}

/* pos = relu(z), neg = relu(-z) of one pixel's C values (lanes beyond C masked) stored at pix and pix + C as hreal,
 * rounded as st() rounds; returns them as ld() reads them back, for the statistics. */
static inline void FN(store_pair)(hreal *pix, long C, __mmask16 out, __m512 z, __m512 *hp)
{
    const __m512 zero = _mm512_setzero_ps();
    hp[0] = FN(rounded16)(_mm512_max_ps(z, zero));
    hp[1] = FN(rounded16)(_mm512_max_ps(_mm512_sub_ps(zero, z), zero));
    FN(store16)(pix, out, hp[0]);
    FN(store16)(pix + C, out, hp[1]);
}

/* s[i] += sum[0][i], s[C + i] += sum[1][i], s[2C + i] += sq[0][i], s[3C + i] += sq[1][i] for i < count: a row's
 * sums of h and h^2 (float) added to the statistics' (double), as row_sums adds them. */
static inline void add_sums(double *s, long C, long count, const __m512 *sum, const __m512 *sq)
{
    float a[4][16];
    _mm512_storeu_ps(a[0], sum[0]);
    _mm512_storeu_ps(a[1], sum[1]);
    _mm512_storeu_ps(a[2], sq[0]);
    _mm512_storeu_ps(a[3], sq[1]);
    for (long i = 0; i < count; i++) {
        s[i] += a[0][i];
        s[C + i] += a[1][i];
        s[2 * C + i] += a[2][i];
        s[3 * C + i] += a[3][i];
    }
}

/* One image row of h and its sums when cin is a multiple of 16: for each filter j and block of 16 input channels,
 * z = sum_t f_j[t] x_t over the row's pixels (four at a time: one chain of T dependent FMAs is latency-bound), its
 * ReLU pair stored and summed over the row in four vectors, added to s at the block's end. The same operations in
 * the same order as tap_sum, relu_pair and row_sums, so the same h and statistics, bit for bit, without their
 * three passes over the row. */
static void FN(wide_row)(hreal *restrict hrow, double *restrict s, const REAL **taps, const REAL *f, long W, long cin,
                         long n, long T)
{
    const long C = n * cin;
    const __m512 zero = _mm512_setzero_ps();
    for (long j = 0; j < n; j++)
        for (long c0 = 0; c0 < cin; c0 += 16) {
            __m512 sum[2] = {zero, zero}, sq[2] = {zero, zero};
            for (long w0 = 0; w0 < W; w0 += 4) {
                const long m = W - w0 < 4 ? W - w0 : 4;
                __m512 z[4] = {zero, zero, zero, zero};
                if (m == 4)  /* four named chains, kept in registers */
                    for (long t = 0; t < T; t++) {
                        const __m512 ft = _mm512_set1_ps(f[j * T + t]);
                        const REAL *x = taps[t] + w0 * cin + c0;
                        z[0] = _mm512_fmadd_ps(ft, _mm512_loadu_ps(x), z[0]);
                        z[1] = _mm512_fmadd_ps(ft, _mm512_loadu_ps(x + cin), z[1]);
                        z[2] = _mm512_fmadd_ps(ft, _mm512_loadu_ps(x + 2 * cin), z[2]);
                        z[3] = _mm512_fmadd_ps(ft, _mm512_loadu_ps(x + 3 * cin), z[3]);
                    }
                else
                    for (long t = 0; t < T; t++) {
                        const __m512 ft = _mm512_set1_ps(f[j * T + t]);
                        for (long i = 0; i < m; i++)
                            z[i] = _mm512_fmadd_ps(ft, _mm512_loadu_ps(taps[t] + (w0 + i) * cin + c0), z[i]);
                    }
                for (long i = 0; i < m; i++) {
                    __m512 hp[2];
                    FN(store_pair)(hrow + (w0 + i) * 2 * C + j * cin + c0, C, 0xFFFF, z[i], hp);
                    for (int half = 0; half < 2; half++) {
                        sum[half] = _mm512_add_ps(sum[half], hp[half]);
                        sq[half] = _mm512_fmadd_ps(hp[half], hp[half], sq[half]);
                    }
                }
            }
            add_sums(s + j * cin + c0, C, 16, sum, sq);
        }
}

static void FN(few_channels_row)(hreal *restrict hrow, double *restrict s, const REAL **taps, const __m512 *F,
                                 __m512i lane_c, long W, long cin, long C, long T)
{
    const __mmask16 in = (__mmask16)((1u << cin) - 1), out = (__mmask16)((1u << C) - 1);
    const __m512 zero = _mm512_setzero_ps();
    __m512 sum[2] = {zero, zero}, sq[2] = {zero, zero};
    for (long w0 = 0; w0 < W; w0 += 4) {
        __m512 z[4];  /* four pixels' chains at once: one chain of T dependent FMAs is latency-bound */
        const long m = W - w0 < 4 ? W - w0 : 4;
        for (long i = 0; i < m; i++) z[i] = FN(few_channels_z)(taps, F, lane_c, in, (w0 + i) * cin, T);
        for (long i = 0; i < m; i++) {
            __m512 hp[2];
            FN(store_pair)(hrow + (w0 + i) * 2 * C, C, out, z[i], hp);
            for (int half = 0; half < 2; half++) {
                sum[half] = _mm512_add_ps(sum[half], hp[half]);
                sq[half] = _mm512_fmadd_ps(hp[half], hp[half], sq[half]);
            }
        }
    }
    add_sums(s, C, C, sum, sq);
}
#endif

/* 1 where this build has the AVX-512 rows. */
int FN(vector_rows)(void)
{
#ifdef FEW_CHANNELS
    return 1;
#else
    return 0;
#endif
}

/* h = [relu(z) | relu(-z)] with z = depthwise(x, f), and stats (2, 2C): the mean and the (biased) variance of each
 * of h's channels over all N H W pixels, from sums per image row in REAL, then in double.
 * One image row at a time: z is computed filter-major, z[j][w cin + c], from k zero-padded input rows, so that
 * its loops run over whole rows of W cin values (with few input channels, such as the image's 3, loops over
 * the cin channels of a pixel would be too short to vectorise); its ReLU pair is formed (and rounded to hreal)
 * over whole rows too, then copied to h's pixel-major layout. */
int FN(factorized_forward)(const REAL *restrict x, const REAL *restrict f, hreal *restrict h,
                           double *restrict stats, long N, long H, long W, long cin, long n, long k, int nthreads)
{
    const long C = n * cin, T = k * k, pad = k / 2, L = W * cin, Lp = (W + 2 * pad) * cin;
    double *part = calloc((size_t)nthreads * 4 * C, sizeof(double));
    if (!part) return 1;
    int failed = 0;
#ifdef FEW_CHANNELS
    __m512 F[49];  /* few_channels_row's coefficients: F[t][j cin + c] = f_j[t], 0 beyond C */
    float lanes[FEW_CHANNELS] = {0};
    int32_t which[FEW_CHANNELS] = {0};  /* and the input channel of each lane, c = l % cin */
    if (C <= FEW_CHANNELS) {
        for (long t = 0; t < T; t++) {
            for (long l = 0; l < C; l++) lanes[l] = f[(l / cin) * T + t];
            F[t] = _mm512_loadu_ps(lanes);
        }
        for (long l = 0; l < C; l++) which[l] = (int32_t)(l % cin);
    }
    const __m512i lane_c = _mm512_loadu_si512(which);
#endif
#pragma omp parallel num_threads(nthreads) reduction(| : failed)
    {
#ifdef _OPENMP
        double *restrict s = part + (size_t)omp_get_thread_num() * 4 * C;
#else
        double *restrict s = part;
#endif
        REAL *buf = calloc((size_t)(n * L + (k + 1) * Lp), sizeof(REAL));  /* z; k padded rows and a zero row */
        hreal *pair = malloc((size_t)(2 * n * L) * sizeof(hreal));  /* relu(z), relu(-z), filter-major (bf16) */
        long held[7] = {-1, -1, -1, -1, -1, -1, -1};  /* the input row (b H + yy) each padded slot holds */
        const REAL *taps[49];
        if (!buf || !pair) failed = 1;
#pragma omp for schedule(static)
        for (long row = 0; row < N * H; row++) {
            if (failed) continue;
            const long b = row / H, y = row % H;
            REAL *z = buf, *rows = buf + n * L;
            hreal *hrow = h + row * W * 2 * C;
            for (long dh = 0; dh < k; dh++) {  /* taps point into padded input rows, each copied once per thread */
                const long yy = y + dh - pad, slot = (yy + pad) % k;  /* k consecutive rows: distinct slots */
                const REAL *r = rows + k * Lp;  /* above or below the image: the zero row */
                if (yy >= 0 && yy < H) {
                    r = rows + slot * Lp;
                    if (held[slot] != b * H + yy) {
                        memcpy(rows + slot * Lp + pad * cin, x + (b * H + yy) * L, (size_t)L * sizeof(REAL));
                        held[slot] = b * H + yy;
                    }
                }
                for (long dw = 0; dw < k; dw++) taps[dh * k + dw] = r + dw * cin;
            }
#ifdef FEW_CHANNELS
            if (C <= FEW_CHANNELS) {
                FN(few_channels_row)(hrow, s, taps, F, lane_c, W, cin, C, T);
                continue;
            }
            if (cin % 16 == 0) {
                FN(wide_row)(hrow, s, taps, f, W, cin, n, T);
                continue;
            }
#endif
            for (long j = 0; j < n; j++) FN(tap_sum)(z + j * L, taps, f + j * T, T, L, 0);
#ifdef BF16  /* the rounding vectorises over whole rows, not over the cin values of a pixel */
            FN(relu_pair)(pair, pair + n * L, z, n * L);
            for (long w = 0; w < W; w++)
                for (long j = 0; j < n; j++) {
                    hreal *restrict pos = hrow + w * 2 * C + j * cin, *restrict neg = pos + C;
                    const hreal *restrict zp = pair + j * L + w * cin, *restrict zn = zp + n * L;
                    for (long c = 0; c < cin; c++) {
                        pos[c] = zp[c];
                        neg[c] = zn[c];
                    }
                }
#else
            for (long w = 0; w < W; w++)
                for (long j = 0; j < n; j++)
                    FN(relu_pair)(hrow + w * 2 * C + j * cin, hrow + w * 2 * C + C + j * cin, z + j * L + w * cin, cin);
#endif
            FN(row_sums)(s, hrow, W, 2 * C);
        }
        free(buf);
        free(pair);
    }
    const double M = (double)N * H * W;
    for (long i = 0; i < 2 * C; i++) {
        double sum = 0, sq = 0;
        for (int t = 0; t < nthreads; t++) {
            sum += part[(size_t)t * 4 * C + i];
            sq += part[(size_t)t * 4 * C + 2 * C + i];
        }
        const double var = sq / M - (sum / M) * (sum / M);
        stats[i] = sum / M;
        stats[2 * C + i] = var > 0 ? var : 0;
    }
    free(part);
    return failed;
}

#ifdef FEW_CHANNELS
/* dz of one dz row (W pixels of G and h, 2C channels each) into n zero-padded filter-major REAL rows (rows + i Lp,
 * from (pad) cin on): what the backward kernel's first pass stores in G and its second pass reads back, in one pass,
 * 16 channels at a time (cin a multiple of 16). */
static void FN(wide_dz_rows)(REAL *rows, const hreal *G, const hreal *h, const REAL *alpha, const REAL *beta, long W,
                             long cin, long n, long pad, long Lp)
{
    const long C = n * cin;
    const __m512 zero = _mm512_setzero_ps(), sign = _mm512_set1_ps(-0.0f);
    for (long w = 0; w < W; w++)
        for (long i = 0; i < C; i += 16) {
            const hreal *g = G + w * 2 * C + i, *p = h + w * 2 * C + i;
            const __m512 hp = FN(load16)(p), hq = FN(load16)(p + C);
            const __m512 dp = _mm512_fmadd_ps(_mm512_loadu_ps(beta + i), hp,
                                              _mm512_add_ps(FN(load16)(g), _mm512_loadu_ps(alpha + i)));
            const __m512 dq = _mm512_fmadd_ps(_mm512_loadu_ps(beta + C + i), hq,
                                              _mm512_add_ps(FN(load16)(g + C), _mm512_loadu_ps(alpha + C + i)));
            __m512 dz = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(hq, zero, _CMP_GT_OQ), zero,
                                             _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(dq),
                                                                                  _mm512_castps_si512(sign))));
            dz = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(hp, zero, _CMP_GT_OQ), dz, dp);
            const long j = i / cin, c = i % cin;
            _mm512_storeu_ps(rows + j * Lp + (w + pad) * cin + c, FN(rounded16)(dz));
        }
}

/* One row of dx (cin a multiple of 16): dx[w][c] = sum_j sum_(dh, dw) f_j[dh k + dw] P_j(yy)[(w - dw + 2 pad) cin + c]
 * with P_j(yy) = slot[dh] + j Lp (the dz rows filled by wide_dz_rows) or the zero row outside the image; the chain
 * of FMAs in tap_sum's order (j, then the taps), four pixels at a time. */
static void FN(wide_dx_row)(REAL *restrict dx, const REAL **slot, const REAL *zero_row, const REAL *f, long W,
                            long cin, long n, long k, long Lp)
{
    const long T = k * k, pad = k / 2;
    for (long c0 = 0; c0 < cin; c0 += 16)
        for (long w0 = 0; w0 < W; w0 += 4) {
            const long m = W - w0 < 4 ? W - w0 : 4;
            __m512 z[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (long j = 0; j < n; j++)
                for (long dh = 0; dh < k; dh++) {
                    const REAL *r = (slot[dh] ? slot[dh] + j * Lp : zero_row) + w0 * cin + c0;
                    for (long dw = 0; dw < k; dw++) {
                        const __m512 ft = _mm512_set1_ps(f[j * T + dh * k + dw]);
                        const REAL *x = r + (2 * pad - dw) * cin;
                        if (m == 4) {
                            z[0] = _mm512_fmadd_ps(ft, _mm512_loadu_ps(x), z[0]);
                            z[1] = _mm512_fmadd_ps(ft, _mm512_loadu_ps(x + cin), z[1]);
                            z[2] = _mm512_fmadd_ps(ft, _mm512_loadu_ps(x + 2 * cin), z[2]);
                            z[3] = _mm512_fmadd_ps(ft, _mm512_loadu_ps(x + 3 * cin), z[3]);
                        } else
                            for (long i = 0; i < m; i++)
                                z[i] = _mm512_fmadd_ps(ft, _mm512_loadu_ps(x + i * cin), z[i]);
                    }
                }
            for (long i = 0; i < m; i++) _mm512_storeu_ps(dx + (w0 + i) * cin + c0, z[i]);
        }
}
#endif

/* dz = dL/dz from dL/dh = G + alpha + beta h (BatchNorm's gradient, per channel affine in h): on z > 0 that of
 * relu(z), on z < 0 minus that of relu(-z), and 0 at z == 0 (ReLU's gradient at 0, as in PyTorch); then
 * dx = transposed depthwise convolution of dz with f. */
int FN(factorized_backward)(hreal *restrict G, const hreal *restrict h, const REAL *restrict alpha,
                            const REAL *restrict beta, const REAL *restrict f, REAL *restrict dx,
                            long N, long H, long W, long cin, long n, long k, int nthreads)
{
    const long C = n * cin, T = k * k, M = N * H * W, pad = k / 2, L = W * cin, Lp = (W + 2 * pad) * cin;
    int failed = 0;
#ifdef FEW_CHANNELS
    const int wide = cin % 16 == 0;  /* wide_dz_rows and wide_dx_row instead of both passes */
#else
    const int wide = 0;
#endif
    /* dz overwrites the first half of G (a temporary chunk of images, see univenc.kernels.factorized_backward) */
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (long m = 0; m < (wide ? 0 : M); m++) {
        hreal *restrict g = G + m * 2 * C;
        const hreal *restrict p = h + m * 2 * C, *restrict q = p + C;
        for (long i = 0; i < C; i++) {
            const REAL pi = ld(p[i]), qi = ld(q[i]);
            const REAL dp = ld(g[i]) + alpha[i] + beta[i] * pi;
            const REAL dq = ld(g[C + i]) + alpha[C + i] + beta[C + i] * qi;
            g[i] = st(pi > 0 ? dp : (qi > 0 ? -dq : 0));
        }
    }
    /* dx = the transposed depthwise convolution of dz, one image row at a time as in the forward pass: dz's rows
     * are copied (to REAL) into zero-padded filter-major rows, P_j[(w + pad) cin + c] = dz[w][j cin + c], each
     * row once per thread, and dx's row is sum_j sum_(dh, dw) f_j[dh, dw] P_j(y - dh + pad)[(w - dw + 2 pad) cin
     * + c], loops over whole rows of W cin values. */
#pragma omp parallel num_threads(nthreads) reduction(| : failed)
    {
        REAL *rows = calloc((size_t)((k * n + 1) * Lp), sizeof(REAL));  /* k slots of n padded rows; a zero row */
        long held[7] = {-1, -1, -1, -1, -1, -1, -1};  /* the dz row (b H + yy) each slot holds */
        const REAL *taps[49];
        if (!rows) failed = 1;
#pragma omp for schedule(static)
        for (long row = 0; row < N * H; row++) {
            if (failed) continue;
            const long b = row / H, y = row % H;
#ifdef FEW_CHANNELS
            if (wide) {
                const REAL *slot_rows[7];
                for (long dh = 0; dh < k; dh++) {
                    const long yy = y - dh + pad, slot = (yy + pad) % k;
                    slot_rows[dh] = NULL;  /* outside the image */
                    if (yy >= 0 && yy < H) {
                        slot_rows[dh] = rows + slot * n * Lp;
                        if (held[slot] != b * H + yy) {
                            const long at = (b * H + yy) * W * 2 * C;
                            FN(wide_dz_rows)(rows + slot * n * Lp, G + at, h + at, alpha, beta, W, cin, n, pad, Lp);
                            held[slot] = b * H + yy;
                        }
                    }
                }
                FN(wide_dx_row)(dx + row * L, slot_rows, rows + k * n * Lp, f, W, cin, n, k, Lp);
                continue;
            }
#endif
            for (long j = 0; j < n; j++) {
                for (long dh = 0; dh < k; dh++) {
                    const long yy = y - dh + pad, slot = (yy + pad) % k;
                    const REAL *r = rows + k * n * Lp;  /* outside the image: the zero row */
                    if (yy >= 0 && yy < H) {
                        r = rows + (slot * n + j) * Lp;
                        if (held[slot] != b * H + yy) {  /* fills the slot's n rows once (at j == 0) */
                            const hreal *g = G + (b * H + yy) * W * 2 * C;
                            for (long w = 0; w < W; w++)
                                for (long i = 0; i < n; i++) {
                                    REAL *restrict to = rows + (slot * n + i) * Lp + (w + pad) * cin;
                                    const hreal *restrict from = g + w * 2 * C + i * cin;
                                    for (long c = 0; c < cin; c++) to[c] = ld(from[c]);
                                }
                            held[slot] = b * H + yy;
                        }
                    }
                    for (long dw = 0; dw < k; dw++) taps[dh * k + dw] = r + (2 * pad - dw) * cin;
                }
                FN(tap_sum)(dx + row * L, taps, f + j * T, T, L, j > 0);
            }
        }
        free(rows);
    }
    return failed;
}

/* 2x2 max-pooling with stride 2 (the VGG-11s' nn.MaxPool2d(2), univenc.models.MaxPool2d), channels-last x (N, H, W,
 * C) with even H and W, stored as hreal (float32, or bfloat16 in the bf16 build). PyTorch's rule, as its CPU kernel
 * applies it: the window's positions in order (0, 0), (0, 1), (1, 0), (1, 1), and a later one is taken where it is
 * greater than the maximum so far or NaN; y is that value and `which` its position (0-3). PyTorch's backward adds
 * each dy to a zeroed dx at that position; here dx's four positions are each written once, dy + 0 (as 0 + dy turns
 * -0 into +0) where taken and 0 elsewhere: the same values, without the pass that zeroes dx. */
#ifdef FEW_CHANNELS
/* 16 channels of one window, C a multiple of 16 (GCC vectorises the portable loop with 64 uint8 lanes, so with
 * C = 16 it ran one channel at a time). */
static inline void FN(pool16)(const hreal *p0, const hreal *p1, const hreal *p2, const hreal *p3, hreal *out,
                              uint8_t *at)
{
    const __m512 v[4] = {FN(load16)(p0), FN(load16)(p1), FN(load16)(p2), FN(load16)(p3)};
    __m512 m = v[0];
    __m512i k = _mm512_setzero_si512();
    for (int i = 1; i < 4; i++) {
        const __mmask16 take = _mm512_cmp_ps_mask(v[i], m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v[i], v[i], _CMP_UNORD_Q);
        m = _mm512_mask_blend_ps(take, m, v[i]);
        k = _mm512_mask_blend_epi32(take, k, _mm512_set1_epi32(i));
    }
    FN(store16)(out, 0xFFFF, m);
    _mm_storeu_si128((__m128i *)at, _mm512_cvtepi32_epi8(k));
}

static inline void FN(unpool16)(const hreal *g, const uint8_t *at, hreal *q0, hreal *q1, hreal *q2, hreal *q3)
{
    const __m512 zero = _mm512_setzero_ps(), v = _mm512_add_ps(FN(load16)(g), zero);
    const __m512i k = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)at));
    hreal *q[4] = {q0, q1, q2, q3};
    for (int i = 0; i < 4; i++)
        FN(store16)(q[i], 0xFFFF, _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(i)), zero, v));
}
#endif

int FN(maxpool2_forward)(const hreal *restrict x, hreal *restrict y, uint8_t *restrict which, long N, long H, long W,
                         long C, int nthreads)
{
    const long OH = H / 2, OW = W / 2;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (long r = 0; r < N * OH; r++) {
        const long b = r / OH, oh = r % OH;
        for (long ow = 0; ow < OW; ow++) {
            const hreal *restrict p0 = x + ((b * H + 2 * oh) * W + 2 * ow) * C, *restrict p1 = p0 + C,
                        *restrict p2 = p0 + W * C, *restrict p3 = p2 + C;
            hreal *restrict out = y + (r * OW + ow) * C;
            uint8_t *restrict at = which + (r * OW + ow) * C;
#ifdef FEW_CHANNELS
            if (C % 16 == 0) {
                for (long c = 0; c < C; c += 16) FN(pool16)(p0 + c, p1 + c, p2 + c, p3 + c, out + c, at + c);
                continue;
            }
#endif
            for (long c = 0; c < C; c++) {
                const REAL v0 = ld(p0[c]), v1 = ld(p1[c]), v2 = ld(p2[c]), v3 = ld(p3[c]);
                REAL m = v0;  /* PyTorch starts from -inf at position 0: the same value and position */
                uint8_t k = 0;
                if (v1 > m || v1 != v1) { m = v1; k = 1; }
                if (v2 > m || v2 != v2) { m = v2; k = 2; }
                if (v3 > m || v3 != v3) { m = v3; k = 3; }
                out[c] = st(m);  /* exact: m is a stored value */
                at[c] = k;
            }
        }
    }
    return 0;
}

int FN(maxpool2_backward)(const hreal *restrict dy, const uint8_t *restrict which, hreal *restrict dx, long N,
                          long H, long W, long C, int nthreads)
{
    const long OH = H / 2, OW = W / 2;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (long r = 0; r < N * OH; r++) {
        const long b = r / OH, oh = r % OH;
        for (long ow = 0; ow < OW; ow++) {
            hreal *restrict q0 = dx + ((b * H + 2 * oh) * W + 2 * ow) * C, *restrict q1 = q0 + C,
                  *restrict q2 = q0 + W * C, *restrict q3 = q2 + C;
            const hreal *restrict g = dy + (r * OW + ow) * C;
            const uint8_t *restrict at = which + (r * OW + ow) * C;
#ifdef FEW_CHANNELS
            if (C % 16 == 0) {
                for (long c = 0; c < C; c += 16) FN(unpool16)(g + c, at + c, q0 + c, q1 + c, q2 + c, q3 + c);
                continue;
            }
#endif
            for (long c = 0; c < C; c++) {
                const REAL v = ld(g[c]) + (REAL)0, zero = 0;
                const uint8_t k = at[c];
                q0[c] = st(k == 0 ? v : zero);
                q1[c] = st(k == 1 ? v : zero);
                q2[c] = st(k == 2 ? v : zero);
                q3[c] = st(k == 3 ? v : zero);
            }
        }
    }
    return 0;
}
