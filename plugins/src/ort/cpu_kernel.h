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
#include <utility>

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

// EARN_CPU_LANES floats per vector: 16 in the AVX-512 copy, 8 otherwise (GCC vector extensions: the compiler
// maps them to the instruction set of the translation unit).
#ifndef EARN_CPU_LANES
#define EARN_CPU_LANES 8
#endif
constexpr int kLanes = EARN_CPU_LANES;
typedef float f8 __attribute__((vector_size(4 * kLanes)));
typedef float f8u __attribute__((vector_size(4 * kLanes), __aligned__(4), __may_alias__)); // unaligned access
typedef int32_t i8 __attribute__((vector_size(4 * kLanes)));

constexpr int kVecs = kKeyBlock / kLanes; // vectors of one query's block scores
constexpr int kChunkDims = 32;             // P.V runs over the head dim in chunks of 32 floats
constexpr int kChunkVecs = kChunkDims / kLanes;
// queries per block pass: their scores and outputs stay in registers (16 ymm: 2 queries x 4 vectors; 32 zmm:
// 8 queries x 2 vectors), and each loaded key/value vector serves all of them
constexpr int kPairQueries = kLanes == 16 ? 8 : 2;
static_assert(kKeyBlock % kLanes == 0 && kChunkDims % kLanes == 0, "block sizes must be whole vectors");

inline f8 load8(float const* p)
{
    return *reinterpret_cast<f8u const*>(p);
}

inline void store8(float* p, f8 v)
{
    *reinterpret_cast<f8u*>(p) = v;
}

template <size_t... I>
inline f8 splat_lanes(float x, std::index_sequence<I...>)
{
    return f8{((void)I, x)...};
}

// one vbroadcastss (f8{} + x would add 0.0f, which is no identity for -0.0f; a lane loop becomes lane inserts)
inline f8 splat(float x)
{
    return splat_lanes(x, std::make_index_sequence<kLanes>{});
}

// exp(x) lane-wise (Cephes expf polynomial, ~1 ulp); exactly 0 below -87.3 (and for -inf).
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

template <int Step>
inline f8 fold(f8 v, bool is_max)
{
    // lanes i and i ^ Step combined: log2(kLanes) steps reduce a vector to its lane 0
    i8 idx;
    for (int i = 0; i < kLanes; ++i)
    {
        idx[i] = i ^ Step;
    }
    f8 const w = __builtin_shuffle(v, idx);
    return is_max ? (v > w ? v : w) : v + w;
}

inline float hreduce(f8 v, bool is_max)
{
    if constexpr (kLanes == 16)
    {
        v = fold<8>(v, is_max);
    }
    v = fold<4>(v, is_max);
    v = fold<2>(v, is_max);
    v = fold<1>(v, is_max);
    return v[0];
}

inline float hmax8(f8 v)
{
    return hreduce(v, true);
}

inline float hsum8(f8 v)
{
    return hreduce(v, false);
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

// One block of shared keys for QB (<= kPairQueries) queries m0.. : scores (keys in lanes), online-softmax update,
// then acc = acc * correction + P.V. The QB queries share every load of a key or value vector (register blocking);
// DT > 0 is the compile-time head dim (P.V in chunks of 32 dims kept in registers), 0 = any D (plain loops).
template <int DT, int QB>
inline void block_queries(int m0, float const* q, float* acc, float* mx, float* sum, float const* kt, float const* vb,
    float const* bias_blk, float* p, int nk, int d_rt, float scale)
{
    int const D = DT > 0 ? DT : d_rt;
    f8 sc[QB][kVecs];
    #pragma GCC unroll 16
    for (int i = 0; i < QB; ++i)
    {
        #pragma GCC unroll 16
        for (int v = 0; v < kVecs; ++v)
        {
            sc[i][v] = splat(0.f);
        }
    }
    for (int d = 0; d < D; ++d)
    {
        float const* kd = kt + d * kKeyBlock;
        f8 k[kVecs];
        #pragma GCC unroll 16
        for (int v = 0; v < kVecs; ++v)
        {
            k[v] = load8(kd + v * kLanes);
        }
        #pragma GCC unroll 16
        for (int i = 0; i < QB; ++i)
        {
            f8 const qd = splat(q[(m0 + i) * D + d]);
            #pragma GCC unroll 16
            for (int v = 0; v < kVecs; ++v)
            {
                sc[i][v] += qd * k[v];
            }
        }
    }
    float corr[QB];
    #pragma GCC unroll 16
    for (int i = 0; i < QB; ++i)
    {
        int const m = m0 + i;
        f8 bmax = splat(-INFINITY);
        #pragma GCC unroll 16
        for (int v = 0; v < kVecs; ++v)
        {
            sc[i][v] = sc[i][v] * scale + load8(bias_blk + v * kLanes);
            bmax = sc[i][v] > bmax ? sc[i][v] : bmax;
        }
        float const tile_max = hmax8(bmax);
        float const new_max = mx[m] > tile_max ? mx[m] : tile_max;
        corr[i] = rescale_factor(mx[m], new_max);
        f8 psum = splat(0.f);
        #pragma GCC unroll 16
        for (int v = 0; v < kVecs; ++v)
        {
            f8 const e = exp8(sc[i][v] - new_max);
            psum += e;
            store8(p + i * kKeyBlock + v * kLanes, e);
        }
        sum[m] = sum[m] * corr[i] + hsum8(psum);
        mx[m] = new_max;
    }
    if constexpr (DT > 0 && DT % kChunkDims == 0)
    {
        for (int c = 0; c < DT; c += kChunkDims)
        {
            f8 a[QB][kChunkVecs];
            #pragma GCC unroll 16
            for (int i = 0; i < QB; ++i)
            {
                f8 const ci = splat(corr[i]);
                #pragma GCC unroll 16
                for (int v = 0; v < kChunkVecs; ++v)
                {
                    a[i][v] = load8(acc + (m0 + i) * DT + c + v * kLanes) * ci;
                }
            }
            for (int j = 0; j < nk; ++j)
            {
                f8 vv[kChunkVecs];
                #pragma GCC unroll 16
                for (int v = 0; v < kChunkVecs; ++v)
                {
                    vv[v] = load8(vb + j * DT + c + v * kLanes);
                }
                #pragma GCC unroll 16
                for (int i = 0; i < QB; ++i)
                {
                    f8 const pj = splat(p[i * kKeyBlock + j]);
                    #pragma GCC unroll 16
                    for (int v = 0; v < kChunkVecs; ++v)
                    {
                        a[i][v] += pj * vv[v];
                    }
                }
            }
            #pragma GCC unroll 16
            for (int i = 0; i < QB; ++i)
            {
                #pragma GCC unroll 16
                for (int v = 0; v < kChunkVecs; ++v)
                {
                    store8(acc + (m0 + i) * DT + c + v * kLanes, a[i][v]);
                }
            }
        }
    }
    else
    {
        #pragma GCC unroll 16
        for (int i = 0; i < QB; ++i)
        {
            float* am = acc + (m0 + i) * D;
            if (corr[i] != 1.f)
            {
                for (int d = 0; d < D; ++d)
                {
                    am[d] *= corr[i];
                }
            }
            for (int j = 0; j < nk; ++j)
            {
                float const pj = p[i * kKeyBlock + j];
                float const* row = vb + j * D;
                for (int d = 0; d < D; ++d)
                {
                    am[d] += pj * row[d];
                }
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
    float* p = scratch + L.p;      // [<= 8][kKeyBlock] probabilities of the queries of one pass
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
        int m = 0;
        for (; m + kPairQueries <= M; m += kPairQueries)
        {
            block_queries<DT, kPairQueries>(m, q, acc, mx, sum, kt, vb, bias_blk, p, nk, D, scale);
        }
        if constexpr (kPairQueries > 4)
        {
            for (; m + 4 <= M; m += 4)
            {
                block_queries<DT, 4>(m, q, acc, mx, sum, kt, vb, bias_blk, p, nk, D, scale);
            }
        }
        if constexpr (kPairQueries > 2)
        {
            for (; m + 2 <= M; m += 2)
            {
                block_queries<DT, 2>(m, q, acc, mx, sum, kt, vb, bias_blk, p, nk, D, scale);
            }
        }
        for (; m < M; ++m)
        {
            block_queries<DT, 1>(m, q, acc, mx, sum, kt, vb, bias_blk, p, nk, D, scale);
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
