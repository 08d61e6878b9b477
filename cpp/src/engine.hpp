// An engine directory read into plain structs: manifest checks, the trie (CSR) and the prompt pieces.
//
// Only engine.cpp sees the JSON library; everything else uses these structs. The checks and messages follow
// earn_export/engine/manifest.py (load_manifest), earn_export/runtime/recommender.py (Recommender.load),
// earn_export/engine/trie_files.py (trie arrays) and earn_export/engine/prompt_pieces.py (PromptPieces).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace earn {

/// One dimension of a graph tensor in the manifest: a number or a symbol ("batch", "prompt_len", "beam", "t",
/// "t+1").
struct Dim {
  int64_t value = -1;
  std::string symbol;  // empty: fixed `value`
};

struct TensorSpec {
  std::string name;
  std::string dtype;  // "int64" | "float32" | "float16"
  std::vector<Dim> shape;
};

/// The item trie, docs/CONTRACTS.md "Trie (CSR)": children of node n are edges offsets[n]:offsets[n+1].
struct Trie {
  std::vector<int64_t> offsets, tokens, children, leaf_item;
  int64_t depth = 0;
  int64_t n_nodes() const { return static_cast<int64_t>(leaf_item.size()); }
};

/// docs/CONTRACTS.md "Prompt pieces": a prompt row is a concatenation of stored token-id lists.
struct PromptPieces {
  std::vector<int64_t> special_prefix, prefix, head, sep, tail, suffix;
  std::vector<int64_t> item_offsets, item_tokens;
  int64_t pad_id = 0;
  bool known(int64_t item) const {
    return item >= 0 && item + 1 < static_cast<int64_t>(item_offsets.size()) &&
           item_offsets[item + 1] > item_offsets[item];
  }
  /// Append the row of `history` (already checked and truncated) to `out`; throws Error for an item without
  /// tokens or an empty row.
  void append_row(const std::vector<int64_t>& history, std::vector<int64_t>& out) const;
};

struct EngineSpec {
  std::string dir;
  std::string manifest_text;
  int64_t num_layers = 0, n_kv_heads = 0, head_dim = 0, vocab_out = 0, max_history = 20;
  std::string kv_dtype;                     // "float32" | "float16"
  bool full_vocab = false;                  // vocab_out_token_ids null: column = token id
  std::vector<int64_t> vocab_out_token_ids;
  std::string prefill_file, decode_file;    // absolute paths
  std::vector<TensorSpec> prefill_inputs, prefill_outputs, decode_inputs, decode_outputs;
  Trie trie;
  PromptPieces pieces;
  std::vector<int64_t> columns;             // trie token id -> column of the graphs' log-prob output (-1: none)
  std::vector<uint8_t> known_items;         // item id -> has a leaf in the trie
};

/// Read and check an engine directory (see the file comment); `verify` re-hashes every listed file.
EngineSpec load_engine(const std::string& dir, bool verify);

/// sha256 hex digest of a file (OpenSSL).
std::string sha256_file(const std::string& path);

/// Domains of the model-level opset imports of an ONNX file (read from the protobuf without loading the
/// graph), e.g. {"", "com.microsoft", "earn"}.
std::vector<std::string> onnx_opset_domains(const std::string& path);

}  // namespace earn
