/* CPU kernels of the factorized block's training step (univenc.models.FactorizedBlock).
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

/* dz = dL/dz from dL/dh = G + alpha + beta h (BatchNorm's gradient, per channel affine in h): on z > 0 that of
 * relu(z), on z < 0 minus that of relu(-z), and 0 at z == 0 (ReLU's gradient at 0, as in PyTorch); then
 * dx = transposed depthwise convolution of dz with f. */
int FN(factorized_backward)(hreal *restrict G, const hreal *restrict h, const REAL *restrict alpha,
                            const REAL *restrict beta, const REAL *restrict f, REAL *restrict dx,
                            long N, long H, long W, long cin, long n, long k, int nthreads)
{
    const long C = n * cin, T = k * k, M = N * H * W, pad = k / 2, L = W * cin, Lp = (W + 2 * pad) * cin;
    int failed = 0;
    /* dz overwrites the first half of G (a temporary chunk of images, see univenc.kernels.factorized_backward) */
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (long m = 0; m < M; m++) {
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
