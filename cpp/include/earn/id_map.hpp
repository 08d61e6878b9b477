// earn::IdMap: the catalog's original item ids (item_ids.json of an engine directory), for programs that take
// and print the ids of the user's own catalog instead of catalog indices 0..n-1.
//
// The file is written by earn-export (earn_export/data/id_map.py, docs/own-ids.md):
//   {"format": "earn-item-ids", "version": 1, "n_items": N, "id_type": "int"|"str", "ids": [...],
//    "titles": {"<index>": "title"}}
// and listed in manifest.json ("id_map", and its sha256 like every file: Recommender::load checks it).
// Ids are looked up by their spelling ("sku-528", or "1013" for an int map), as the Python runtime does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "earn/recommender.hpp"

namespace earn {

/// An item_ids.json that cannot be used (missing, partial, repeated or mistyped ids); names the file and the fix.
class EARN_API IdMapError : public Error {
 public:
  using Error::Error;
};

class EARN_API IdMap {
 public:
  /// engine_dir/item_ids.json when the engine's manifest.json names an id map ("id_map"), else nullopt; the map
  /// must have the manifest's n_items ids.
  static std::optional<IdMap> load_engine(const std::string& engine_dir);
  /// A map file checked in full; `n_items` >= 0 must equal its length.
  static IdMap load_file(const std::string& path, int64_t n_items = -1);

  bool int_ids() const { return int_ids_; }
  int64_t size() const { return static_cast<int64_t>(ids_.size()); }
  bool has_titles() const { return !titles_.empty(); }
  /// Catalog index of an original id as spelled (surrounding whitespace ignored, as in Python), nullopt when the
  /// catalog has no such item.
  std::optional<int64_t> lookup(const std::string& spelling) const;
  /// The original id of a catalog index, as spelled (an int map's ids are decimal integers).
  const std::string& original(int64_t index) const { return ids_.at(static_cast<size_t>(index)); }
  /// The item's title, nullptr when the log gave none.
  const std::string* title(int64_t index) const;
  /// `spelling` as a JSON value: a number for an int map, a quoted, escaped string otherwise.
  std::string json_value(const std::string& spelling) const;
  /// Any text as a JSON string literal (quoted, escaped).
  static std::string json_string(const std::string& text);

 private:
  bool int_ids_ = false;
  std::vector<std::string> ids_;
  std::unordered_map<std::string, int64_t> index_;
  std::unordered_map<int64_t, std::string> titles_;
};

}  // namespace earn
