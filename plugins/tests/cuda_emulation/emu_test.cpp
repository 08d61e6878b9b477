// Runs the CUDA kernels of earn::CompactedAttention (plugins/src/cuda/compacted_attention.cu, compiled as C++ against
// cuda_emu.h) through their launcher on the CPU and compares them with a double-precision attention over
// [shared keys ; own generated keys]. Cases: Qwen/Llama-like GQA, MHA, head_dim 32/64/128, beams 1..40, left
// padding, register-only S = 2, several split counts (the emulated SM count), fp32 on CUDA cores, fp16 on both
// paths. Prints PASS/FAIL lines; exit 0 when all pass.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "compacted_attention_cuda.h"

using earn::AttentionShape;
using earn::cuda::Algo;
using earn::cuda::DType;

namespace
{

struct Case
{
    char const* name;
    int64_t b, beams, hq, hkv, d, s, t;
    bool pad;
};

// exact reference in double on the (already rounded) inputs
std::vector<double> reference(AttentionShape const& sh, std::vector<float> const& q, std::vector<float> const& sk,
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

int g_failed = 0;

void run(Case const& c, DType dtype, Algo algo, int sms, std::mt19937& rng)
{
    AttentionShape sh;
    sh.batch = c.b;
    sh.beams = c.beams;
    sh.heads = c.hq;
    sh.kv_heads = c.hkv;
    sh.head_dim = c.d;
    sh.shared_len = c.s;
    sh.gen_len = c.t;
    sh.scale = 1.f / std::sqrt(float(c.d));
    std::normal_distribution<float> n;
    bool const f16 = dtype == DType::kFloat16;
    auto make = [&](size_t count) {
        std::vector<float> v(count);
        for (float& x : v)
        {
            x = n(rng);
            if (f16)
            {
                x = earn::half_bits_to_float(earn::float_to_half_bits(x)); // the values the kernel will see
            }
        }
        return v;
    };
    auto q = make(c.b * c.beams * c.hq * c.d);
    auto sk = make(c.b * c.hkv * c.s * c.d);
    auto sv = make(c.b * c.hkv * c.s * c.d);
    auto gk = make(c.b * c.beams * c.hkv * c.t * c.d);
    auto gv = make(c.b * c.beams * c.hkv * c.t * c.d);
    std::vector<float> bias(c.b * c.s, 0.f);
    if (c.pad)
    {
        for (int64_t b = 1; b < c.b; b += 2) // every other user left-padded by a different amount
        {
            for (int64_t s = 0; s < (b * c.s) / (2 * c.b) + 1 && s < c.s - 1; ++s)
            {
                bias[b * c.s + s] = -3.4028234663852886e38f;
            }
        }
    }
    auto to_half = [](std::vector<float> const& v) {
        std::vector<uint16_t> h(v.size());
        for (size_t i = 0; i < v.size(); ++i)
        {
            h[i] = earn::float_to_half_bits(v[i]);
        }
        return h;
    };
    std::vector<uint16_t> qh, skh, svh, gkh, gvh, outh;
    std::vector<float> out(q.size(), NAN);
    earn::cuda::Pointers p{};
    if (f16)
    {
        qh = to_half(q);
        skh = to_half(sk);
        svh = to_half(sv);
        gkh = to_half(gk);
        gvh = to_half(gv);
        outh.assign(q.size(), 0x7e00); // NaN until written
        p = {qh.data(), skh.data(), svh.data(), bias.data(), gkh.data(), gvh.data(), outh.data()};
    }
    else
    {
        p = {q.data(), sk.data(), sv.data(), bias.data(), gk.data(), gv.data(), out.data()};
    }
    size_t const ws_bytes = earn::cuda::workspace_bytes(sh);
    std::vector<unsigned char> ws(ws_bytes);
    earn_emu::sm_count() = sms;
    cudaError_t const err = earn::cuda::launch_compacted_attention(sh, dtype, p, ws.data(), ws.size(), nullptr, algo);
    if (f16)
    {
        for (size_t i = 0; i < out.size(); ++i)
        {
            out[i] = earn::half_bits_to_float(outh[i]);
        }
    }
    auto ref = reference(sh, q, sk, sv, bias, gk, gv);
    double err_max = 0, ref_max = 0;
    for (size_t i = 0; i < out.size(); ++i)
    {
        double const e = std::isfinite(out[i]) ? std::fabs(out[i] - ref[i]) : INFINITY;
        err_max = e > err_max ? e : err_max;
        ref_max = std::fabs(ref[i]) > ref_max ? std::fabs(ref[i]) : ref_max;
    }
    // fp32: fp32 accumulation vs double; fp16: output rounding (and P rounded to fp16 on tensor cores)
    double const tol = f16 ? 5e-3 * (ref_max > 1 ? ref_max : 1) : 2e-5;
    bool const ok = err == cudaSuccess && err_max <= tol;
    g_failed += ok ? 0 : 1;
    std::printf("%s %-34s %s %-12s SMs=%-3d max|err| %.2e (tol %.1e)%s\n", ok ? "PASS" : "FAIL", c.name,
        f16 ? "fp16" : "fp32", algo == Algo::kTensorCores ? "tensor-cores" : "cuda-cores", sms, err_max, tol,
        err == cudaSuccess ? "" : " launch error");
}

} // namespace

int main()
{
    std::mt19937 rng(1234);
    Case const cases[] = {
        {"qwen-like 14:2 d64 beam20 S130 pad", 2, 20, 14, 2, 64, 130, 3, true},
        {"llama-like 32:8 d64 beam4 S77", 2, 4, 32, 8, 64, 77, 2, false},
        {"registers only S=2", 3, 20, 14, 2, 64, 2, 1, false},
        {"MHA 4:4 d128 beam3 S100 pad", 2, 3, 4, 4, 128, 100, 2, true},
        {"GQA 8:2 d32 beam40 S65", 1, 40, 8, 2, 32, 65, 3, false},
        {"beam 1, 1 token, S=1", 2, 1, 4, 1, 64, 1, 1, false},
    };
    for (Case const& c : cases)
    {
        for (int sms : {1, 64})
        {
            run(c, DType::kFloat32, Algo::kAuto, sms, rng);
            run(c, DType::kFloat16, Algo::kCudaCores, sms, rng);
            run(c, DType::kFloat16, Algo::kTensorCores, sms, rng);
        }
    }
    // refused: fp32 on tensor cores, an unsupported head_dim
    AttentionShape sh;
    sh.batch = 1;
    sh.beams = 1;
    sh.heads = 2;
    sh.kv_heads = 1;
    sh.head_dim = 64;
    sh.shared_len = 4;
    sh.gen_len = 1;
    earn::cuda::Pointers p{};
    bool const refused = earn::cuda::launch_compacted_attention(sh, DType::kFloat32, p, nullptr, 0, nullptr,
                             Algo::kTensorCores) == cudaErrorInvalidValue;
    sh.head_dim = 80;
    bool const refused_dim
        = earn::cuda::launch_compacted_attention(sh, DType::kFloat16, p, nullptr, 0, nullptr) == cudaErrorInvalidValue;
    std::printf("%s refusals (fp32 on tensor cores, head_dim 80)\n", refused && refused_dim ? "PASS" : "FAIL");
    g_failed += refused && refused_dim ? 0 : 1;
    std::printf("%d failed\n", g_failed);
    return g_failed == 0 ? 0 : 1;
}
