// Recommender: the engine's two graphs in ONNX Runtime sessions (shared by every call) and per-call
// workspaces (pooled) that hold every buffer a search needs.
//
// Buffers and copies (the "bookkeeping + copies" of the benchmark):
// - prefill writes the prompt/register KV (present.*) straight into workspace buffers (IoBinding with
//   pre-allocated outputs); decode reads those same buffers as past_key_values.* at every step: the shared
//   prompt KV is never copied, and never duplicated per beam;
// - decode writes generated_present.* [B, K, Hkv, t+1, D] into one buffer per tensor; before the next step
//   the rows are gathered by the beam parents into the input buffer (the only copy: B*K*Hkv*t*D elements);
// - logits, token, position and mask buffers are reused across steps, batches and calls (pooled workspaces,
//   grown on demand, never shrunk).
// With a CUDA/TensorRT provider first, present.* are left on the device (bound to the device allocator) and
// fed back as they are; generated KV and logits go through host buffers. That path is unverified here (no GPU).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <set>
#include <sys/stat.h>

#include "beam_search.hpp"
#include "earn/id_map.hpp"
#include "earn/recommender.hpp"
#include "engine.hpp"
#include "ort_runtime.hpp"

namespace earn {

UnknownItemError::UnknownItemError(std::map<int64_t, std::vector<int64_t>> unknown)
    : Error([&] {
        std::set<int64_t> ids;
        for (const auto& kv : unknown) ids.insert(kv.second.begin(), kv.second.end());
        const auto list = [](auto begin, auto end, size_t n, size_t limit) {
          std::string s = "[";
          size_t i = 0;
          for (auto it = begin; it != end && i < limit; ++it, ++i) s += (i ? ", " : "") + std::to_string(*it);
          return s + "]" + (n > limit ? " ..." : "");
        };
        std::vector<int64_t> users;
        for (const auto& kv : unknown) users.push_back(kv.first);
        return "unknown item ids " + list(ids.begin(), ids.end(), ids.size(), 20) + " in the histories of users " +
               list(users.begin(), users.end(), users.size(), 20) +
               "; the engine's catalog has no such items. Map them to catalog ids, or pass on_unknown='skip' to drop "
               "them (counted in RecommendResult.skipped).";
      }()),
      unknown_(std::move(unknown)) {}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// Growable, 64-byte aligned storage (never shrunk).
class Buffer {
 public:
  void* reserve(size_t bytes) {
    if (bytes > mem_.size() * sizeof(Line)) mem_.resize((bytes + sizeof(Line) - 1) / sizeof(Line));
    return mem_.data();
  }
  void* data() { return mem_.data(); }

 private:
  struct alignas(64) Line {
    unsigned char b[64];
  };
  std::vector<Line> mem_;
};

std::vector<int64_t> eval_shape(const TensorSpec& t, int64_t batch, int64_t prompt_len, int64_t beam, int64_t gen) {
  std::vector<int64_t> out;
  for (const Dim& d : t.shape) {
    if (d.symbol.empty()) out.push_back(d.value);
    else if (d.symbol == "batch") out.push_back(batch);
    else if (d.symbol == "prompt_len") out.push_back(prompt_len);
    else if (d.symbol == "beam") out.push_back(beam);
    else if (d.symbol == "t") out.push_back(gen);
    else if (d.symbol == "t+1") out.push_back(gen + 1);
    else throw EngineDirError(t.name + ": unknown dimension '" + d.symbol + "' in the manifest; re-export the engine");
  }
  return out;
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::vector<std::string> session_names(Ort::Session& s, bool inputs) {
  Ort::AllocatorWithDefaultOptions alloc;
  std::vector<std::string> out;
  const size_t n = inputs ? s.GetInputCount() : s.GetOutputCount();
  for (size_t i = 0; i < n; ++i)
    out.emplace_back((inputs ? s.GetInputNameAllocated(i, alloc) : s.GetOutputNameAllocated(i, alloc)).get());
  return out;
}

}  // namespace

// ------------------------------------------------------------------------------------------------ sessions
struct EARN_HIDDEN Recommender::Impl {  // internal: not exported from libearn.so
  EngineSpec spec;
  Options options;
  std::vector<std::string> providers;
  std::unique_ptr<Ort::Session> prefill, decode;
  Ort::MemoryInfo cpu{nullptr};
  bool device_kv = false;  // present.* left on the device (CUDA/TensorRT first)
  ONNXTensorElementDataType kv_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  size_t kv_elem = 4;
  int64_t n_kv = 0;  // 2 * num_layers
  std::optional<IdMap> id_map;  // item_ids.json when the manifest lists one (original ids, titles)

  struct Workspace;
  mutable std::mutex pool_mutex;
  mutable std::vector<std::unique_ptr<Workspace>> pool;

  std::unique_ptr<Workspace> acquire() const;
  void release(std::unique_ptr<Workspace> ws) const;
};

struct Recommender::Impl::Workspace : DecodeModel {
  const Impl& eng;
  Ort::IoBinding prefill_binding;
  Ort::IoBinding decode_binding;
  Ort::RunOptions run_options;
  Buffer ids, mask, positions, last_position, tokens, prefill_logits, decode_logits;
  std::vector<Buffer> present, gen_in, gen_out;
  std::vector<Ort::Value> present_values;  // bound to decode's past_key_values.* at every step
  std::vector<int64_t> row;                // one prompt row while building the batch
  BeamScratch scratch;
  BeamOutput result;
  int64_t users = 0, prompt_len = 0;
  Timings* timings = nullptr;

  explicit Workspace(const Impl& e)
      : eng(e), prefill_binding(*e.prefill), decode_binding(*e.decode), present(e.n_kv), gen_in(e.n_kv),
        gen_out(e.n_kv) {}

  template <typename T>
  Ort::Value tensor(Buffer& buf, const std::vector<int64_t>& shape) {
    return Ort::Value::CreateTensor<T>(eng.cpu, static_cast<T*>(buf.data()), static_cast<size_t>(numel(shape)),
                                       shape.data(), shape.size());
  }

  Ort::Value kv_tensor(Buffer& buf, const std::vector<int64_t>& shape) {
    return Ort::Value::CreateTensor(eng.cpu, buf.data(), static_cast<size_t>(numel(shape)) * eng.kv_elem,
                                    shape.data(), shape.size(), eng.kv_type);
  }

  void run(Ort::Session& session, Ort::IoBinding& binding, double& graph_s) {
    const auto t0 = Clock::now();
    session.Run(run_options, binding);
    if (timings) graph_s += seconds_since(t0);
  }

  /// prefill for `users` rows already in ids/mask [users, prompt_len]; returns log-probs [users, vocab_out].
  const float* run_prefill(int64_t kmax_beam) {
    const EngineSpec& s = eng.spec;
    const int64_t B = users, P = prompt_len, V = s.vocab_out;
    const int64_t gen_cap = B * kmax_beam * s.n_kv_heads * (s.trie.depth > 1 ? s.trie.depth - 1 : 0) * s.head_dim;
    prefill_binding.ClearBoundInputs();
    prefill_binding.ClearBoundOutputs();
    const std::vector<int64_t> bp{B, P};
    prefill_binding.BindInput(s.prefill_inputs[0].name.c_str(), tensor<int64_t>(ids, bp));
    prefill_binding.BindInput(s.prefill_inputs[1].name.c_str(), tensor<int64_t>(mask, bp));
    prefill_logits.reserve(static_cast<size_t>(B * V) * sizeof(float));
    prefill_binding.BindOutput(s.prefill_outputs[0].name.c_str(), tensor<float>(prefill_logits, {B, V}));
    present_values.clear();
    for (int64_t i = 0; i < eng.n_kv; ++i) {
      const TensorSpec& o = s.prefill_outputs[1 + i];
      if (eng.device_kv) {
        Ort::MemoryInfo dev("Cuda", OrtDeviceAllocator, 0, OrtMemTypeDefault);
        prefill_binding.BindOutput(o.name.c_str(), dev);
      } else {
        const auto shape = eval_shape(o, B, P, 1, 0);
        present[i].reserve(static_cast<size_t>(numel(shape)) * eng.kv_elem);
        present_values.push_back(kv_tensor(present[i], shape));
        prefill_binding.BindOutput(o.name.c_str(), present_values.back());
      }
      gen_in[i].reserve(static_cast<size_t>(gen_cap) * eng.kv_elem + 64);
      gen_out[i].reserve(static_cast<size_t>(gen_cap) * eng.kv_elem + 64);
    }
    double dummy = 0;
    run(*eng.prefill, prefill_binding, timings ? timings->prefill_graph_s : dummy);
    if (eng.device_kv) {
      std::vector<Ort::Value> outs = prefill_binding.GetOutputValues();
      for (size_t i = 1; i < outs.size(); ++i) present_values.push_back(std::move(outs[i]));
    }
    // decode position of step s is the last prompt position + s (Python: max(mask.sum(-1) - 1, 0) + step)
    auto* m = static_cast<const int64_t*>(mask.data());
    auto* last = static_cast<int64_t*>(last_position.reserve(static_cast<size_t>(B) * sizeof(int64_t)));
    for (int64_t b = 0; b < B; ++b) {
      int64_t n = 0;
      for (int64_t p = 0; p < P; ++p) n += m[b * P + p];
      last[b] = std::max<int64_t>(n - 1, 0);
    }
    return static_cast<const float*>(prefill_logits.data());
  }

  const float* decode(const int64_t* step_tokens, const int64_t* parents, int64_t B, int64_t K,
                      int64_t step) override {
    const EngineSpec& s = eng.spec;
    const int64_t V = s.vocab_out, t = step - 1, P = prompt_len;
    const int64_t block = s.n_kv_heads * t * s.head_dim;  // elements of one beam's generated KV per tensor
    if (t > 0) {  // reorder the per-beam generated KV by the parents (gather of whole beam rows)
      const size_t bytes = static_cast<size_t>(block) * eng.kv_elem;
      for (int64_t i = 0; i < eng.n_kv; ++i) {
        const auto* src = static_cast<const unsigned char*>(gen_out[i].data());
        auto* dst = static_cast<unsigned char*>(gen_in[i].data());
        for (int64_t b = 0; b < B; ++b)
          for (int64_t k = 0; k < K; ++k)
            std::memcpy(dst + static_cast<size_t>(b * K + k) * bytes,
                        src + static_cast<size_t>(b * K + parents[b * K + k]) * bytes, bytes);
      }
    }
    auto* tok = static_cast<int64_t*>(tokens.reserve(static_cast<size_t>(B * K) * sizeof(int64_t)));
    auto* pos = static_cast<int64_t*>(positions.reserve(static_cast<size_t>(B * K) * sizeof(int64_t)));
    const auto* last = static_cast<const int64_t*>(last_position.data());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < K; ++k) {
        tok[b * K + k] = step_tokens[b * K + k];
        pos[b * K + k] = last[b] + step;
      }
    decode_binding.ClearBoundInputs();
    decode_binding.ClearBoundOutputs();
    const std::vector<int64_t> bk1{B, K, 1};
    decode_binding.BindInput(s.decode_inputs[0].name.c_str(), tensor<int64_t>(tokens, bk1));
    decode_binding.BindInput(s.decode_inputs[1].name.c_str(), tensor<int64_t>(positions, bk1));
    decode_binding.BindInput(s.decode_inputs[2].name.c_str(), tensor<int64_t>(mask, {B, P}));
    for (int64_t i = 0; i < eng.n_kv; ++i) {
      decode_binding.BindInput(s.decode_inputs[3 + i].name.c_str(), present_values[i]);
      const TensorSpec& g = s.decode_inputs[3 + eng.n_kv + i];
      decode_binding.BindInput(g.name.c_str(), kv_tensor(gen_in[i], eval_shape(g, B, P, K, t)));
    }
    decode_logits.reserve(static_cast<size_t>(B * K * V) * sizeof(float));
    decode_binding.BindOutput(s.decode_outputs[0].name.c_str(), tensor<float>(decode_logits, {B, K, V}));
    for (int64_t i = 0; i < eng.n_kv; ++i) {
      const TensorSpec& g = s.decode_outputs[1 + i];
      decode_binding.BindOutput(g.name.c_str(), kv_tensor(gen_out[i], eval_shape(g, B, P, K, t)));
    }
    double dummy = 0;
    run(*eng.decode, decode_binding, timings ? timings->decode_graph_s : dummy);
    if (timings) timings->decode_calls += 1;
    return static_cast<const float*>(decode_logits.data());
  }
};

std::unique_ptr<Recommender::Impl::Workspace> Recommender::Impl::acquire() const {
  {
    std::lock_guard<std::mutex> lock(pool_mutex);
    if (!pool.empty()) {
      auto ws = std::move(pool.back());
      pool.pop_back();
      return ws;
    }
  }
  return std::make_unique<Workspace>(*this);
}

void Recommender::Impl::release(std::unique_ptr<Workspace> ws) const {
  ws->timings = nullptr;
  std::lock_guard<std::mutex> lock(pool_mutex);
  pool.push_back(std::move(ws));
}

// ------------------------------------------------------------------------------------------------ loading
namespace {

std::vector<std::string> choose_providers(const std::vector<std::string>& wanted) {
  const std::vector<std::string> available = Ort::GetAvailableProviders();
  const auto has = [&](const std::string& p) { return std::find(available.begin(), available.end(), p) != available.end(); };
  std::vector<std::string> out;
  if (wanted.empty()) {  // as earn_export.runtime.backends.choose_providers
    for (const char* p : {"TensorrtExecutionProvider", "CUDAExecutionProvider"})
      if (has(p)) out.emplace_back(p);
    out.emplace_back("CPUExecutionProvider");
    return out;
  }
  for (const auto& p : wanted) {
    if (!has(p)) {
      std::string list;
      for (const auto& a : available) list += (list.empty() ? "" : ", ") + a;
      throw InvalidArgument("execution provider '" + p + "' is not in this ONNX Runtime library (it has: " + list +
                            "); pick one of those");
    }
    out.push_back(p);
  }
  return out;
}

void append_providers(Ort::SessionOptions& so, const std::vector<std::string>& providers) {
  const OrtApi& api = Ort::GetApi();
  for (const auto& p : providers) {
    if (p == "CUDAExecutionProvider") {  // unverified here: no GPU
      OrtCUDAProviderOptionsV2* o = nullptr;
      Ort::ThrowOnError(api.CreateCUDAProviderOptions(&o));
      std::unique_ptr<OrtCUDAProviderOptionsV2, decltype(api.ReleaseCUDAProviderOptions)> guard(
          o, api.ReleaseCUDAProviderOptions);
      so.AppendExecutionProvider_CUDA_V2(*o);
    } else if (p == "TensorrtExecutionProvider") {  // unverified here: no GPU / TensorRT
      OrtTensorRTProviderOptionsV2* o = nullptr;
      Ort::ThrowOnError(api.CreateTensorRTProviderOptions(&o));
      std::unique_ptr<OrtTensorRTProviderOptionsV2, decltype(api.ReleaseTensorRTProviderOptions)> guard(
          o, api.ReleaseTensorRTProviderOptions);
      so.AppendExecutionProvider_TensorRT_V2(*o);
    } else if (p != "CPUExecutionProvider") {
      so.AppendExecutionProvider(p, {});
    }
  }
}

void check_names(const std::string& file, const std::vector<std::string>& got, const std::vector<TensorSpec>& want,
                 const char* kind) {
  std::set<std::string> a(got.begin(), got.end()), b;
  for (const auto& t : want) b.insert(t.name);
  if (a != b)
    throw EngineDirError(file + ": the graph's " + kind + " (" + std::to_string(got.size()) +
                         ") differ from the manifest's (" + std::to_string(want.size()) + "); re-export the engine");
}

}  // namespace

Recommender::Recommender(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Recommender::~Recommender() = default;

std::shared_ptr<Recommender> Recommender::load(const std::string& engine_dir, const Options& options) {
  if (options.batch_size < 1) throw InvalidArgument("batch_size must be >= 1, got " + std::to_string(options.batch_size));
  load_onnxruntime(options.ort_library);  // first: Impl holds ORT objects, whose destructors call the API
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->spec = load_engine(engine_dir, options.verify);  // checks the sha256 of item_ids.json too
  impl->id_map = IdMap::load_engine(engine_dir);
  EngineSpec& s = impl->spec;
  impl->n_kv = 2 * s.num_layers;
  if (s.kv_dtype == "float16") {
    impl->kv_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    impl->kv_elem = 2;
  }
  const auto count = [](const std::vector<TensorSpec>& v, const std::string& prefix) {
    return std::count_if(v.begin(), v.end(), [&](const TensorSpec& t) { return t.name.rfind(prefix, 0) == 0; });
  };
  if (count(s.decode_inputs, "past_key_values.") != impl->n_kv || count(s.decode_inputs, "generated.") != impl->n_kv ||
      static_cast<int64_t>(s.decode_inputs.size()) != 3 + 2 * impl->n_kv ||
      static_cast<int64_t>(s.prefill_outputs.size()) != 1 + impl->n_kv ||
      static_cast<int64_t>(s.decode_outputs.size()) != 1 + impl->n_kv || s.prefill_inputs.size() != 2)
    throw EngineDirError(engine_dir + ": decode.onnx has " + std::to_string(count(s.decode_inputs, "past_key_values.")) +
                         " past / " + std::to_string(count(s.decode_inputs, "generated.")) +
                         " generated inputs, manifest says " + std::to_string(impl->n_kv) + " each; re-export");

  // plugin graphs (ONNX domain `earn`, e.g. CompactedAttention from --attention plugin) need their op library
  for (const std::string& file : {s.prefill_file, s.decode_file}) {
    const auto domains = onnx_opset_domains(file);
    if (std::find(domains.begin(), domains.end(), "earn") != domains.end() && options.custom_op_libraries.empty())
      throw EngineDirError(file + ": the graph uses custom ops of ONNX domain 'earn' (an engine exported with "
                           "--attention plugin, e.g. CompactedAttention); ONNX Runtime needs their op library: pass "
                           "custom_op_libraries=['/path/to/libearn_ort_ops.so'] (earn-recommend --op-library PATH), "
                           "built from plugins/, or re-export without --attention plugin");
  }
  for (const auto& lib : options.custom_op_libraries)
    if (!file_exists(lib))
      throw InvalidArgument("custom-op library " + lib + " does not exist; build it (plugins/) or fix the path");

  Ort::Env& env = ort_env();
  impl->providers = choose_providers(options.providers);
  impl->device_kv = impl->providers.front() == "CUDAExecutionProvider" ||
                    impl->providers.front() == "TensorrtExecutionProvider";
  impl->cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  Ort::SessionOptions so;
  so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  if (options.intra_op_threads > 0) so.SetIntraOpNumThreads(options.intra_op_threads);
  for (const auto& lib : options.custom_op_libraries) {
    try {
      so.RegisterCustomOpsLibrary(lib.c_str());
    } catch (const Ort::Exception& exc) {
      throw InvalidArgument("cannot register the custom-op library " + lib + ": " + exc.what());
    }
  }
  append_providers(so, impl->providers);
  for (auto* target : {&impl->prefill, &impl->decode}) {
    const std::string& file = target == &impl->prefill ? s.prefill_file : s.decode_file;
    try {
      *target = std::make_unique<Ort::Session>(env, file.c_str(), so);
    } catch (const Ort::Exception& exc) {
      throw EngineDirError(file + ": ONNX Runtime cannot open the graph (" + exc.what() +
                           "); re-export the engine, or pass the custom-op library it needs");
    }
  }
  check_names(s.prefill_file, session_names(*impl->prefill, true), s.prefill_inputs, "inputs");
  check_names(s.prefill_file, session_names(*impl->prefill, false), s.prefill_outputs, "outputs");
  check_names(s.decode_file, session_names(*impl->decode, true), s.decode_inputs, "inputs");
  check_names(s.decode_file, session_names(*impl->decode, false), s.decode_outputs, "outputs");
  return std::shared_ptr<Recommender>(new Recommender(std::move(impl)));
}

// ------------------------------------------------------------------------------------------------ recommend
Result Recommender::recommend(const std::vector<std::vector<int64_t>>& histories, int64_t top_k, int64_t beam,
                              OnUnknown on_unknown, Timings* timings) const {
  const auto t0 = Clock::now();
  if (beam < 1 || top_k < 1 || top_k > beam)
    throw InvalidArgument("need 1 <= top_k <= beam, got top_k=" + std::to_string(top_k) +
                          ", beam=" + std::to_string(beam));
  const Impl& im = *impl_;
  const EngineSpec& s = im.spec;
  const int64_t U = static_cast<int64_t>(histories.size());
  Result r;
  r.users = U;
  r.top_k = top_k;
  r.skipped.assign(static_cast<size_t>(U), 0);
  r.truncated.assign(static_cast<size_t>(U), 0);

  // validate, filter and truncate (Recommender.prepare)
  std::vector<std::vector<int64_t>> clean(static_cast<size_t>(U));
  std::map<int64_t, std::vector<int64_t>> unknown;
  for (int64_t u = 0; u < U; ++u) {
    auto& h = clean[u];
    h.reserve(histories[u].size());
    for (int64_t item : histories[u]) {
      if (item >= 0 && item < static_cast<int64_t>(s.known_items.size()) && s.known_items[item]) h.push_back(item);
      else unknown[u].push_back(item);
    }
    r.skipped[u] = static_cast<int64_t>(histories[u].size() - h.size());
    if (static_cast<int64_t>(h.size()) > s.max_history) {
      r.truncated[u] = static_cast<int64_t>(h.size()) - s.max_history;
      h.erase(h.begin(), h.end() - (s.max_history > 0 ? s.max_history : 0));
    }
  }
  if (!unknown.empty() && on_unknown == OnUnknown::kError) throw UnknownItemError(std::move(unknown));

  r.items.assign(static_cast<size_t>(U * top_k), -1);
  r.scores.assign(static_cast<size_t>(U * top_k), -std::numeric_limits<float>::infinity());
  std::unique_ptr<Impl::Workspace> ws = im.acquire();
  ws->timings = timings;
  try {
    const int64_t bs = im.options.batch_size;
    for (int64_t start = 0; start < U; start += bs) {
      const int64_t B = std::min(bs, U - start);
      // prompts: concatenated pieces, left-padded with pad_id (mask 0 on pads)
      std::vector<int64_t>& row = ws->row;
      std::vector<size_t> ends;
      row.clear();
      for (int64_t b = 0; b < B; ++b) {
        s.pieces.append_row(clean[start + b], row);
        ends.push_back(row.size());
      }
      int64_t P = 0;
      for (int64_t b = 0; b < B; ++b) P = std::max<int64_t>(P, ends[b] - (b ? ends[b - 1] : 0));
      auto* ids = static_cast<int64_t*>(ws->ids.reserve(static_cast<size_t>(B * P) * sizeof(int64_t)));
      auto* mask = static_cast<int64_t*>(ws->mask.reserve(static_cast<size_t>(B * P) * sizeof(int64_t)));
      for (int64_t b = 0; b < B; ++b) {
        const size_t begin = b ? ends[b - 1] : 0, len = ends[b] - begin;
        const int64_t pad = P - static_cast<int64_t>(len);
        std::fill(ids + b * P, ids + b * P + pad, s.pieces.pad_id);
        std::fill(mask + b * P, mask + b * P + pad, 0);
        std::copy(row.begin() + begin, row.begin() + ends[b], ids + b * P + pad);
        std::fill(mask + b * P + pad, mask + (b + 1) * P, 1);
      }
      ws->users = B;
      ws->prompt_len = P;
      const float* first = ws->run_prefill(beam);
      beam_search(s.trie, s.columns, s.vocab_out, B, beam, first, *ws, ws->scratch, ws->result);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t k = 0; k < top_k; ++k) {
          r.items[(start + b) * top_k + k] = ws->result.items[b * beam + k];
          r.scores[(start + b) * top_k + k] = ws->result.scores[b * beam + k];
        }
      if (timings) timings->batches += 1;
    }
  } catch (...) {
    im.release(std::move(ws));
    throw;
  }
  im.release(std::move(ws));
  if (timings) timings->total_s += seconds_since(t0);
  return r;
}

int64_t Recommender::max_history() const { return impl_->spec.max_history; }
int64_t Recommender::batch_size() const { return impl_->options.batch_size; }
int64_t Recommender::id_length() const { return impl_->spec.trie.depth; }
bool Recommender::is_known(int64_t item) const {
  const auto& k = impl_->spec.known_items;
  return item >= 0 && item < static_cast<int64_t>(k.size()) && k[item];
}
bool Recommender::has_id_map() const { return impl_->id_map.has_value(); }
const IdMap& Recommender::id_map() const {
  if (!impl_->id_map)
    throw InvalidArgument(
        "engine " + impl_->spec.dir + " has no item id map (item_ids.json): it was trained on data without "
        "original ids, or exported before id maps, and speaks catalog indices 0..n-1 only — call recommend() with "
        "catalog indices, or retrain/re-export from `earn-export train --interactions FILE`");
  return *impl_->id_map;
}
std::vector<std::string> Recommender::providers() const { return impl_->providers; }
std::string Recommender::manifest_json() const { return impl_->spec.manifest_text; }

}  // namespace earn
