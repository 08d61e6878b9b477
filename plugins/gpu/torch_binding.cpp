// PyTorch binding of the CUDA kernel of earn::CompactedAttention, for plugins/gpu_check.py only (the same .cu the
// TensorRT plugin links). Built with torch.utils.cpp_extension.load on a machine with a GPU.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include "compacted_attention_cuda.h"

torch::Tensor compacted_attention(torch::Tensor query, torch::Tensor shared_key, torch::Tensor shared_value,
    torch::Tensor key_bias, torch::Tensor gen_key, torch::Tensor gen_value, int64_t num_heads, int64_t num_kv_heads,
    int64_t head_dim, double scale, int64_t algo)
{
    for (auto const* t : {&query, &shared_key, &shared_value, &key_bias, &gen_key, &gen_value})
    {
        TORCH_CHECK(t->is_cuda() && t->is_contiguous(), "inputs must be contiguous CUDA tensors");
    }
    TORCH_CHECK(query.scalar_type() == torch::kFloat32 || query.scalar_type() == torch::kFloat16, "fp32 or fp16 I/O");
    TORCH_CHECK(key_bias.scalar_type() == torch::kFloat32, "key_bias must be fp32");
    for (auto const* t : {&shared_key, &shared_value, &gen_key, &gen_value})
    {
        TORCH_CHECK(t->scalar_type() == query.scalar_type(), "keys and values must have the query's dtype");
    }
    // the inputs' device is the current one for the launch (the device cache and the stream are per device)
    c10::cuda::CUDAGuard const guard(query.device());
    earn::AttentionShape sh;
    sh.batch = query.size(0);
    sh.beams = query.size(1);
    sh.heads = num_heads;
    sh.kv_heads = num_kv_heads;
    sh.head_dim = head_dim;
    sh.shared_len = shared_key.size(2);
    sh.gen_len = gen_key.size(3);
    sh.scale = static_cast<float>(scale);
    auto out = torch::empty_like(query);
    auto const dtype = query.scalar_type() == torch::kFloat16 ? earn::cuda::DType::kFloat16 : earn::cuda::DType::kFloat32;
    earn::cuda::Pointers p{query.data_ptr(), shared_key.data_ptr(), shared_value.data_ptr(),
        key_bias.data_ptr<float>(), gen_key.data_ptr(), gen_value.data_ptr(), out.data_ptr()};
    int const bad = earn::cuda::misaligned_pointer(p);
    char const* names[7] = {"query", "shared_key", "shared_value", "key_bias", "gen_key", "gen_value", "out"};
    TORCH_CHECK(bad < 0, "earn::CompactedAttention: ", bad >= 0 ? names[bad] : "", " is not ", bad == 3 ? 4 : 16,
        "-byte aligned (a view with an odd storage offset?): pass a .clone() of it");
    earn::cuda::LaunchPlan plan;
    TORCH_CHECK(earn::cuda::current_plan(sh, dtype, static_cast<earn::cuda::Algo>(algo), plan) == cudaSuccess,
        "earn::CompactedAttention: cannot read the device's limits");
    size_t const ws_bytes = plan.workspace > 0 ? plan.workspace + 256 : 0; // none with one split
    auto workspace = torch::empty({static_cast<int64_t>(ws_bytes)}, query.options().dtype(torch::kUInt8));
    cudaError_t const err = earn::cuda::launch_compacted_attention(
        sh, dtype, p, ws_bytes ? workspace.data_ptr() : nullptr, ws_bytes, at::cuda::getCurrentCUDAStream(),
        static_cast<earn::cuda::Algo>(algo));
    TORCH_CHECK(err == cudaSuccess, "earn::CompactedAttention launch failed: ", cudaGetErrorString(err));
    return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("compacted_attention", &compacted_attention,
        "earn::CompactedAttention (CUDA kernels of the TensorRT plugin); algo 0 auto, 1 CUDA cores, 2 tensor cores");
}
