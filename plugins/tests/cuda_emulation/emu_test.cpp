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
#include "reference.h"

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
    bool const f16 = dtype == DType::kFloat16;
    earn_test::Inputs in = earn_test::random_inputs(sh, f16, c.pad, rng);
    std::vector<uint16_t> qh, skh, svh, gkh, gvh, outh;
    std::vector<float> out(in.q.size(), NAN);
    earn::cuda::Pointers p{};
    if (f16)
    {
        qh = earn_test::to_half(in.q);
        skh = earn_test::to_half(in.sk);
        svh = earn_test::to_half(in.sv);
        gkh = earn_test::to_half(in.gk);
        gvh = earn_test::to_half(in.gv);
        outh.assign(in.q.size(), 0x7e00); // NaN until written
        p = {qh.data(), skh.data(), svh.data(), in.bias.data(), gkh.data(), gvh.data(), outh.data()};
    }
    else
    {
        p = {in.q.data(), in.sk.data(), in.sv.data(), in.bias.data(), in.gk.data(), in.gv.data(), out.data()};
    }
    std::vector<unsigned char> ws(earn::cuda::workspace_bytes(sh));
    earn_emu::sm_count() = sms;
    cudaError_t const err = earn::cuda::launch_compacted_attention(sh, dtype, p, ws.data(), ws.size(), nullptr, algo);
    if (f16)
    {
        for (size_t i = 0; i < out.size(); ++i)
        {
            out[i] = earn::half_bits_to_float(outh[i]);
        }
    }
    double err_max = 0, ref_max = 0;
    earn_test::compare(out, earn_test::reference(sh, in.q, in.sk, in.sv, in.bias, in.gk, in.gv), err_max, ref_max);
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
