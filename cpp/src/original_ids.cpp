// Recommender::recommend_ids: the search in the catalog's original ids, for engines with an item id map.
//
// Why a separate step: the search itself works on catalog indices 0..n-1. As the Python runtime
// (earn_export/runtime/original_ids.py), the histories are translated to indices through the engine's
// item_ids.json (earn::IdMap), the unchanged index search runs, and the answer is translated back (ids and
// titles). Unknown original ids follow the usual policy and are named as the caller spelled them.
#include <set>

#include "earn/id_map.hpp"
#include "earn/recommender.hpp"

namespace earn {

UnknownIdError::UnknownIdError(std::map<int64_t, std::vector<std::string>> unknown)
    : Error([&] {
        std::set<std::string> ids;
        for (const auto& kv : unknown) ids.insert(kv.second.begin(), kv.second.end());
        std::string id_list, user_list;
        size_t i = 0;
        for (auto it = ids.begin(); it != ids.end() && i < 20; ++it, ++i)
          id_list += (i ? ", '" : "'") + *it + "'";  // as the CLIs print them: ['sku-nope']
        i = 0;
        for (auto it = unknown.begin(); it != unknown.end() && i < 20; ++it, ++i)
          user_list += (i ? ", " : "") + std::to_string(it->first);
        return "unknown item ids [" + id_list + "]" + (ids.size() > 20 ? " ..." : "") + " in the histories of users [" +
               user_list + "]" + (unknown.size() > 20 ? " ..." : "") +
               ": the engine's catalog has no such items — check the ids (as spelled in the engine's item_ids.json), "
               "or pass on_unknown skip (OnUnknown::kSkip, EARN_UNKNOWN_SKIP) to drop them (counted in skipped, "
               "named in unknown)";
      }()),
      unknown_(std::move(unknown)) {}

IdResult Recommender::recommend_ids(const std::vector<std::vector<std::string>>& histories, int64_t top_k,
                                    int64_t beam, OnUnknown on_unknown, Timings* timings) const {
  const IdMap& map = id_map();  // refuses an engine without a map, by name
  std::vector<std::vector<int64_t>> catalog(histories.size());
  std::map<int64_t, std::vector<std::string>> unknown;
  for (size_t u = 0; u < histories.size(); ++u) {
    catalog[u].reserve(histories[u].size());
    for (const std::string& id : histories[u]) {
      const auto n = map.lookup(id);
      if (n) catalog[u].push_back(*n);
      else unknown[static_cast<int64_t>(u)].push_back(id);
    }
  }
  if (!unknown.empty() && on_unknown == OnUnknown::kError) throw UnknownIdError(std::move(unknown));

  Result r = recommend(catalog, top_k, beam, on_unknown, timings);
  IdResult out;
  out.users = r.users;
  out.top_k = r.top_k;
  out.items.resize(r.items.size());
  out.titles.resize(r.items.size());
  for (size_t i = 0; i < r.items.size(); ++i) {
    if (r.items[i] < 0) continue;
    out.items[i] = map.original(r.items[i]);
    if (const std::string* t = map.title(r.items[i])) out.titles[i] = *t;
  }
  out.index = std::move(r.items);
  out.scores = std::move(r.scores);
  out.skipped = std::move(r.skipped);
  for (const auto& [u, ids] : unknown) out.skipped[static_cast<size_t>(u)] += static_cast<int64_t>(ids.size());
  out.truncated = std::move(r.truncated);
  out.unknown = std::move(unknown);
  return out;
}

}  // namespace earn
