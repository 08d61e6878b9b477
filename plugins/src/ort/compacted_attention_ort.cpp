// ONNX Runtime custom-op library: earn::CompactedAttention on the CPU execution provider (fp32 and fp16 I/O).
//
// Loaded with SessionOptions.register_custom_ops_library(path) (the Python runtime does it for engines exported
// with --attention plugin). The library links nothing from ONNX Runtime: it takes the API table from the
// RegisterCustomOps call of the ONNX Runtime that loads it (ORT_API_MANUAL_INIT), so it works with the
// onnxruntime wheel's own statically linked runtime and never loads a second copy.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu_kernel_api.h"
#include "earn/compacted_attention.h"

#if defined(__GNUC__)
#define EARN_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define EARN_EXPORT extern "C"
#endif

namespace
{

using earn::AttentionShape;

enum class Isa
{
    kGeneric,
    kAvx2,
    kAvx512,
};

char const* isa_name(Isa isa)
{
    return isa == Isa::kAvx512 ? "avx512" : (isa == Isa::kAvx2 ? "avx2" : "generic");
}

Isa best_isa()
{
#if defined(EARN_HAVE_X86_KERNELS)
    static Isa const best = __builtin_cpu_supports("avx512f") ? Isa::kAvx512
        : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        ? Isa::kAvx2
        : Isa::kGeneric;
    return best;
#else
    return Isa::kGeneric;
#endif
}

// The kernel copy a new session's nodes use: the best the CPU runs, or EARN_ORT_OPS_KERNEL=generic|avx2|avx512
// (capped at what the CPU runs; the tests run every copy).
Isa choose_isa()
{
    Isa const best = best_isa();
    char const* force = std::getenv("EARN_ORT_OPS_KERNEL");
    if (force == nullptr)
    {
        return best;
    }
    std::string const f = force;
    Isa const want = f == "avx512" ? Isa::kAvx512 : (f == "avx2" ? Isa::kAvx2 : Isa::kGeneric);
    return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

std::string shape_str(std::vector<int64_t> const& s)
{
    std::ostringstream os;
    os << "[";
    for (size_t i = 0; i < s.size(); ++i)
    {
        os << (i ? ", " : "") << s[i];
    }
    os << "]";
    return os.str();
}

struct BadInput : std::exception
{
    std::string msg;
    explicit BadInput(std::string m)
        : msg(std::move(m))
    {
    }
    char const* what() const noexcept override
    {
        return msg.c_str();
    }
};

void expect(bool ok, std::string const& what)
{
    if (!ok)
    {
        throw BadInput("earn::CompactedAttention: " + what);
    }
}

struct Attributes
{
    int64_t num_heads = 0;
    int64_t num_kv_heads = 0;
    int64_t head_dim = 0;
    float scale = 0.f;
};

// Attributes are validated when the session is created, so a bad graph fails at load, not at the first call.
Attributes read_attributes(OrtKernelInfo const* info)
{
    Ort::ConstKernelInfo ki(info);
    Attributes a;
    a.num_heads = ki.GetAttribute<int64_t>("num_heads");
    a.num_kv_heads = ki.GetAttribute<int64_t>("num_kv_heads");
    a.head_dim = ki.GetAttribute<int64_t>("head_dim");
    a.scale = ki.GetAttribute<float>("scale");
    expect(a.num_heads > 0 && a.num_kv_heads > 0 && a.head_dim > 0,
        "num_heads, num_kv_heads and head_dim must be positive (got " + std::to_string(a.num_heads) + ", "
            + std::to_string(a.num_kv_heads) + ", " + std::to_string(a.head_dim) + ")");
    expect(a.num_heads % a.num_kv_heads == 0,
        "num_heads (" + std::to_string(a.num_heads) + ") must be a multiple of num_kv_heads ("
            + std::to_string(a.num_kv_heads) + ")");
    expect(a.scale > 0.f && a.scale < INFINITY, "scale must be a positive finite float");
    return a;
}

template <typename T>
struct Work
{
    AttentionShape shape;
    earn::cpu::Inputs<T> in;
    float* scratch;
    size_t stride;
    Isa isa;
};

template <typename T>
void run_item(void* data, size_t item)
{
    auto const* w = static_cast<Work<T> const*>(data);
    int64_t const b = static_cast<int64_t>(item) / w->shape.kv_heads;
    int64_t const kv = static_cast<int64_t>(item) % w->shape.kv_heads;
    float* scratch = w->scratch + item * w->stride;
    if constexpr (std::is_same_v<T, float>)
    {
        auto fn = w->isa == Isa::kAvx512 ? earn::cpu::avx512::attend_f32
            : (w->isa == Isa::kAvx2 ? earn::cpu::avx2::attend_f32 : earn::cpu::generic::attend_f32);
        fn(w->shape, w->in, b, kv, scratch);
    }
    else
    {
        auto fn = w->isa == Isa::kAvx512 ? earn::cpu::avx512::attend_f16
            : (w->isa == Isa::kAvx2 ? earn::cpu::avx2::attend_f16 : earn::cpu::generic::attend_f16);
        fn(w->shape, w->in, b, kv, scratch);
    }
}

// T: float or Ort::Float16_t (stored as uint16_t bits for the kernel)
template <typename T>
struct Kernel
{
    using Elem = std::conditional_t<std::is_same_v<T, float>, float, uint16_t>;
    Attributes attr;
    Isa isa;

    explicit Kernel(OrtKernelInfo const* info)
        : attr(read_attributes(info))
        , isa(choose_isa())
    {
    }

    OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept
    {
        try
        {
            compute(context);
            return nullptr;
        }
        catch (BadInput const& e)
        {
            return Ort::Status(e.what(), ORT_INVALID_ARGUMENT).release();
        }
        catch (Ort::Exception const& e)
        {
            return Ort::Status(e.what(), e.GetOrtErrorCode()).release();
        }
        catch (std::exception const& e)
        {
            return Ort::Status((std::string("earn::CompactedAttention: ") + e.what()).c_str(), ORT_FAIL).release();
        }
    }

    void compute(OrtKernelContext* context)
    {
        Ort::KernelContext ctx(context);
        Ort::ConstValue q = ctx.GetInput(earn::kQuery);
        Ort::ConstValue sk = ctx.GetInput(earn::kSharedKey);
        Ort::ConstValue sv = ctx.GetInput(earn::kSharedValue);
        Ort::ConstValue kb = ctx.GetInput(earn::kKeyBias);
        Ort::ConstValue gk = ctx.GetInput(earn::kGenKey);
        Ort::ConstValue gv = ctx.GetInput(earn::kGenValue);
        auto const qs = q.GetTensorTypeAndShapeInfo().GetShape();
        auto const sks = sk.GetTensorTypeAndShapeInfo().GetShape();
        auto const svs = sv.GetTensorTypeAndShapeInfo().GetShape();
        auto const kbs = kb.GetTensorTypeAndShapeInfo().GetShape();
        auto const gks = gk.GetTensorTypeAndShapeInfo().GetShape();
        auto const gvs = gv.GetTensorTypeAndShapeInfo().GetShape();

        expect(qs.size() == 4, "query must be [B, beam, num_heads, head_dim], got " + shape_str(qs));
        AttentionShape sh;
        sh.batch = qs[0];
        sh.beams = qs[1];
        sh.heads = attr.num_heads;
        sh.kv_heads = attr.num_kv_heads;
        sh.head_dim = attr.head_dim;
        sh.scale = attr.scale;
        expect(qs[2] == sh.heads && qs[3] == sh.head_dim,
            "query " + shape_str(qs) + " does not match num_heads=" + std::to_string(sh.heads)
                + ", head_dim=" + std::to_string(sh.head_dim));
        expect(sks.size() == 4 && sks[0] == sh.batch && sks[1] == sh.kv_heads && sks[3] == sh.head_dim,
            "shared_key must be [B, num_kv_heads, S, head_dim] = [" + std::to_string(sh.batch) + ", "
                + std::to_string(sh.kv_heads) + ", S, " + std::to_string(sh.head_dim) + "], got " + shape_str(sks));
        sh.shared_len = sks[2];
        expect(svs == sks, "shared_value " + shape_str(svs) + " must have shared_key's shape " + shape_str(sks));
        expect(kbs.size() == 2 && kbs[0] == sh.batch && kbs[1] == sh.shared_len,
            "key_bias must be [B, S] = [" + std::to_string(sh.batch) + ", " + std::to_string(sh.shared_len)
                + "], got " + shape_str(kbs));
        expect(gks.size() == 5 && gks[0] == sh.batch && gks[1] == sh.beams && gks[2] == sh.kv_heads
                && gks[4] == sh.head_dim,
            "gen_key must be [B, beam, num_kv_heads, T, head_dim], got " + shape_str(gks));
        sh.gen_len = gks[3];
        expect(sh.gen_len >= 1, "gen_key must hold at least the current token (T >= 1), got T = 0");
        expect(gvs == gks, "gen_value " + shape_str(gvs) + " must have gen_key's shape " + shape_str(gks));

        Ort::UnownedValue out = ctx.GetOutput(0, qs);
        if (sh.batch == 0 || sh.beams == 0)
        {
            return;
        }
        Work<Elem> w{};
        w.shape = sh;
        w.in.query = reinterpret_cast<Elem const*>(q.GetTensorData<T>());
        w.in.shared_key = reinterpret_cast<Elem const*>(sk.GetTensorData<T>());
        w.in.shared_value = reinterpret_cast<Elem const*>(sv.GetTensorData<T>());
        w.in.key_bias = kb.GetTensorData<float>();
        w.in.gen_key = reinterpret_cast<Elem const*>(gk.GetTensorData<T>());
        w.in.gen_value = reinterpret_cast<Elem const*>(gv.GetTensorData<T>());
        w.in.out = reinterpret_cast<Elem*>(out.GetTensorMutableData<T>());
        size_t const items = static_cast<size_t>(sh.batch * sh.kv_heads);
        w.stride = earn::cpu::scratch_layout(sh).total;
        // per calling thread, kept between calls: a fresh allocation of this size would be mmap'ed and page-faulted
        // on every call (one Compute runs per thread at a time; the work items get disjoint slices)
        thread_local std::vector<float> scratch;
        if (scratch.size() < w.stride * items + 16)
        {
            scratch.resize(w.stride * items + 16);
        }
        // 64-byte align the base (the layout keeps every buffer a multiple of 16 floats)
        auto base = reinterpret_cast<uintptr_t>(scratch.data());
        w.scratch = reinterpret_cast<float*>((base + 63) & ~uintptr_t{63});
        w.isa = isa;
        ctx.ParallelFor(run_item<Elem>, items, 0, &w);
    }
};

template <typename T>
struct Op : Ort::CustomOpBase<Op<T>, Kernel<T>, true>
{
    OrtStatusPtr CreateKernelV2(OrtApi const& /*api*/, OrtKernelInfo const* info, void** op_kernel) const noexcept
    {
        try
        {
            *op_kernel = new Kernel<T>(info);
            return nullptr;
        }
        catch (BadInput const& e)
        {
            return Ort::Status(e.what(), ORT_INVALID_ARGUMENT).release();
        }
        catch (Ort::Exception const& e)
        {
            std::string msg = std::string("earn::CompactedAttention: reading the node's attributes failed (") + e.what()
                + "); the node needs INT num_heads, num_kv_heads, head_dim and FLOAT scale";
            return Ort::Status(msg.c_str(), ORT_INVALID_GRAPH).release();
        }
        catch (std::exception const& e)
        {
            return Ort::Status(e.what(), ORT_FAIL).release();
        }
    }

    char const* GetName() const
    {
        return earn::kOpName;
    }
    char const* GetExecutionProviderType() const
    {
        return "CPUExecutionProvider";
    }
    size_t GetInputTypeCount() const
    {
        return earn::kNumInputs;
    }
    ONNXTensorElementDataType GetInputType(size_t index) const
    {
        return index == earn::kKeyBias ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT : elem_type();
    }
    size_t GetOutputTypeCount() const
    {
        return earn::kNumOutputs;
    }
    ONNXTensorElementDataType GetOutputType(size_t /*index*/) const
    {
        return elem_type();
    }
    static ONNXTensorElementDataType elem_type()
    {
        return std::is_same_v<T, float> ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    }
};

Op<float> const g_op_f32;
Op<Ort::Float16_t> const g_op_f16;
std::mutex g_domains_mutex;
std::vector<Ort::CustomOpDomain>* g_domains = new std::vector<Ort::CustomOpDomain>; // sessions may outlive us

} // namespace

EARN_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, OrtApiBase const* api_base)
{
    // the newest API table these headers know, else the oldest one this library needs (ORT 1.17)
    OrtApi const* api = api_base->GetApi(ORT_API_VERSION);
    if (api == nullptr)
    {
        api = api_base->GetApi(17);
    }
    if (api == nullptr)
    {
        std::fprintf(stderr, "earn_ort_ops: this ONNX Runtime (%s) is older than 1.17; upgrade onnxruntime\n",
            api_base->GetVersionString());
        return nullptr;
    }
    Ort::InitApi(api);
    try
    {
        Ort::CustomOpDomain domain(earn::kOpDomain);
        domain.Add(&g_op_f32);
        domain.Add(&g_op_f16);
        Ort::UnownedSessionOptions{options}.Add(domain);
        std::lock_guard<std::mutex> lock(g_domains_mutex);
        g_domains->push_back(std::move(domain));
        return nullptr;
    }
    catch (Ort::Exception const& e)
    {
        return Ort::Status(e).release();
    }
}

// What this library implements, for the Python loader's checks (no ONNX Runtime call needed); "kernel" is the copy
// that sessions created at the first call use.
EARN_EXPORT char const* EarnOrtOpsInfo()
{
    static std::string const info = std::string("{\"op\": \"") + earn::kOpName + "\", \"domain\": \"" + earn::kOpDomain
        + "\", \"op_version\": \"" + earn::kPluginVersion + "\", \"types\": [\"float32\", \"float16\"], \"kernel\": \""
        + isa_name(choose_isa()) + "\"}";
    return info.c_str();
}
