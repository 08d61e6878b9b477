#include "earn/id_map.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace earn {
namespace {

using nlohmann::json;

constexpr const char* kFile = "item_ids.json";  // earn_export/data/id_map.py ID_MAP_FILE
constexpr const char* kFormat = "earn-item-ids";
constexpr int64_t kVersion = 1;
constexpr const char* kFix =
    "re-export the engine from its checkpoint (`earn-export export CKPT --out DIR`), or retrain it";

std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

json read_json(const std::string& path, bool* exists) {
  std::ifstream f(path, std::ios::binary);
  *exists = static_cast<bool>(f);
  if (!f) return json();
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& exc) {
    throw IdMapError(path + ": not valid JSON (" + exc.what() + ") — " + kFix);
  }
}

}  // namespace

std::optional<IdMap> IdMap::load_engine(const std::string& engine_dir) {
  bool exists = false;
  const std::string man_path = join(engine_dir, "manifest.json");
  json man;
  try {
    man = read_json(man_path, &exists);
  } catch (const IdMapError&) {
    throw EngineDirError(man_path + ": not valid JSON — re-export the engine");
  }
  if (!exists || !man.is_object() || !man.contains("id_map") || man["id_map"].is_null()) return std::nullopt;
  const json& entry = man["id_map"];
  if (!entry.is_object() || entry.value("file", std::string()) != kFile)
    throw IdMapError(engine_dir + ": manifest id_map does not name " + kFile + " — " + kFix);
  const int64_t n = entry.contains("n_items") && entry["n_items"].is_number_integer()
                        ? entry["n_items"].get<int64_t>() : -1;
  return load_file(join(engine_dir, kFile), n);
}

IdMap IdMap::load_file(const std::string& path, int64_t n_items) {
  bool exists = false;
  const json doc = read_json(path, &exists);
  if (!exists)
    throw IdMapError(path + ": missing — the engine's manifest lists an item id map; copy the file again or " + kFix);
  if (!doc.is_object() || doc.value("format", std::string()) != kFormat)
    throw IdMapError(path + ": not an item id map (format '" + kFormat + "' expected) — " + kFix);
  if (!doc.contains("version") || !doc["version"].is_number_integer() || doc["version"].get<int64_t>() != kVersion)
    throw IdMapError(path + ": id map version " + (doc.contains("version") ? doc["version"].dump() : "None") +
                     ", libearn reads " + std::to_string(kVersion) + " — " + kFix);
  for (const char* key : {"n_items", "id_type", "ids"})
    if (!doc.contains(key)) throw IdMapError(path + ": field '" + key + "' missing (partial file) — " + kFix);
  const json& ids = doc["ids"];
  if (!ids.is_array() || !doc["n_items"].is_number_integer() ||
      static_cast<int64_t>(ids.size()) != doc["n_items"].get<int64_t>())
    throw IdMapError(path + ": partial map, " + (ids.is_array() ? std::to_string(ids.size()) : "no") +
                     " ids for n_items=" + doc["n_items"].dump() + " — " + kFix);
  const int64_t n = doc["n_items"].get<int64_t>();
  if (n_items >= 0 && n != n_items)
    throw IdMapError(path + ": " + std::to_string(n) + " ids for a catalog of " + std::to_string(n_items) +
                     " items (a map of another catalog, or partial) — " + kFix);
  const std::string id_type = doc["id_type"].is_string() ? doc["id_type"].get<std::string>() : "";
  if (id_type != "int" && id_type != "str")
    throw IdMapError(path + ": id_type " + doc["id_type"].dump() + ", expected \"int\" or \"str\" — " + kFix);
  IdMap m;
  m.int_ids_ = id_type == "int";
  m.ids_.reserve(ids.size());
  for (const json& v : ids) {
    if (m.int_ids_ ? !v.is_number_integer()
                   : !v.is_string() || v.get<std::string>().find_first_not_of(" \t\r\n") == std::string::npos)
      throw IdMapError(path + ": id_type '" + id_type + "' but id " + v.dump() + " is not of that type — " + kFix);
    m.ids_.push_back(m.int_ids_ ? std::to_string(v.get<int64_t>()) : v.get<std::string>());
    if (!m.index_.emplace(m.ids_.back(), static_cast<int64_t>(m.ids_.size()) - 1).second)
      throw IdMapError(path + ": original id " + v.dump() + " appears more than once — " + kFix);
  }
  if (doc.contains("titles") && !doc["titles"].is_null()) {
    const json& titles = doc["titles"];
    if (!titles.is_object()) throw IdMapError(path + ": titles must be an object — " + kFix);
    for (auto it = titles.begin(); it != titles.end(); ++it) {
      size_t used = 0;
      int64_t k = -1;
      try {
        k = std::stoll(it.key(), &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != it.key().size() || k < 0 || k >= n || !it.value().is_string())
        throw IdMapError(path + ": titles must map catalog indices 0.." + std::to_string(n - 1) + " to text — " +
                         kFix);
      m.titles_[k] = it.value().get<std::string>();
    }
  }
  return m;
}

std::optional<int64_t> IdMap::lookup(const std::string& spelling) const {
  // as Python's ItemIdMap.lookup: surrounding whitespace is not part of an id (" sku-3" names sku-3)
  const size_t first = spelling.find_first_not_of(" \t\r\n"), last = spelling.find_last_not_of(" \t\r\n");
  if (first == std::string::npos) return std::nullopt;
  const auto it = (first == 0 && last + 1 == spelling.size()) ? index_.find(spelling)
                                                              : index_.find(spelling.substr(first, last - first + 1));
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

const std::string* IdMap::title(int64_t index) const {
  const auto it = titles_.find(index);
  return it == titles_.end() ? nullptr : &it->second;
}

std::string IdMap::json_value(const std::string& spelling) const {
  return int_ids_ && index_.count(spelling) ? spelling : json_string(spelling);
}

std::string IdMap::json_string(const std::string& text) {
  return json(text).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace earn
