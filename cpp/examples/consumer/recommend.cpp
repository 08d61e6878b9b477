// Top-K for histories read from a file, with the C++ API of an installed libearn.
//   recommend_cpp ENGINE_DIR HISTORIES_FILE TOP_K BEAM    (one history per line: item ids separated by spaces)
// Prints one line per user: the items, "|", the scores. libonnxruntime: $EARN_ORT_LIBRARY or the system's.
#include <earn/recommender.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
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
