// Interface between the ONNX Runtime op (compacted_attention_ort.cpp) and the per-ISA CPU kernels.
#pragma once

#include <cstddef>
#include <cstdint>

#include "earn/compacted_attention.h"

namespace earn
{
namespace cpu
{

constexpr int kKeyBlock = 32; // shared keys per block: K and V blocks (2 x 32 x D floats) stay in L1

template <typename T>
struct Inputs
{
    T const* query;
    T const* shared_key;
    T const* shared_value;
    float const* key_bias;
    T const* gen_key;
    T const* gen_value;
    T* out;
};

// Offsets (in floats) of one work item's scratch buffers; the caller allocates `total` floats per item.
struct ScratchLayout
{
    size_t q, acc, max, sum, kt, vb, row, bias, p, idx, total;
};

static inline ScratchLayout scratch_layout(AttentionShape const& sh)
{
    size_t const D = static_cast<size_t>(sh.head_dim);
    size_t const M = static_cast<size_t>(sh.beams * sh.group());
    size_t const K = kKeyBlock;
    ScratchLayout L{};
    size_t at = 0;
    auto take = [&at](size_t n) {
        size_t const here = at;
        at += (n + 15) & ~size_t{15}; // keep every buffer 64-byte aligned relative to the base
        return here;
    };
    L.q = take(M * D);
    L.acc = take(M * D);
    L.max = take(M);
    L.sum = take(M);
    L.kt = take(D * K);
    L.vb = take(K * D);
    L.row = take(D);
    L.bias = take(K);
    L.p = take(8 * K); // up to 8 queries per block pass
    L.idx = take(K); // int32 stored in float slots
    L.total = at;
    return L;
}

// One (user b, KV head kv) work item; `scratch` holds scratch_layout(sh).total floats.
namespace avx2
{
void attend_f32(AttentionShape const& sh, Inputs<float> const& in, int64_t b, int64_t kv, float* scratch);
void attend_f16(AttentionShape const& sh, Inputs<uint16_t> const& in, int64_t b, int64_t kv, float* scratch);
} // namespace avx2
namespace avx512
{
void attend_f32(AttentionShape const& sh, Inputs<float> const& in, int64_t b, int64_t kv, float* scratch);
void attend_f16(AttentionShape const& sh, Inputs<uint16_t> const& in, int64_t b, int64_t kv, float* scratch);
} // namespace avx512
namespace generic
{
void attend_f32(AttentionShape const& sh, Inputs<float> const& in, int64_t b, int64_t kv, float* scratch);
void attend_f16(AttentionShape const& sh, Inputs<uint16_t> const& in, int64_t b, int64_t kv, float* scratch);
} // namespace generic

} // namespace cpu
} // namespace earn
