// Double-precision oracle and random inputs shared by the emulation tests (emu_test.cpp, plugin_enqueue_test.cpp):
// plain softmax attention of each (user, beam, head) over [unmasked shared keys ; the beam's generated keys].
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "earn/compacted_attention.h"

namespace earn_test
{

using earn::AttentionShape;

// exact reference in double on the (already rounded) inputs
inline std::vector<double> reference(AttentionShape const& sh, std::vector<float> const& q, std::vector<float> const& sk,
    std::vector<float> const& sv, std::vector<float> const& bias, std::vector<float> const& gk,
    std::vector<float> const& gv)
{
    int64_t const G = sh.group();
    int64_t const D = sh.head_dim;
    std::vector<double> out(q.size());
    for (int64_t b = 0; b < sh.batch; ++b)
    {
        for (int64_t j = 0; j < sh.beams; ++j)
        {
            for (int64_t h = 0; h < sh.heads; ++h)
            {
                int64_t const kv = h / G;
                float const* qr = &q[sh.query_row(b, j, h)];
                std::vector<double> sc;
                std::vector<float const*> vals;
                for (int64_t s = 0; s < sh.shared_len; ++s)
                {
                    if (earn::key_masked(bias[b * sh.shared_len + s]))
                    {
                        continue;
                    }
                    double dot = 0;
                    for (int64_t d = 0; d < D; ++d)
                    {
                        dot += double(qr[d]) * sk[sh.shared_row(b, kv, s) + d];
                    }
                    sc.push_back(dot * sh.scale + bias[b * sh.shared_len + s]);
                    vals.push_back(&sv[sh.shared_row(b, kv, s)]);
                }
                for (int64_t t = 0; t < sh.gen_len; ++t)
                {
                    double dot = 0;
                    for (int64_t d = 0; d < D; ++d)
                    {
                        dot += double(qr[d]) * gk[sh.gen_row(b, j, kv, t) + d];
                    }
                    sc.push_back(dot * sh.scale);
                    vals.push_back(&gv[sh.gen_row(b, j, kv, t)]);
                }
                double mx = -INFINITY;
                for (double x : sc)
                {
                    mx = x > mx ? x : mx;
                }
                double sum = 0;
                for (double& x : sc)
                {
                    x = std::exp(x - mx);
                    sum += x;
                }
                for (int64_t d = 0; d < D; ++d)
                {
                    double acc = 0;
                    for (size_t i = 0; i < sc.size(); ++i)
                    {
                        acc += sc[i] * vals[i][d];
                    }
                    out[sh.query_row(b, j, h) + d] = acc / sum;
                }
            }
        }
    }
    return out;
}

// Random inputs of `sh` (values rounded to fp16 when `f16`, so the reference sees what the kernel sees); every
// other user left-padded by a different amount when `pad`.
struct Inputs
{
    std::vector<float> q, sk, sv, bias, gk, gv;
};

inline Inputs random_inputs(AttentionShape const& sh, bool f16, bool pad, std::mt19937& rng)
{
    std::normal_distribution<float> n;
    auto make = [&](int64_t count) {
        std::vector<float> v(static_cast<size_t>(count));
        for (float& x : v)
        {
            x = n(rng);
            if (f16)
            {
                x = earn::half_bits_to_float(earn::float_to_half_bits(x));
            }
        }
        return v;
    };
    int64_t const D = sh.head_dim;
    Inputs in;
    in.q = make(sh.batch * sh.beams * sh.heads * D);
    in.sk = make(sh.batch * sh.kv_heads * sh.shared_len * D);
    in.sv = make(sh.batch * sh.kv_heads * sh.shared_len * D);
    in.gk = make(sh.batch * sh.beams * sh.kv_heads * sh.gen_len * D);
    in.gv = make(sh.batch * sh.beams * sh.kv_heads * sh.gen_len * D);
    in.bias.assign(static_cast<size_t>(sh.batch * sh.shared_len), 0.f);
    if (pad)
    {
        for (int64_t b = 1; b < sh.batch; b += 2)
        {
            for (int64_t s = 0; s < (b * sh.shared_len) / (2 * sh.batch) + 1 && s < sh.shared_len - 1; ++s)
            {
                in.bias[b * sh.shared_len + s] = -3.4028234663852886e38f;
            }
        }
    }
    return in;
}

inline std::vector<uint16_t> to_half(std::vector<float> const& v)
{
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i)
    {
        h[i] = earn::float_to_half_bits(v[i]);
    }
    return h;
}

// max |out - ref| and max |ref|
inline void compare(std::vector<float> const& out, std::vector<double> const& ref, double& err_max, double& ref_max)
{
    err_max = 0;
    ref_max = 0;
    for (size_t i = 0; i < out.size(); ++i)
    {
        double const e = std::isfinite(out[i]) ? std::fabs(out[i] - ref[i]) : INFINITY;
        err_max = e > err_max ? e : err_max;
        ref_max = std::fabs(ref[i]) > ref_max ? std::fabs(ref[i]) : ref_max;
    }
}

} // namespace earn_test
