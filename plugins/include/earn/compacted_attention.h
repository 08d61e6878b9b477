// earn::CompactedAttention: the contract shared by the ONNX Runtime CPU op, the CUDA kernel and the TensorRT
// plugin (docs/CONTRACTS.md, "Custom op earn::CompactedAttention"). Header-only, no dependencies, host and
// device code.
//
// Inputs (T = float or half; contiguous, row-major):
//   0 query        [B, beam, Hq, D]        T      decode query after RoPE
//   1 shared_key   [B, Hkv, S, D]          T      prompt KV (layers < k) or register KV (layers >= k), per user
//   2 shared_value [B, Hkv, S, D]          T
//   3 key_bias     [B, S]                  float  additive bias of the shared keys: 0 = attend, <= -1e30 = padding
//   4 gen_key      [B, beam, Hkv, Tg, D]   T      the beam's generated keys, current token included (Tg >= 1)
//   5 gen_value    [B, beam, Hkv, Tg, D]   T
// Output:
//   0 out          [B, beam, Hq, D]        T
// Query head h attends KV head h / G, G = Hq / Hkv. Scores (q . k) * scale + bias, softmax and P.V in fp32.
// A shared key whose bias is <= kMaskedBias is skipped: its fp32 exp underflows to exactly 0 in the reference
// (which adds float32 min), so skipping it changes nothing while at least one key is attended -- and the
// current token always is.
#pragma once

#include <cmath>
#include <cstdint>

// Free helpers have internal linkage: the CPU kernel is compiled once per instruction set (AVX2 and baseline)
// and an inline function with external linkage could be folded into the AVX2 copy for both.
#if defined(__CUDACC__)
#define EARN_HD static __host__ __device__ __forceinline__
#define EARN_HD_MEMBER __host__ __device__ __forceinline__
#else
#define EARN_HD static inline
#define EARN_HD_MEMBER inline
#endif

namespace earn
{

constexpr char const* kOpName = "CompactedAttention";
constexpr char const* kOpDomain = "earn";          // ONNX domain
constexpr char const* kPluginVersion = "1";        // bump on any change of inputs, outputs or fields
constexpr char const* kPluginNamespace = "earn";   // TensorRT registry namespace
constexpr int32_t kNumInputs = 6;
constexpr int32_t kNumOutputs = 1;
constexpr float kMaskedBias = -1e30f;

enum Input : int32_t
{
    kQuery = 0,
    kSharedKey = 1,
    kSharedValue = 2,
    kKeyBias = 3,
    kGenKey = 4,
    kGenValue = 5,
};

// Sizes of one call. All inputs are dense row-major tensors of these shapes.
struct AttentionShape
{
    int64_t batch = 0;      // B: users
    int64_t beams = 0;      // beam
    int64_t heads = 0;      // Hq
    int64_t kv_heads = 0;   // Hkv
    int64_t head_dim = 0;   // D
    int64_t shared_len = 0; // S: prompt rows (layers < k) or register rows (layers >= k)
    int64_t gen_len = 0;    // Tg: generated tokens of each beam, current one included
    float scale = 1.f;

    EARN_HD_MEMBER int64_t group() const { return heads / kv_heads; }
    // Row offsets (in elements) of the tensors' leading indices; add d for element d of the row.
    EARN_HD_MEMBER int64_t query_row(int64_t b, int64_t j, int64_t h) const { return ((b * beams + j) * heads + h) * head_dim; }
    EARN_HD_MEMBER int64_t shared_row(int64_t b, int64_t kv, int64_t s) const
    {
        return ((b * kv_heads + kv) * shared_len + s) * head_dim;
    }
    EARN_HD_MEMBER int64_t gen_row(int64_t b, int64_t j, int64_t kv, int64_t t) const
    {
        return (((b * beams + j) * kv_heads + kv) * gen_len + t) * head_dim;
    }
};

EARN_HD bool key_masked(float bias)
{
    return !(bias > kMaskedBias); // NaN biases count as masked
}

// Factor that rescales a running sum taken at max `old_max` to the new max (0 when nothing was summed yet).
EARN_HD float rescale_factor(float old_max, float new_max)
{
    return old_max == -INFINITY ? 0.f : expf(old_max - new_max);
}

// Online-softmax state of one query: running max, running sum of exp(score - max). The running output
// (sum of exp(score - max) * value) is kept beside it by the caller.
struct SoftmaxState
{
    float max = -INFINITY;
    float sum = 0.f;
};

// Merge state `b` into `a`; returns the factors that rescale a's and b's running outputs.
EARN_HD void merge_states(SoftmaxState& a, SoftmaxState const& b, float& scale_a, float& scale_b)
{
    float const m = a.max > b.max ? a.max : b.max;
    scale_a = rescale_factor(a.max, m);
    scale_b = rescale_factor(b.max, m);
    a.sum = a.sum * scale_a + b.sum * scale_b;
    a.max = m;
}

// IEEE half <-> float on the host (exact widening; round-to-nearest-even narrowing, as CUDA's __float2half).
static inline float half_bits_to_float(uint16_t h)
{
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f)
    {
        bits = sign | 0x7f800000u | (mant << 13);
    }
    else if (exp == 0)
    {
        if (mant == 0)
        {
            bits = sign;
        }
        else
        { // subnormal: normalise
            exp = 113;
            while ((mant & 0x400u) == 0)
            {
                mant <<= 1;
                --exp;
            }
            bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
        }
    }
    else
    {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    __builtin_memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t float_to_half_bits(float f)
{
    uint32_t x;
    __builtin_memcpy(&x, &f, sizeof x);
    uint32_t const sign = (x >> 16) & 0x8000u;
    uint32_t const absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) // inf or NaN
    {
        return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    }
    if (absx >= 0x477ff000u) // rounds to >= 65520: overflow to inf
    {
        return static_cast<uint16_t>(sign | 0x7c00u);
    }
    if (absx < 0x38800000u) // below the smallest normal half (2^-14): subnormal or zero
    {
        if (absx < 0x33000000u) // < 2^-25: rounds to zero
        {
            return static_cast<uint16_t>(sign);
        }
        uint32_t const e = absx >> 23;
        uint32_t const mant = (absx & 0x7fffffu) | 0x800000u;
        uint32_t const shift = 126 - e; // 14..24
        uint32_t half = mant >> shift;
        uint32_t const rest = mant & ((1u << shift) - 1);
        uint32_t const mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1u)))
        {
            ++half;
        }
        return static_cast<uint16_t>(sign | half);
    }
    uint32_t half = ((absx >> 13) - (112u << 10));
    uint32_t const rest = absx & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u)))
    {
        ++half; // may carry into the exponent: still correct rounding
    }
    return static_cast<uint16_t>(sign | half);
}

} // namespace earn
