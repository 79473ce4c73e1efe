//! CUDA C source of the kernels, compiled by NVRTC when [`super::GpuKernels`]
//! starts. Each kernel repeats the arithmetic of its CPU twin step for step:
//!
//! - `resize_h` + `resize_v_normalise`: `Frame::rgb_row` (YUV in fixed point),
//!   `resize::resize_rgb8_antialias` (int16-style weights from
//!   `resize::antialias_table`, integer sums, round by bias and shift) and
//!   `preprocess::normalise_chw`.
//! - `sigmoid_f32`, `masks_upsample`, `alpha_from_masks`:
//!   `postprocess::mask_from_logits` and `render::alpha_from_logits`.
//!
//! Float operations use the `_rn` intrinsics: NVRTC would otherwise be free to
//! fuse `a * b + c` into one FMA, whose single rounding differs from the two
//! roundings Rust performs.

/// Kernel names, in the order [`super::GpuKernels`] loads them.
pub const NAMES: [&str; 5] = [
    "resize_h",
    "resize_v_normalise",
    "sigmoid_f32",
    "masks_upsample",
    "alpha_from_masks",
];

/// Source formats of `resize_h`.
pub const FMT_PACKED_RGB: i32 = 0;
pub const FMT_PACKED_YUV: i32 = 1;
pub const FMT_I420: i32 = 2;
pub const FMT_NV12: i32 = 3;

pub const SOURCE: &str = r#"
typedef unsigned char u8;
typedef long long i64;

#define FMT_PACKED_RGB 0
#define FMT_PACKED_YUV 1
#define FMT_I420 2
#define FMT_NV12 3

__device__ __forceinline__ int clamp_u8(int v) {
    return v < 0 ? 0 : (v > 255 ? 255 : v);
}

/* resize.rs round_shift: (acc >> precision).clamp(0, 255); >> is arithmetic. */
__device__ __forceinline__ int round_shift(i64 acc, int precision) {
    i64 v = acc >> precision;
    return v < 0 ? 0 : (v > 255 ? 255 : (int)v);
}

/* frame.rs yuv_to_rgb: limited range, 16 fractional bits. All terms fit in
   32 bits: |(255 - 16) * 76309| + |138438 * 128| < 2^31. */
__device__ __forceinline__ void yuv_to_rgb(int y, int u, int v, int ky, int rv, int gu,
                                           int gv, int bu, int* rgb) {
    int c = (y - 16) * ky;
    int d = u - 128;
    int e = v - 128;
    rgb[0] = clamp_u8((c + rv * e + 32768) >> 16);
    rgb[1] = clamp_u8((c - gu * d - gv * e + 32768) >> 16);
    rgb[2] = clamp_u8((c + bu * d + 32768) >> 16);
}

/* Pixel (x, y) of the source as RGB, as Frame::rgb_row reads it. Planes live in
   one buffer at byte offsets off0..off2 with strides s0..s2. Packed: c0..c2
   are the byte offsets of R, G, B (or Y, U, V) inside a pixel of bpp bytes. */
__device__ __forceinline__ void read_rgb(const u8* src, int fmt, int x, int y, i64 off0,
                                         i64 s0, i64 off1, i64 s1, i64 off2, i64 s2,
                                         int bpp, int c0, int c1, int c2, int ky, int rv,
                                         int gu, int gv, int bu, int* rgb) {
    if (fmt == FMT_PACKED_RGB || fmt == FMT_PACKED_YUV) {
        const u8* p = src + off0 + (i64)y * s0 + (i64)x * bpp;
        if (fmt == FMT_PACKED_RGB) {
            rgb[0] = p[c0];
            rgb[1] = p[c1];
            rgb[2] = p[c2];
        } else {
            yuv_to_rgb(p[c0], p[c1], p[c2], ky, rv, gu, gv, bu, rgb);
        }
    } else if (fmt == FMT_I420) {
        int yy = src[off0 + (i64)y * s0 + x];
        int u = src[off1 + (i64)(y / 2) * s1 + x / 2];
        int v = src[off2 + (i64)(y / 2) * s2 + x / 2];
        yuv_to_rgb(yy, u, v, ky, rv, gu, gv, bu, rgb);
    } else {
        int yy = src[off0 + (i64)y * s0 + x];
        const u8* c = src + off1 + (i64)(y / 2) * s1 + (i64)(x / 2) * 2;
        yuv_to_rgb(yy, c[0], c[1], ky, rv, gu, gv, bu, rgb);
    }
}

/* Horizontal pass: source rows (any format) to in_h x out_w interleaved RGB8.
   One thread per output pixel; grid (x, y) over (out_w, in_h). */
extern "C" __global__ void resize_h(const u8* src, int fmt, i64 off0, i64 s0, i64 off1,
                                    i64 s1, i64 off2, i64 s2, int bpp, int c0, int c1, int c2,
                                    int ky, int rv, int gu, int gv, int bu, int in_h, int out_w,
                                    const int* starts, const int* counts, const int* weights,
                                    int max_taps, int precision, u8* mid) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= in_h) return;
    i64 bias = (i64)1 << (precision - 1);
    i64 acc0 = bias, acc1 = bias, acc2 = bias;
    int start = starts[x];
    int n = counts[x];
    const int* w = weights + (i64)x * max_taps;
    for (int j = 0; j < n; ++j) {
        int rgb[3];
        read_rgb(src, fmt, start + j, y, off0, s0, off1, s1, off2, s2, bpp, c0, c1, c2, ky,
                 rv, gu, gv, bu, rgb);
        i64 wj = w[j];
        acc0 += (i64)rgb[0] * wj;
        acc1 += (i64)rgb[1] * wj;
        acc2 += (i64)rgb[2] * wj;
    }
    u8* o = mid + ((i64)y * out_w + x) * 3;
    o[0] = (u8)round_shift(acc0, precision);
    o[1] = (u8)round_shift(acc1, precision);
    o[2] = (u8)round_shift(acc2, precision);
}

/* Vertical pass over mid (in_h x out_w RGB8) to out_h rows, then
   (v - mean) / std per channel into a CHW float tensor of out_w x out_h. */
extern "C" __global__ void resize_v_normalise(const u8* mid, int out_w, int out_h,
                                              const int* starts, const int* counts,
                                              const int* weights, int max_taps, int precision,
                                              float mean0, float mean1, float mean2,
                                              float std0, float std1, float std2, float* out) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    i64 bias = (i64)1 << (precision - 1);
    i64 acc0 = bias, acc1 = bias, acc2 = bias;
    int start = starts[y];
    int n = counts[y];
    const int* w = weights + (i64)y * max_taps;
    for (int j = 0; j < n; ++j) {
        const u8* p = mid + ((i64)(start + j) * out_w + x) * 3;
        i64 wj = w[j];
        acc0 += (i64)p[0] * wj;
        acc1 += (i64)p[1] * wj;
        acc2 += (i64)p[2] * wj;
    }
    i64 plane = (i64)out_w * out_h;
    i64 o = (i64)y * out_w + x;
    out[o] = __fdiv_rn(__fsub_rn((float)round_shift(acc0, precision), mean0), std0);
    out[plane + o] = __fdiv_rn(__fsub_rn((float)round_shift(acc1, precision), mean1), std1);
    out[2 * plane + o] = __fdiv_rn(__fsub_rn((float)round_shift(acc2, precision), mean2), std2);
}

/* postprocess.rs sigmoid: 1 / (1 + exp(-x)). exp in double, rounded once to
   float, is as close to the host's expf as the device gets (libm's expf is
   within 0.502 ulp, so the two may differ by one ulp on rare inputs). */
extern "C" __global__ void sigmoid_f32(const float* in, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float e = (float)exp(-(double)in[i]);
    out[i] = __fdiv_rn(1.0f, __fadd_rn(1.0f, e));
}

/* resize.rs resize_plane_bilinear at pixel (x, y) of plane p (mw wide):
   ((1 - ly) * top + ly * bottom), top/bottom = (1 - lx) * a + lx * b. */
__device__ __forceinline__ float bilinear(const float* p, int mw, int x, int y,
                                          const int* x0, const int* x1, const float* fx,
                                          const int* y0, const int* y1, const float* fy) {
    const float* r0 = p + (i64)y0[y] * mw;
    const float* r1 = p + (i64)y1[y] * mw;
    int a = x0[x], b = x1[x];
    float lx = fx[x], ly = fy[y];
    float kx = __fsub_rn(1.0f, lx), ky = __fsub_rn(1.0f, ly);
    float top = __fadd_rn(__fmul_rn(kx, r0[a]), __fmul_rn(lx, r0[b]));
    float bottom = __fadd_rn(__fmul_rn(kx, r1[a]), __fmul_rn(lx, r1[b]));
    return __fadd_rn(__fmul_rn(ky, top), __fmul_rn(ly, bottom));
}

/* n probability planes (mw x mh) to n binary masks (w x h, 255 or 0);
   grid (x, y, z) over (w, h, n). */
extern "C" __global__ void masks_upsample(const float* probs, int mw, int mh, int w, int h,
                                          int n, const int* x0, const int* x1, const float* fx,
                                          const int* y0, const int* y1, const float* fy,
                                          float threshold, u8* out) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int k = blockIdx.z;
    if (x >= w || y >= h || k >= n) return;
    const float* p = probs + (i64)k * mw * mh;
    float v = bilinear(p, mw, x, y, x0, x1, fx, y0, y1, fy);
    out[((i64)k * h + y) * w + x] = v > threshold ? 255 : 0;
}

/* The union of n masks written into the alpha byte (offset alpha) of every
   pixel of a packed frame (bpp bytes a pixel, stride bytes a row); the other
   bytes are not touched. n = 0 clears alpha, as the CPU union of no masks. */
extern "C" __global__ void alpha_from_masks(const float* probs, int mw, int mh, int w, int h,
                                            int n, const int* x0, const int* x1,
                                            const float* fx, const int* y0, const int* y1,
                                            const float* fy, float threshold, u8* frame,
                                            i64 stride, int bpp, int alpha) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    u8 set = 0;
    for (int k = 0; k < n && !set; ++k) {
        const float* p = probs + (i64)k * mw * mh;
        if (bilinear(p, mw, x, y, x0, x1, fx, y0, y1, fy) > threshold) set = 255;
    }
    frame[(i64)y * stride + (i64)x * bpp + alpha] = set;
}
"#;
