// CPU implementation of earn::CompactedAttention for one (user, KV head): the kernel of the ONNX Runtime op.
//
// Included by one translation unit per instruction set (cpu_kernel_avx2.cpp with -mavx2 -mfma -mf16c,
// cpu_kernel_generic.cpp with the compiler's baseline); EARN_CPU_ISA names the namespace of each copy. The code
// below uses no std:: templates and only internal-linkage functions, so no AVX2-compiled function can be shared
// with (and run by) the baseline copy.
//
// Read pattern (what makes the op fast): the user's shared keys and values are read once per KV head for all
// beams x group queries, in blocks of kKeyBlock keys (padding skipped), with a flash-attention style online
// softmax; the few generated keys of each beam are merged into the same running softmax at the end.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "cpu_kernel_api.h"
#include "earn/compacted_attention.h"

// 8-float vectors are passed between functions of this file only (all internal, inlined): the ABI note GCC
// gives for 32-byte vectors in the baseline build does not concern any exported function.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace earn
{
namespace cpu
{
namespace EARN_CPU_ISA
{
namespace
{

typedef float f8 __attribute__((vector_size(32)));
typedef float f8u __attribute__((vector_size(32), __aligned__(4), __may_alias__)); // unaligned loads/stores
typedef int32_t i8 __attribute__((vector_size(32)));

constexpr int kLanes = 8;
constexpr int kVecs = kKeyBlock / kLanes;

inline f8 load8(float const* p)
{
    return *reinterpret_cast<f8u const*>(p);
}

inline void store8(float* p, f8 v)
{
    *reinterpret_cast<f8u*>(p) = v;
}

inline f8 splat(float x)
{
    return f8{x, x, x, x, x, x, x, x};
}

// exp(x) for 8 floats (Cephes expf polynomial, ~1 ulp); exactly 0 below -87.3 (and for -inf).
inline f8 exp8(f8 x)
{
    f8 const lo = splat(-87.33654475f);
    i8 const dead = x < lo;
    x = x < lo ? lo : x;
    x = x > splat(88.3762626647949f) ? splat(88.3762626647949f) : x;
    f8 const magic = splat(12582912.0f); // 1.5 * 2^23: adding it rounds to the nearest integer
    f8 t = x * splat(1.44269504088896341f) + magic;
    f8 const n = t - magic;
    i8 const ni = __builtin_bit_cast(i8, t) - __builtin_bit_cast(i8, magic);
    f8 const r = x - n * splat(0.693359375f) - n * splat(-2.12194440e-4f);
    f8 p = splat(1.9875691500e-4f);
    p = p * r + splat(1.3981999507e-3f);
    p = p * r + splat(8.3334519073e-3f);
    p = p * r + splat(4.1665795894e-2f);
    p = p * r + splat(1.6666665459e-1f);
    p = p * r + splat(5.0000001201e-1f);
    p = p * r * r + r + splat(1.0f);
    i8 const pow2 = (ni + 127) << 23;
    f8 y = p * __builtin_bit_cast(f8, pow2);
    return dead ? splat(0.f) : y;
}

inline float hmax8(f8 v)
{
    float m = v[0];
    for (int i = 1; i < kLanes; ++i)
    {
        m = v[i] > m ? v[i] : m;
    }
    return m;
}

inline float hsum8(f8 v)
{
    float s = 0.f;
    for (int i = 0; i < kLanes; ++i)
    {
        s += v[i];
    }
    return s;
}

// --- element conversion -------------------------------------------------------------------------------------
inline void load_row(float const* src, float* dst, int n)
{
    std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(n));
}

inline void load_row(uint16_t const* src, float* dst, int n)
{
    int i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
    {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(src + i))));
    }
#endif
    for (; i < n; ++i)
    {
        dst[i] = half_bits_to_float(src[i]);
    }
}

inline void store_row(float const* src, float* dst, int n)
{
    std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(n));
}

inline void store_row(float const* src, uint16_t* dst, int n)
{
    int i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
    {
        __m128i const h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
    }
#endif
    for (; i < n; ++i)
    {
        dst[i] = float_to_half_bits(src[i]);
    }
}

// acc[0..D) += p * v[0..D): DT > 0 is the compile-time head dim (kept in registers), 0 = any D.
template <int DT>
inline void axpy_rows(float* acc, float const* vb, float const* p, int nk, int d_rt)
{
    if constexpr (DT > 0 && DT % kLanes == 0)
    {
        constexpr int V = DT / kLanes;
        f8 a[V];
        for (int v = 0; v < V; ++v)
        {
            a[v] = load8(acc + v * kLanes);
        }
        for (int j = 0; j < nk; ++j)
        {
            f8 const pj = splat(p[j]);
            float const* row = vb + j * DT;
            for (int v = 0; v < V; ++v)
            {
                a[v] += pj * load8(row + v * kLanes);
            }
        }
        for (int v = 0; v < V; ++v)
        {
            store8(acc + v * kLanes, a[v]);
        }
    }
    else
    {
        int const D = DT > 0 ? DT : d_rt;
        for (int j = 0; j < nk; ++j)
        {
            float const pj = p[j];
            float const* row = vb + j * D;
            for (int d = 0; d < D; ++d)
            {
                acc[d] += pj * row[d];
            }
        }
    }
}

template <typename T, int DT>
void attend_head(AttentionShape const& sh, Inputs<T> const& in, int64_t b, int64_t kv, float* scratch)
{
    int const D = DT > 0 ? DT : static_cast<int>(sh.head_dim);
    int const G = static_cast<int>(sh.group());
    int const NB = static_cast<int>(sh.beams);
    int const M = NB * G; // queries sharing this KV head: every beam x every head of the group
    int64_t const S = sh.shared_len;
    float const scale = sh.scale;

    ScratchLayout const L = scratch_layout(sh);
    float* q = scratch + L.q;      // [M][D]
    float* acc = scratch + L.acc;  // [M][D]
    float* mx = scratch + L.max;   // [M]
    float* sum = scratch + L.sum;  // [M]
    float* kt = scratch + L.kt;    // [D][kKeyBlock] keys of the block, transposed
    float* vb = scratch + L.vb;    // [kKeyBlock][D]
    float* row = scratch + L.row;  // [D]
    float* bias_blk = scratch + L.bias; // [kKeyBlock]
    float* p = scratch + L.p;      // [kKeyBlock]
    int32_t* idx = reinterpret_cast<int32_t*>(scratch + L.idx); // [kKeyBlock]

    for (int j = 0; j < NB; ++j)
    {
        for (int g = 0; g < G; ++g)
        {
            int const m = j * G + g;
            load_row(in.query + sh.query_row(b, j, kv * G + g), q + m * D, D);
            std::memset(acc + m * D, 0, sizeof(float) * static_cast<size_t>(D));
            mx[m] = -INFINITY;
            sum[m] = 0.f;
        }
    }

    // shared keys: one pass, all M queries per block of keys
    float const* bias = in.key_bias + b * S;
    int64_t s = 0;
    while (s < S)
    {
        int nk = 0;
        for (; s < S && nk < kKeyBlock; ++s)
        {
            if (!key_masked(bias[s]))
            {
                idx[nk++] = static_cast<int32_t>(s);
            }
        }
        if (nk == 0)
        {
            break;
        }
        for (int j = 0; j < nk; ++j)
        {
            load_row(in.shared_key + sh.shared_row(b, kv, idx[j]), row, D);
            for (int d = 0; d < D; ++d)
            {
                kt[d * kKeyBlock + j] = row[d];
            }
            load_row(in.shared_value + sh.shared_row(b, kv, idx[j]), vb + j * D, D);
            bias_blk[j] = bias[idx[j]];
        }
        for (int j = nk; j < kKeyBlock; ++j)
        {
            for (int d = 0; d < D; ++d)
            {
                kt[d * kKeyBlock + j] = 0.f;
            }
            bias_blk[j] = -INFINITY;
        }
        for (int m = 0; m < M; ++m)
        {
            f8 sc[kVecs];
            for (int v = 0; v < kVecs; ++v)
            {
                sc[v] = splat(0.f);
            }
            float const* qm = q + m * D;
            for (int d = 0; d < D; ++d)
            {
                f8 const qd = splat(qm[d]);
                float const* kd = kt + d * kKeyBlock;
                for (int v = 0; v < kVecs; ++v)
                {
                    sc[v] += qd * load8(kd + v * kLanes);
                }
            }
            f8 bmax = splat(-INFINITY);
            for (int v = 0; v < kVecs; ++v)
            {
                sc[v] = sc[v] * scale + load8(bias_blk + v * kLanes);
                bmax = sc[v] > bmax ? sc[v] : bmax;
            }
            float const new_max = mx[m] > hmax8(bmax) ? mx[m] : hmax8(bmax);
            float const corr = rescale_factor(mx[m], new_max);
            f8 psum = splat(0.f);
            for (int v = 0; v < kVecs; ++v)
            {
                f8 const e = exp8(sc[v] - new_max);
                psum += e;
                store8(p + v * kLanes, e);
            }
            float* am = acc + m * D;
            if (corr != 1.f)
            {
                for (int d = 0; d < D; ++d)
                {
                    am[d] *= corr;
                }
            }
            sum[m] = sum[m] * corr + hsum8(psum);
            mx[m] = new_max;
            axpy_rows<DT>(am, vb, p, nk, D);
        }
    }

    // each beam's generated keys (current token included), then normalise and write
    int64_t const Tg = sh.gen_len;
    for (int j = 0; j < NB; ++j)
    {
        for (int g = 0; g < G; ++g)
        {
            int const m = j * G + g;
            float const* qm = q + m * D;
            float* am = acc + m * D;
            for (int64_t t = 0; t < Tg; ++t)
            {
                load_row(in.gen_key + sh.gen_row(b, j, kv, t), row, D);
                float dot = 0.f;
                for (int d = 0; d < D; ++d)
                {
                    dot += qm[d] * row[d];
                }
                float const score = dot * scale;
                float const new_max = mx[m] > score ? mx[m] : score;
                float const corr = rescale_factor(mx[m], new_max);
                float const e = expf(score - new_max);
                load_row(in.gen_value + sh.gen_row(b, j, kv, t), row, D);
                for (int d = 0; d < D; ++d)
                {
                    am[d] = am[d] * corr + e * row[d];
                }
                sum[m] = sum[m] * corr + e;
                mx[m] = new_max;
            }
            float const inv = 1.f / sum[m];
            for (int d = 0; d < D; ++d)
            {
                row[d] = am[d] * inv;
            }
            store_row(row, in.out + sh.query_row(b, j, kv * G + g), D);
        }
    }
}

template <typename T>
void attend_head_dispatch(AttentionShape const& sh, Inputs<T> const& in, int64_t b, int64_t kv, float* scratch)
{
    switch (sh.head_dim)
    {
    case 16: attend_head<T, 16>(sh, in, b, kv, scratch); break;
    case 32: attend_head<T, 32>(sh, in, b, kv, scratch); break;
    case 64: attend_head<T, 64>(sh, in, b, kv, scratch); break;
    case 128: attend_head<T, 128>(sh, in, b, kv, scratch); break;
    default: attend_head<T, 0>(sh, in, b, kv, scratch); break;
    }
}

} // namespace

void attend_f32(AttentionShape const& sh, Inputs<float> const& in, int64_t b, int64_t kv, float* scratch)
{
    attend_head_dispatch<float>(sh, in, b, kv, scratch);
}

void attend_f16(AttentionShape const& sh, Inputs<uint16_t> const& in, int64_t b, int64_t kv, float* scratch)
{
    attend_head_dispatch<uint16_t>(sh, in, b, kv, scratch);
}

} // namespace EARN_CPU_ISA
} // namespace cpu
} // namespace earn
