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
 */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, REAL)

/* Pointers to the k*k input pixels around (h, w), "same" zero padding: taps outside the image point at
 * `zeros` (cin values). sign = +1 gathers x[h + dh - pad, w + dw - pad] (convolution), -1 gathers
 * x[h - dh + pad, w - dw + pad] (its transpose). */
static void FN(gather)(const REAL **taps, const REAL *x, const REAL *zeros, long b, long h, long w, long H, long W,
                       long stride, long k, int sign)
{
    const long pad = k / 2;
    for (long dh = 0; dh < k; dh++)
        for (long dw = 0; dw < k; dw++) {
            const long hh = h + sign * (dh - pad), ww = w + sign * (dw - pad);
            taps[dh * k + dw] = (hh < 0 || hh >= H || ww < 0 || ww >= W) ? zeros : x + ((b * H + hh) * W + ww) * stride;
        }
}

/* out[c] = sum_t f[t] taps[t][c], c < cin: the 3x3 case unrolled so that it vectorises over c. */
static void FN(tap_sum)(REAL *restrict out, const REAL **taps, const REAL *restrict f, long T, long cin)
{
    if (T == 9) {
        const REAL *restrict t0 = taps[0], *restrict t1 = taps[1], *restrict t2 = taps[2], *restrict t3 = taps[3],
                   *restrict t4 = taps[4], *restrict t5 = taps[5], *restrict t6 = taps[6], *restrict t7 = taps[7],
                   *restrict t8 = taps[8];
        for (long c = 0; c < cin; c++)
            out[c] = f[0] * t0[c] + f[1] * t1[c] + f[2] * t2[c] + f[3] * t3[c] + f[4] * t4[c] + f[5] * t5[c] +
                     f[6] * t6[c] + f[7] * t7[c] + f[8] * t8[c];
        return;
    }
    for (long c = 0; c < cin; c++) out[c] = 0;
    for (long t = 0; t < T; t++) {
        const REAL *restrict x = taps[t];
        for (long c = 0; c < cin; c++) out[c] += f[t] * x[c];
    }
}

/* pos = relu(z), neg = relu(-z), in this form so that the compiler emits selects: a branch on the sign of z
 * is mispredicted half the time. */
static void FN(relu_pair)(REAL *restrict pos, REAL *restrict neg, const REAL *restrict z, long count)
{
    for (long i = 0; i < count; i++) {
        const REAL v = z[i], m = -z[i];
        pos[i] = v > 0 ? v : 0;
        neg[i] = m > 0 ? m : 0;
    }
}

/* sum[0 | C | 2C | 3C + i] += pos[i], neg[i], pos[i]^2, neg[i]^2 for i < count. */
static void FN(add_sums)(REAL *restrict sum, const REAL *restrict pos, const REAL *restrict neg, long count, long C)
{
    for (long i = 0; i < count; i++) {
        sum[i] += pos[i];
        sum[C + i] += neg[i];
        sum[2 * C + i] += pos[i] * pos[i];
        sum[3 * C + i] += neg[i] * neg[i];
    }
}

/* h = [relu(z) | relu(-z)] with z = depthwise(x, f); stats (4C, zeroed by the caller) receives the sums of h
 * and h^2 over all N H W pixels (per image row in REAL, then in double).
 * Pixel by pixel, the loops run over the C = n cin channels of a pixel. With few input channels (the image's 3)
 * those loops are too short to vectorise, so a whole image row is done at a time instead, filter-major
 * ([j][w cin + c], loops over W cin values), then transposed into h's pixel-major layout. */
int FN(factorized_forward)(const REAL *restrict x, const REAL *restrict f, REAL *restrict h,
                           double *restrict stats, long N, long H, long W, long cin, long n, long k, int nthreads)
{
    const long C = n * cin, T = k * k, pad = k / 2, L = W * cin, Lp = (W + 2 * pad) * cin;
    const int by_row = cin < 8;
    const long nbuf = by_row ? 3 * n * L + (k + 1) * Lp : C;  /* z, relu(z), relu(-z), k padded rows + a zero row */
    double *part = calloc((size_t)nthreads * 4 * C, sizeof(double));
    REAL *zeros = calloc((size_t)cin, sizeof(REAL));
    if (!part || !zeros) { free(part); free(zeros); return 1; }
    int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(| : failed)
    {
#ifdef _OPENMP
        double *restrict s = part + (size_t)omp_get_thread_num() * 4 * C;
#else
        double *restrict s = part;
#endif
        REAL *sum = malloc((size_t)4 * C * sizeof(REAL)), *buf = calloc((size_t)nbuf, sizeof(REAL));
        const REAL *taps[49];
        if (!sum || !buf) failed = 1;
#pragma omp for schedule(static)
        for (long row = 0; row < N * H; row++) {
            if (failed) continue;
            const long b = row / H, y = row % H;
            REAL *hrow = h + (b * H + y) * W * 2 * C;
            memset(sum, 0, (size_t)4 * C * sizeof(REAL));
            if (by_row) {
                REAL *z = buf, *p = buf + n * L, *q = buf + 2 * n * L, *rows = buf + 3 * n * L;
                for (long dh = 0; dh < k; dh++) {  /* taps point into the k zero-padded input rows */
                    const long yy = y + dh - pad;
                    const REAL *r = rows + k * Lp;  /* above or below the image: the zero row */
                    if (yy >= 0 && yy < H) {
                        memcpy(rows + dh * Lp + pad * cin, x + (b * H + yy) * L, (size_t)L * sizeof(REAL));
                        r = rows + dh * Lp;
                    }
                    for (long dw = 0; dw < k; dw++) taps[dh * k + dw] = r + dw * cin;
                }
                for (long j = 0; j < n; j++) FN(tap_sum)(z + j * L, taps, f + j * T, T, L);
                FN(relu_pair)(p, q, z, n * L);
                for (long w = 0; w < W; w++)
                    for (long j = 0; j < n; j++) {
                        REAL *pos = hrow + w * 2 * C + j * cin;
                        for (long c = 0; c < cin; c++) {
                            pos[c] = p[j * L + w * cin + c];
                            pos[C + c] = q[j * L + w * cin + c];
                        }
                    }
                for (long w = 0; w < W; w++) FN(add_sums)(sum, hrow + w * 2 * C, hrow + w * 2 * C + C, C, C);
            } else {
                for (long w = 0; w < W; w++) {
                    FN(gather)(taps, x, zeros, b, y, w, H, W, cin, k, 1);
                    for (long j = 0; j < n; j++) FN(tap_sum)(buf + j * cin, taps, f + j * T, T, cin);
                    FN(relu_pair)(hrow + w * 2 * C, hrow + w * 2 * C + C, buf, C);
                    FN(add_sums)(sum, hrow + w * 2 * C, hrow + w * 2 * C + C, C, C);
                }
            }
            for (long i = 0; i < 4 * C; i++) s[i] += sum[i];
        }
        free(sum);
        free(buf);
    }
    for (int t = 0; t < nthreads; t++)
        for (long i = 0; i < 4 * C; i++) stats[i] += part[(size_t)t * 4 * C + i];
    free(part);
    free(zeros);
    return failed;
}

/* dz = dL/dz from dL/dh = G + alpha + beta h (BatchNorm's gradient, per channel affine in h): on z > 0 that of
 * relu(z), on z < 0 minus that of relu(-z), and 0 at z == 0 (ReLU's gradient at 0, as in PyTorch); then
 * dx = transposed depthwise convolution of dz with f. */
int FN(factorized_backward)(REAL *restrict G, const REAL *restrict h, const REAL *restrict alpha,
                            const REAL *restrict beta, const REAL *restrict f, REAL *restrict dx,
                            long N, long H, long W, long cin, long n, long k, int nthreads)
{
    const long C = n * cin, T = k * k, M = N * H * W;
    REAL *zeros = calloc((size_t)C, sizeof(REAL));
    if (!zeros) return 1;
    int failed = 0;
    /* dz overwrites the first half of G (a temporary chunk of images, see univenc.kernels.factorized_backward) */
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (long m = 0; m < M; m++) {
        REAL *restrict g = G + m * 2 * C;
        const REAL *restrict p = h + m * 2 * C, *restrict q = p + C;
        for (long i = 0; i < C; i++) {
            const REAL dp = g[i] + alpha[i] + beta[i] * p[i];
            const REAL dq = g[C + i] + alpha[C + i] + beta[C + i] * q[i];
            g[i] = p[i] > 0 ? dp : (q[i] > 0 ? -dq : 0);
        }
    }
#pragma omp parallel num_threads(nthreads) reduction(| : failed)
    {
        const REAL *taps[49];
        REAL *restrict tmp = malloc((size_t)cin * sizeof(REAL));
        if (!tmp) failed = 1;
#pragma omp for schedule(static)
        for (long row = 0; row < N * H; row++) {
            if (!tmp) continue;
            const long b = row / H, y = row % H;
            for (long w = 0; w < W; w++) {
                FN(gather)(taps, G, zeros, b, y, w, H, W, 2 * C, k, -1);
                REAL *restrict out = dx + ((b * H + y) * W + w) * cin;
                for (long j = 0; j < n; j++) {
                    const REAL *shifted[49];
                    for (long t = 0; t < T; t++) shifted[t] = taps[t] + j * cin;
                    FN(tap_sum)(j ? tmp : out, shifted, f + j * T, T, cin);
                    if (j)
                        for (long c = 0; c < cin; c++) out[c] += tmp[c];
                }
            }
        }
        free(tmp);
    }
    free(zeros);
    return failed;
}
