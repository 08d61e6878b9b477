// Top-K for histories read from a file, with the C++ API of an installed libearn.
//   recommend_cpp ENGINE_DIR HISTORIES_FILE TOP_K BEAM    (one history per line: item ids separated by spaces)
// Prints one line per user: the items, "|", the scores. libonnxruntime: $EARN_ORT_LIBRARY or the system's.
//   recommend_cpp --ids ENGINE_DIR HISTORIES_FILE TOP_K BEAM error|skip
// The same in the catalog's original ids (an engine with item_ids.json): one JSON line per user with items,
// titles, scores, skipped and the unknown ids dropped; errors are caught by type and printed.
#include <earn/id_map.hpp>
#include <earn/recommender.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string json_list(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out + "]";
}

int recommend_ids(const char* engine, const char* file, int64_t top_k, int64_t beam, const std::string& policy) {
  std::vector<std::vector<std::string>> histories;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    std::istringstream ss(line);
    std::vector<std::string> h;
    for (std::string id; ss >> id;) h.push_back(id);
    histories.push_back(h);
  }
  try {
    auto rec = earn::Recommender::load(engine);
    const earn::IdResult r = rec->recommend_ids(histories, top_k, beam,
                                                policy == "skip" ? earn::OnUnknown::kSkip : earn::OnUnknown::kError);
    for (int64_t u = 0; u < r.users; ++u) {
      std::vector<std::string> items, titles, scores, unknown;
      for (int64_t k = 0; k < r.top_k; ++k) {
        const size_t i = static_cast<size_t>(u * r.top_k + k);
        items.push_back(r.index[i] < 0 ? "null" : earn::IdMap::json_string(r.items[i]));
        titles.push_back(r.titles[i] ? earn::IdMap::json_string(*r.titles[i]) : "null");
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.9g", static_cast<double>(r.scores[i]));
        scores.push_back(r.index[i] < 0 ? "null" : buf);
      }
      const auto dropped = r.unknown.find(u);
      if (dropped != r.unknown.end())
        for (const auto& id : dropped->second) unknown.push_back(earn::IdMap::json_string(id));
      std::printf("{\"items\": %s, \"titles\": %s, \"scores\": %s, \"skipped\": %lld, \"unknown\": %s}\n",
                  json_list(items).c_str(), json_list(titles).c_str(), json_list(scores).c_str(),
                  static_cast<long long>(r.skipped[static_cast<size_t>(u)]), json_list(unknown).c_str());
    }
  } catch (const earn::UnknownIdError& e) {
    std::fprintf(stderr, "caught earn::UnknownIdError (%zu users): %s\n", e.unknown().size(), e.what());
    return 3;
  } catch (const earn::InvalidArgument& e) {
    std::fprintf(stderr, "caught earn::InvalidArgument: %s\n", e.what());
    return 4;
  } catch (const earn::Error& e) {
    std::fprintf(stderr, "earn error: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 7 && std::string(argv[1]) == "--ids")
    return recommend_ids(argv[2], argv[3], std::atoll(argv[4]), std::atoll(argv[5]), argv[6]);
  if (argc != 5) {
    std::cerr << "usage: recommend_cpp ENGINE_DIR HISTORIES_FILE TOP_K BEAM\n";
    return 2;
  }
  std::vector<std::vector<int64_t>> histories;
  std::ifstream in(argv[2]);
  for (std::string line; std::getline(in, line);) {
    std::istringstream ss(line);
    std::vector<int64_t> h;
    for (int64_t id; ss >> id;) h.push_back(id);
    histories.push_back(h);
  }
  try {
    auto rec = earn::Recommender::load(argv[1]);
    const earn::Result r = rec->recommend(histories, std::atoll(argv[3]), std::atoll(argv[4]));
    for (int64_t u = 0; u < r.users; ++u) {
      for (int64_t k = 0; k < r.top_k; ++k) std::printf("%lld ", static_cast<long long>(r.items[u * r.top_k + k]));
      std::printf("|");
      for (int64_t k = 0; k < r.top_k; ++k) std::printf(" %.9g", static_cast<double>(r.scores[u * r.top_k + k]));
      std::printf("\n");
    }
  } catch (const earn::Error& e) {  // libearn's exceptions are caught across the shared-library boundary
    std::cerr << "earn error: " << e.what() << "\n";
    return 1;
  }
  // the exception types are the library's: a missing directory is an EngineDirError
  try {
    earn::Recommender::load(std::string(argv[1]) + "/no-such-engine");
  } catch (const earn::EngineDirError& e) {
    std::fprintf(stderr, "caught earn::EngineDirError: %s\n", e.what());
    return 0;
  }
  std::cerr << "a missing engine directory did not throw earn::EngineDirError\n";
  return 1;
}
