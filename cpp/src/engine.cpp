#include "engine.hpp"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "earn/recommender.hpp"
#include "npy.hpp"

namespace earn {
namespace {

using nlohmann::json;

constexpr int64_t kFormatVersion = 2;       // earn_export/engine/manifest.py FORMAT_VERSION
constexpr int64_t kPiecesFormatVersion = 1;  // earn_export/engine/prompt_pieces.py PIECES_FORMAT_VERSION

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

// Python's repr of a list of strings, so messages read as the Python runtime's do.
std::string py_list(const std::vector<std::string>& names) {
  std::string s = "[";
  for (size_t i = 0; i < names.size(); ++i) s += (i ? ", '" : "'") + names[i] + "'";
  return s + "]";
}

std::string py_ints(const std::vector<int64_t>& v, size_t limit) {
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < limit; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<int64_t> int_list(const json& doc, const char* key, const std::string& where) {
  if (!doc.contains(key) || !doc[key].is_array())
    throw EngineDirError(where + ": '" + key + "' is missing or not a list; re-export the engine");
  std::vector<int64_t> out;
  for (const auto& v : doc[key]) {
    if (!v.is_number_integer()) throw EngineDirError(where + ": '" + key + "' holds a non-integer; re-export the engine");
    out.push_back(v.get<int64_t>());
  }
  return out;
}

int64_t get_int(const json& obj, const char* key, const std::string& where) {
  if (!obj.contains(key) || !obj[key].is_number_integer())
    throw EngineDirError(where + ": manifest field '" + key + "' is missing or not an integer; re-export the engine");
  return obj[key].get<int64_t>();
}

std::vector<TensorSpec> tensor_specs(const json& list, const std::string& where) {
  std::vector<TensorSpec> out;
  if (!list.is_array()) throw EngineDirError(where + ": graph I/O list missing in the manifest; re-export the engine");
  for (const auto& io : list) {
    TensorSpec t;
    t.name = io.at("name").get<std::string>();
    t.dtype = io.at("dtype").get<std::string>();
    for (const auto& d : io.at("shape")) {
      Dim dim;
      if (d.is_number_integer()) dim.value = d.get<int64_t>();
      else dim.symbol = d.get<std::string>();
      t.shape.push_back(dim);
    }
    out.push_back(std::move(t));
  }
  return out;
}

Trie load_trie(const std::string& dir, const std::string& prefix, int64_t manifest_depth) {
  Trie t;
  const char* keys[] = {"offsets", "tokens", "children", "leaf_item", "depth"};
  std::vector<Int64Array> a;
  for (const char* key : keys) {
    const std::string path = join(dir, prefix + "." + key + ".npy");
    if (!is_file(path))
      throw EngineDirError(path + ": missing trie array; re-export the engine (save_trie_arrays writes all 5 arrays)");
    a.push_back(read_npy_int64(path));
  }
  const std::string where = join(dir, prefix + ".*.npy");
  for (int i = 0; i < 4; ++i)
    if (a[i].shape.size() != 1) throw EngineDirError(where + ": " + keys[i] + " is not 1-d; re-export the engine");
  if (a[4].data.size() != 1) throw EngineDirError(where + ": depth is not a scalar; re-export the engine");
  t.offsets = std::move(a[0].data);
  t.tokens = std::move(a[1].data);
  t.children = std::move(a[2].data);
  t.leaf_item = std::move(a[3].data);
  t.depth = a[4].data[0];
  // the checks that keep the search in bounds (the Python Trie assumes a well-formed CSR from Trie.build)
  const int64_t n = t.n_nodes(), e = static_cast<int64_t>(t.tokens.size());
  const auto bad = [&](const std::string& what) {
    throw EngineDirError(where + ": not a valid trie (" + what + "); re-export the engine");
  };
  if (n < 1 || static_cast<int64_t>(t.offsets.size()) != n + 1) bad("offsets must have n_nodes + 1 entries");
  if (t.offsets[0] != 0 || t.offsets[n] != e) bad("offsets must start at 0 and end at the number of edges");
  for (int64_t i = 0; i < n; ++i)
    if (t.offsets[i + 1] < t.offsets[i]) bad("offsets decrease");
  if (static_cast<int64_t>(t.children.size()) != e) bad("tokens and children differ in length");
  for (int64_t i = 0; i < e; ++i) {
    if (t.children[i] <= 0 || t.children[i] >= n) bad("a child index is out of range");
    if (t.tokens[i] < 0) bad("a negative token id");
  }
  if (t.depth < 1) bad("depth < 1");
  if (manifest_depth >= 0 && manifest_depth != t.depth)
    bad("depth " + std::to_string(t.depth) + " differs from the manifest's " + std::to_string(manifest_depth));
  return t;
}

PromptPieces load_pieces(const std::string& dir, const std::string& file) {
  const std::string path = join(dir, file);
  const std::string fix = "re-export the engine (`earn-export export CKPT --out DIR`)";
  if (!is_file(path)) throw EngineDirError(path + ": missing; " + fix);
  json doc;
  try {
    doc = json::parse(read_text(path));
  } catch (const json::exception& exc) {
    throw EngineDirError(path + ": not valid JSON (" + exc.what() + "); " + fix);
  }
  const json version = doc.value("format_version", json());
  if (!version.is_number_integer() || version.get<int64_t>() != kPiecesFormatVersion)
    throw EngineDirError(path + ": format_version " + version.dump() + " is not supported (expects " +
                         std::to_string(kPiecesFormatVersion) + "); " + fix);
  PromptPieces p;
  try {
    p.special_prefix = int_list(doc, "special_prefix", path);
    p.prefix = int_list(doc, "prefix", path);
    p.head = int_list(doc, "head", path);
    p.sep = int_list(doc, "sep", path);
    p.tail = int_list(doc, "tail", path);
    p.suffix = int_list(doc, "suffix", path);
    p.pad_id = doc.value("pad_id", int64_t{0});
    const Int64Array off = read_npy_int64(join(dir, doc.at("item_offsets").get<std::string>()));
    const Int64Array tok = read_npy_int64(join(dir, doc.at("item_tokens").get<std::string>()));
    p.item_offsets = off.data;
    p.item_tokens = tok.data;
    bool ok = off.shape.size() == 1 && !off.data.empty() && off.data[0] == 0 &&
              off.data.back() == static_cast<int64_t>(tok.data.size());
    for (size_t i = 1; ok && i < off.data.size(); ++i) ok = off.data[i] >= off.data[i - 1];
    if (!ok)
      throw EngineDirError(path + ": prompt item offsets are not a CSR index over the item tokens (must start at 0, "
                           "never decrease, end at len(item_tokens)); re-export the engine");
  } catch (const json::exception& exc) {
    throw EngineDirError(path + ": cannot read the prompt pieces (" + exc.what() + "); " + fix);
  }
  return p;
}

}  // namespace

void PromptPieces::append_row(const std::vector<int64_t>& history, std::vector<int64_t>& out) const {
  const size_t start = out.size();
  out.insert(out.end(), special_prefix.begin(), special_prefix.end());
  out.insert(out.end(), prefix.begin(), prefix.end());
  out.insert(out.end(), head.begin(), head.end());
  for (size_t k = 0; k < history.size(); ++k) {
    const int64_t item = history[k];
    if (!known(item))
      throw Error("item " + std::to_string(item) + " has no prompt tokens in this engine's catalog; drop unknown "
                  "items before building prompts (Recommender: on_unknown='skip')");
    if (k) out.insert(out.end(), sep.begin(), sep.end());
    out.insert(out.end(), item_tokens.begin() + item_offsets[item], item_tokens.begin() + item_offsets[item + 1]);
  }
  out.insert(out.end(), tail.begin(), tail.end());
  out.insert(out.end(), suffix.begin(), suffix.end());
  if (out.size() == start)
    throw Error("an empty history gives an empty prompt for a model without registers or template; give at least "
                "one item");
}

std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw EngineDirError(path + ": cannot open for hashing");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw Error("OpenSSL sha256 init failed");
  std::vector<char> buf(1 << 22);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (f.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(f.gcount()));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

EngineSpec load_engine(const std::string& dir, bool verify) {
  const std::string fix = "re-export it: `earn-export export CKPT --out " + dir + "`";
  if (!is_dir(dir)) throw EngineDirError("engine directory " + dir + " does not exist; " + fix);
  const std::string path = join(dir, "manifest.json");
  if (!is_file(path))
    throw EngineDirError(dir + ": no manifest.json (not an engine directory, or an interrupted export); " + fix);
  EngineSpec e;
  e.dir = dir;
  e.manifest_text = read_text(path);
  json man;
  try {
    man = json::parse(e.manifest_text);
  } catch (const json::exception& exc) {
    throw EngineDirError(path + ": not valid JSON (" + exc.what() + "); " + fix);
  }
  const json version = man.is_object() ? man.value("format_version", json()) : json();
  if (!version.is_number_integer() || version.get<int64_t>() != kFormatVersion)
    throw EngineDirError(path + ": manifest format_version " + (version.is_null() ? "None" : version.dump()) +
                         " is not supported by this earn-export (expects " + std::to_string(kFormatVersion) +
                         "); re-export with this version (`earn-export export CKPT --out " + dir +
                         "`) or install the earn-export version that wrote it.");
  const json hashes = man.value("sha256", json::object());
  std::vector<std::string> missing, changed;
  for (auto it = hashes.begin(); it != hashes.end(); ++it)
    if (!is_file(join(dir, it.key()))) missing.push_back(it.key());
  if (!missing.empty())
    throw EngineDirError(dir + ": missing files " + py_list(missing) +
                         " listed in manifest.json (partial copy?); copy the whole directory again or " + fix);
  if (verify) {
    for (auto it = hashes.begin(); it != hashes.end(); ++it)
      if (sha256_file(join(dir, it.key())) != it.value().get<std::string>()) changed.push_back(it.key());
    if (!changed.empty())
      throw EngineDirError(dir + ": sha256 mismatch for " + py_list(changed) +
                           ": the files changed after export (corrupt or partial copy, or edited by hand); copy "
                           "them again or " + fix);
  }

  const json trie = man.value("trie", json());
  if (!trie.is_object())
    throw EngineDirError(dir + ": the engine has no trie; re-export with a trie (export_onnx(..., trie=...) or a "
                         "checkpoint with items.json / trie.npz)");
  const json prompt = man.value("prompt", json());
  const std::string prompt_format = prompt.is_object() ? prompt.value("format", std::string()) : std::string();
  if (prompt_format != "pieces")
    throw EngineDirError(dir + ": this engine builds prompts with its tokenizer (manifest prompt.format = '" +
                         prompt_format + "': a context-dependent tokenizer, so a prompt is not a concatenation of "
                         "stored pieces); the C++ runtime has no tokenizer: use the Python runtime "
                         "(Recommender.load(dir, backend='onnxruntime') / earn-export recommend)");
  try {
    const json& m = man.at("model");
    e.num_layers = get_int(m, "num_layers", path);
    e.n_kv_heads = get_int(m, "n_kv_heads", path);
    e.head_dim = get_int(m, "head_dim", path);
    const json mh = m.value("max_history", json());
    e.max_history = mh.is_number_integer() && mh.get<int64_t>() != 0 ? mh.get<int64_t>() : 20;  // `or 20`
    e.kv_dtype = man.at("dtype").get<std::string>();
    if (e.kv_dtype != "float32" && e.kv_dtype != "float16")
      throw EngineDirError(path + ": dtype '" + e.kv_dtype + "' is not float32 or float16; re-export the engine");
    const json& vocab = man.at("vocab");
    e.vocab_out = get_int(vocab, "vocab_out", path);
    const json ids = vocab.value("vocab_out_token_ids", json());
    e.full_vocab = ids.is_null();
    if (!e.full_vocab) e.vocab_out_token_ids = int_list(vocab, "vocab_out_token_ids", path);
    const json& graphs = man.at("graphs");
    e.prefill_file = join(dir, graphs.at("prefill").at("file").get<std::string>());
    e.decode_file = join(dir, graphs.at("decode").at("file").get<std::string>());
    e.prefill_inputs = tensor_specs(graphs.at("prefill").at("inputs"), path);
    e.prefill_outputs = tensor_specs(graphs.at("prefill").at("outputs"), path);
    e.decode_inputs = tensor_specs(graphs.at("decode").at("inputs"), path);
    e.decode_outputs = tensor_specs(graphs.at("decode").at("outputs"), path);
    const json depth = trie.value("depth", json());
    e.trie = load_trie(dir, trie.value("prefix", std::string("trie")),
                       depth.is_number_integer() ? depth.get<int64_t>() : -1);
    e.pieces = load_pieces(dir, prompt.value("file", std::string("prompt_pieces.json")));
  } catch (const json::exception& exc) {
    throw EngineDirError(path + ": manifest field missing or of the wrong type (" + exc.what() +
                         "); re-export the engine");
  }
  if (!e.full_vocab && static_cast<int64_t>(e.vocab_out_token_ids.size()) != e.vocab_out)
    throw EngineDirError(path + ": vocab_out differs from len(vocab_out_token_ids); re-export the engine");

  // trie token -> output column, once (earn_export.search.beam.token_columns): refuses an engine whose output
  // vocabulary lacks identifier tokens of its trie (exported for another catalog)
  int64_t size = 1;
  for (int64_t t : e.trie.tokens) size = std::max(size, t + 1);
  for (int64_t t : e.vocab_out_token_ids) size = std::max(size, t + 1);
  e.columns.assign(static_cast<size_t>(size), -1);
  if (e.full_vocab) {
    for (int64_t t = 0; t < size; ++t) e.columns[t] = t < e.vocab_out ? t : -1;
  } else {
    for (size_t j = 0; j < e.vocab_out_token_ids.size(); ++j) {
      if (e.vocab_out_token_ids[j] < 0) throw EngineDirError(path + ": negative vocab_out_token_ids; re-export");
      e.columns[e.vocab_out_token_ids[j]] = static_cast<int64_t>(j);
    }
  }
  std::set<int64_t> absent;
  for (int64_t t : e.trie.tokens)
    if (e.columns[t] < 0) absent.insert(t);
  if (!absent.empty())
    throw EngineDirError(std::to_string(absent.size()) + " identifier tokens of the trie (e.g. " +
                         py_ints(std::vector<int64_t>(absent.begin(), absent.end()), 5) +
                         ") are not in the engine's output vocabulary; the engine was exported for another catalog. "
                         "Re-export with this catalog's trie.");
  for (int64_t item : e.trie.leaf_item) {
    if (item < 0) continue;
    if (item >= static_cast<int64_t>(e.known_items.size())) e.known_items.resize(static_cast<size_t>(item) + 1, 0);
    e.known_items[item] = 1;
  }
  return e;
}

std::vector<std::string> onnx_opset_domains(const std::string& path) {
  // ModelProto field 8 = repeated OperatorSetIdProto opset_import {1: string domain, 2: int64 version}; every
  // other top-level field (the graph, 7, with its weights) is skipped by its length.
  std::ifstream f(path, std::ios::binary);
  if (!f) throw EngineDirError(path + ": cannot open the ONNX file");
  const auto varint = [&](uint64_t& v) -> bool {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const int c = f.get();
      if (c == EOF) return false;
      v |= static_cast<uint64_t>(c & 0x7f) << shift;
      if (!(c & 0x80)) return true;
    }
    return false;
  };
  const auto bad = [&]() -> std::vector<std::string> {
    throw EngineDirError(path + ": not a readable ONNX model (protobuf); re-export the engine");
  };
  std::vector<std::string> domains;
  uint64_t tag;
  while (varint(tag)) {
    const uint64_t field = tag >> 3, wire = tag & 7;
    uint64_t v;
    if (wire == 0) {
      if (!varint(v)) return bad();
    } else if (wire == 1 || wire == 5) {
      f.seekg(wire == 1 ? 8 : 4, std::ios::cur);
    } else if (wire == 2) {
      if (!varint(v)) return bad();
      if (field == 8) {
        std::string sub(v, '\0');
        if (!f.read(&sub[0], static_cast<std::streamsize>(v))) return bad();
        std::string domain;
        for (size_t i = 0; i < sub.size();) {  // the submessage: field 1 (domain), field 2 (version)
          const unsigned char t = static_cast<unsigned char>(sub[i++]);
          if (t == 0x0a) {
            uint64_t n = 0;
            for (int shift = 0; i < sub.size(); shift += 7) {
              const unsigned char c = static_cast<unsigned char>(sub[i++]);
              n |= static_cast<uint64_t>(c & 0x7f) << shift;
              if (!(c & 0x80)) break;
            }
            if (i + n > sub.size()) return bad();
            domain = sub.substr(i, n);
            i += n;
          } else if (t == 0x10) {
            while (i < sub.size() && (static_cast<unsigned char>(sub[i++]) & 0x80)) {
            }
          } else {
            return bad();
          }
        }
        domains.push_back(domain);
      } else {
        f.seekg(static_cast<std::streamoff>(v), std::ios::cur);
      }
    } else {
      return bad();
    }
    if (!f) return bad();
  }
  return domains;
}

}  // namespace earn
