// libearn: top-K item recommendation from an earn-export engine directory, in C++ (no Python).
//
// An engine directory (docs/CONTRACTS.md "Engine directory") holds prefill.onnx / decode.onnx, manifest.json,
// the item trie as trie.*.npy and the prompt pieces. Recommender::load checks the manifest exactly as the
// Python runtime does (format version, sha256 of every file), builds prompts by concatenating the stored token
// ids (no tokenizer), runs the two graphs through the ONNX Runtime C++ API with buffers reused across steps,
// batches and calls, and runs the trie-constrained beam search with the Python semantics
// (earn_export/search/beam.py): dead beams, -1 padding, lowest-index tie-breaking at the beam cut, scores =
// sums of token log-probs.
//
// ONNX Runtime is loaded at run time (earn::load_onnxruntime) so that a C++ program and the Python package use
// one and the same libonnxruntime (the one inside the installed `onnxruntime` wheel, or a system one).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "earn/visibility.h"

namespace earn {

class IdMap;  // earn/id_map.hpp

/// Base of every libearn error; messages name the problem and the fix.
class EARN_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An engine directory that cannot be used as it is (missing/changed files, other format version, ...).
class EARN_API EngineDirError : public Error {
 public:
  using Error::Error;
};

/// A bad argument (top_k/beam out of range, unknown provider, ...).
class EARN_API InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// History item ids the engine's catalog does not know (on_unknown = Error).
class EARN_API UnknownItemError : public Error {
 public:
  explicit UnknownItemError(std::map<int64_t, std::vector<int64_t>> unknown);
  /// user index -> unknown item ids (in history order)
  const std::map<int64_t, std::vector<int64_t>>& unknown() const { return unknown_; }

 private:
  std::map<int64_t, std::vector<int64_t>> unknown_;
};

/// History ids in the catalog's original ids (Recommender::recommend_ids) that the engine's item id map does not
/// know (on_unknown = kError); they are named as the caller spelled them.
class EARN_API UnknownIdError : public Error {
 public:
  explicit UnknownIdError(std::map<int64_t, std::vector<std::string>> unknown);
  /// user index -> unknown original ids (in history order, as given)
  const std::map<int64_t, std::vector<std::string>>& unknown() const { return unknown_; }

 private:
  std::map<int64_t, std::vector<std::string>> unknown_;
};

/// The ONNX Runtime library could not be loaded or is too old for the headers libearn was built with.
class EARN_API RuntimeLibraryError : public Error {
 public:
  using Error::Error;
};

/// Load libonnxruntime from `path` ("" = $EARN_ORT_LIBRARY, then the library found at build time, then
/// "libonnxruntime.so.1" from the loader's search path). Called by Recommender::load when not called before;
/// a second call with another path throws. Returns the path that was loaded.
EARN_API std::string load_onnxruntime(const std::string& path = "");

/// Execution providers this ONNX Runtime library has (e.g. {"CPUExecutionProvider"}).
EARN_API std::vector<std::string> available_providers();

enum class OnUnknown { kError, kSkip };

struct Options {
  /// ONNX Runtime execution providers in order of preference; empty = TensorRT and CUDA when the library has
  /// them, then CPU (as the Python runtime's choose_providers).
  std::vector<std::string> providers;
  /// Custom-op libraries (RegisterCustomOpsLibrary), needed by graphs with `earn`-domain nodes.
  std::vector<std::string> custom_op_libraries;
  /// libonnxruntime to load (see load_onnxruntime); ignored when it is already loaded.
  std::string ort_library;
  /// Re-hash every file listed in the manifest (as Python's load_manifest(verify=True)).
  bool verify = true;
  /// Users per prefill/decode call (as Python's Recommender batch_size).
  int64_t batch_size = 64;
  /// ORT intra-op threads per session; 0 = ORT's default (one per physical core).
  int intra_op_threads = 0;
};

struct Result {
  int64_t users = 0;
  int64_t top_k = 0;
  std::vector<int64_t> items;      // [users * top_k], best first, -1 = fewer valid items
  std::vector<float> scores;       // [users * top_k], sum of token log-probs, -inf where items == -1
  std::vector<int64_t> skipped;    // [users] unknown ids dropped (OnUnknown::kSkip)
  std::vector<int64_t> truncated;  // [users] oldest items dropped beyond max_history
};

/// The top-K of Recommender::recommend_ids: the catalog's original ids (item_ids.json of the engine) and titles.
struct IdResult {
  int64_t users = 0;
  int64_t top_k = 0;
  std::vector<std::string> items;                 // [users * top_k] original ids as spelled in item_ids.json
                                                  // (an int map's in decimal), best first; "" where index == -1
  std::vector<int64_t> index;                     // [users * top_k] catalog indices, -1 = fewer valid items
  std::vector<float> scores;                      // [users * top_k], as Result::scores
  std::vector<std::optional<std::string>> titles;  // [users * top_k] the item's title; nullopt: none in the log
  std::vector<int64_t> skipped;                   // [users] unknown ids dropped (OnUnknown::kSkip)
  std::vector<int64_t> truncated;                 // [users] oldest items dropped beyond max_history
  std::map<int64_t, std::vector<std::string>> unknown;  // kSkip: user -> original ids dropped, as given
};

/// Where the time of recommend() went (added up over its batches).
struct Timings {
  double total_s = 0;          // whole call
  double prefill_graph_s = 0;  // inside Session::Run of prefill.onnx
  double decode_graph_s = 0;   // inside Session::Run of decode.onnx
  int64_t batches = 0;
  int64_t decode_calls = 0;
  /// total - graphs: prompt building, beam search, KV reordering, binding (the bookkeeping + copies)
  double bookkeeping_s() const { return total_s - prefill_graph_s - decode_graph_s; }
};

class EARN_API Recommender {
 public:
  /// Open an engine directory; throws EngineDirError (with the fix) for a directory that cannot be used.
  static std::shared_ptr<Recommender> load(const std::string& engine_dir, const Options& options = {});
  ~Recommender();
  Recommender(const Recommender&) = delete;
  Recommender& operator=(const Recommender&) = delete;

  /// Top-`top_k` items per history (item ids, oldest first). Thread-safe: sessions are shared, every call
  /// takes its own buffers (reused from a pool). Rules as the Python Recommender: unknown ids raise
  /// UnknownItemError (or are dropped and counted with kSkip), an empty history is the template alone, a
  /// history longer than max_history keeps its most recent items (counted), users go in batches of batch_size.
  Result recommend(const std::vector<std::vector<int64_t>>& histories, int64_t top_k = 20, int64_t beam = 20,
                   OnUnknown on_unknown = OnUnknown::kError, Timings* timings = nullptr) const;

  /// The same search in the catalog's original ids, for an engine with an item id map (item_ids.json, trained on
  /// the user's own log; docs/own-ids.md): history ids are looked up by their spelling as in the map ("sku-528";
  /// an int map's ids in decimal, "1013"); unknown ones raise UnknownIdError naming them as given (or, with kSkip,
  /// are dropped, counted in `skipped` and listed in `unknown`). Throws InvalidArgument, naming the engine, when
  /// it has no map. Thread-safe as recommend().
  IdResult recommend_ids(const std::vector<std::vector<std::string>>& histories, int64_t top_k = 20,
                         int64_t beam = 20, OnUnknown on_unknown = OnUnknown::kError,
                         Timings* timings = nullptr) const;
  /// Whether the engine carries an item id map (item_ids.json).
  bool has_id_map() const;
  /// The engine's item id map (original id <-> catalog index, titles); InvalidArgument when it has none.
  const IdMap& id_map() const;

  int64_t max_history() const;
  int64_t batch_size() const;
  int64_t id_length() const;
  bool is_known(int64_t item) const;
  /// Providers the sessions run on, in order.
  std::vector<std::string> providers() const;
  /// manifest.json as read (JSON text).
  std::string manifest_json() const;

  struct Impl;

 private:
  explicit Recommender(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace earn
