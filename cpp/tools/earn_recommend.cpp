// earn-recommend: top-K items for item-id histories with an exported engine, in C++ (no Python).
//
//   earn-recommend ENGINE_DIR --history "12 873 4051" [--history ...] [--histories-file F] [--top-k 10]
//                  [--beam 20] [--threads 1] [--on-unknown error|skip] [--bench]
//
// Prints one JSON line per user, like `earn-export recommend`. An engine with an item id map (item_ids.json,
// trained on the user's own log) takes and prints the catalog's original ids, with titles when it has them;
// --catalog-ids uses catalog indices 0..n-1 instead. --bench reads the histories from
// --histories-file, sends them in requests of --request-users users from --threads threads (one shared
// Recommender) and prints users/s and the per-batch time split (graphs vs bookkeeping + copies).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "earn/id_map.hpp"
#include "earn/recommender.hpp"

namespace {

const char* kUsage =
    "usage: earn-recommend ENGINE_DIR [--history \"ID ID ...\"]... [--histories-file FILE] [--top-k N] [--beam N]\n"
    "                      [--threads N] [--on-unknown {error,skip}] [--catalog-ids] [--batch-size N]\n"
    "                      [--intra-op-threads N] [--providers P,P] [--op-library PATH]... [--ort-library PATH]\n"
    "                      [--no-verify]"
    " [--bench [--request-users N] [--repeat N]]\n"
    "\n"
    "Top-K item ids for item-id histories (oldest first) with an earn-export engine directory.\n"
    "  --history TEXT         space- or comma-separated item ids (repeat for more users; \"\" = empty history)\n"
    "  --histories-file FILE  one history per line\n"
    "  --top-k N              items per user (default 10)\n"
    "  --beam N               beam width (default 20)\n"
    "  --threads N            threads calling the shared Recommender (default 1)\n"
    "  --on-unknown {error,skip}\n"
    "                         item ids not in the engine's catalog: fail naming them (error, the default) or drop\n"
    "                         them and count them per user (skip; the output's note names them)\n"
    "                         (--skip-unknown: the deprecated spelling of --on-unknown skip)\n"
    "  --catalog-ids          histories and answers in catalog indices 0..n-1 instead of the engine's original\n"
    "                         item ids (engines with an item id map, item_ids.json)\n"
    "  --batch-size N         users per graph call (default 64)\n"
    "  --intra-op-threads N   ONNX Runtime threads per graph call (default 0: ONNX Runtime's choice)\n"
    "  --providers LIST       execution providers, e.g. CUDAExecutionProvider,CPUExecutionProvider (default: "
    "GPU ones the library has, then CPU)\n"
    "  --op-library PATH      custom-op library for graphs with `earn`-domain ops (--attention plugin engines)\n"
    "  --ort-library PATH     libonnxruntime to load (default: $EARN_ORT_LIBRARY, the onnxruntime wheel of this\n"
    "                         environment, then the system's)\n"
    "  --no-verify            skip re-hashing the engine files (the manifest is still checked)\n"
    "  --bench                time recommend() over the histories of --histories-file; print users/s\n"
    "  --request-users N      users per recommend() call in --bench (default 4)\n"
    "  --repeat N             timed passes over the file in --bench (default 3, after one warm-up pass)\n";

struct Args {
  std::string engine;
  std::vector<std::vector<std::string>> tokens;  // histories as written (ids are parsed once the engine is open)
  std::vector<std::vector<int64_t>> histories;   // catalog indices
  int64_t top_k = 10, beam = 20, request_users = 4;
  int threads = 1, repeat = 3;
  bool skip_unknown = false, bench = false, catalog_ids = false;
  earn::Options options;
};

// Per user (original ids): ids dropped as unknown (--on-unknown skip), as written.
using Unknown = std::map<int64_t, std::vector<std::string>>;

[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "earn-recommend: " << msg << "\n(see earn-recommend --help)\n";
  std::exit(2);
}

std::vector<std::string> split_history(const std::string& text) {
  std::string t = text;
  std::replace(t.begin(), t.end(), ',', ' ');
  std::istringstream in(t);
  std::vector<std::string> out;
  for (std::string tok; in >> tok;) out.push_back(tok);
  return out;
}

std::vector<int64_t> parse_history(const std::string& text) {
  std::string t = text;
  std::replace(t.begin(), t.end(), ',', ' ');
  std::istringstream in(t);
  std::vector<int64_t> out;
  std::string tok;
  while (in >> tok) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != tok.size()) usage_error("history '" + text + "': item ids must be integers ('" + tok + "')");
    out.push_back(v);
  }
  return out;
}

int64_t parse_int(const std::string& flag, const std::string& v, int64_t min) {
  size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty()) usage_error(flag + " expects an integer, got '" + v + "'");
  if (x < min) usage_error(flag + " must be >= " + std::to_string(min) + ", got " + v);
  return x;
}

Args parse(int argc, char** argv) {
  Args a;
  std::string file;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--history") {
      a.tokens.push_back(split_history(value()));
    } else if (arg == "--histories-file") {
      file = value();
    } else if (arg == "--top-k") {
      a.top_k = parse_int(arg, value(), 1);
    } else if (arg == "--beam") {
      a.beam = parse_int(arg, value(), 1);
    } else if (arg == "--threads") {
      a.threads = static_cast<int>(parse_int(arg, value(), 1));
    } else if (arg == "--on-unknown") {
      const std::string v = value();
      if (v != "error" && v != "skip")
        usage_error("--on-unknown: invalid choice '" + v + "' (choose from 'error', 'skip')");
      a.skip_unknown = v == "skip";
    } else if (arg == "--skip-unknown") {  // the former spelling, kept as an alias
      std::cerr << "earn-recommend: --skip-unknown is deprecated; use --on-unknown skip\n";
      a.skip_unknown = true;
    } else if (arg == "--catalog-ids") {
      a.catalog_ids = true;
    } else if (arg == "--batch-size") {
      a.options.batch_size = parse_int(arg, value(), 1);
    } else if (arg == "--intra-op-threads") {
      a.options.intra_op_threads = static_cast<int>(parse_int(arg, value(), 0));
    } else if (arg == "--providers") {
      std::string v = value();
      std::replace(v.begin(), v.end(), ',', ' ');
      std::istringstream in(v);
      for (std::string p; in >> p;) a.options.providers.push_back(p);
    } else if (arg == "--op-library") {
      a.options.custom_op_libraries.push_back(value());
    } else if (arg == "--ort-library") {
      a.options.ort_library = value();
    } else if (arg == "--no-verify") {
      a.options.verify = false;
    } else if (arg == "--bench") {
      a.bench = true;
    } else if (arg == "--request-users") {
      a.request_users = parse_int(arg, value(), 1);
    } else if (arg == "--repeat") {
      a.repeat = static_cast<int>(parse_int(arg, value(), 1));
    } else if (!arg.empty() && arg[0] == '-') {
      usage_error("unknown option " + arg);
    } else if (a.engine.empty()) {
      a.engine = arg;
    } else {
      usage_error("unexpected argument '" + arg + "' (one ENGINE_DIR)");
    }
  }
  if (a.engine.empty()) usage_error("ENGINE_DIR is required");
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) usage_error("--histories-file " + file + ": cannot open");
    for (std::string line; std::getline(in, line);) a.tokens.push_back(split_history(line));
  }
  if (a.tokens.empty()) usage_error("give at least one --history or --histories-file");
  if (a.top_k > a.beam) usage_error("--top-k must be <= --beam");
  return a;
}

// Histories as catalog indices: through the id map (original ids, unknown ones named as written) or parsed as
// integers (--catalog-ids, or an engine without a map).
void resolve_histories(Args& a, const earn::IdMap* map, Unknown* dropped) {
  a.histories.clear();
  Unknown unknown;
  for (size_t u = 0; u < a.tokens.size(); ++u) {
    std::vector<int64_t> row;
    for (const std::string& t : a.tokens[u]) {
      if (!map) {
        const auto v = parse_history(t);
        row.insert(row.end(), v.begin(), v.end());
        continue;
      }
      std::string spelling = t;  // an int map's ids are looked up as the integers they spell ("007" -> 7)
      if (map->int_ids()) {
        size_t used = 0;
        try {
          const long long v = std::stoll(t, &used);
          if (used == t.size()) spelling = std::to_string(v);
        } catch (const std::exception&) {
        }
      }
      const auto n = map->lookup(spelling);
      if (n) row.push_back(*n);
      else unknown[static_cast<int64_t>(u)].push_back(spelling);
    }
    a.histories.push_back(std::move(row));
  }
  if (!unknown.empty() && !a.skip_unknown) {
    std::vector<std::string> ids;
    std::string users;
    for (const auto& [u, v] : unknown) {
      for (const auto& t : v)
        if (std::find(ids.begin(), ids.end(), t) == ids.end()) ids.push_back(t);
      users += (users.empty() ? "" : ", ") + std::to_string(u);
    }
    std::string list;
    for (size_t i = 0; i < ids.size() && i < 20; ++i) list += (i ? ", '" : "'") + ids[i] + "'";
    throw earn::Error("unknown item ids [" + list + (ids.size() > 20 ? "] ..." : "]") + " in the histories of users [" +
                      users + "]: the engine's catalog has no such items — check the ids, or pass --on-unknown skip "
                      "to drop them (the output notes which)");
  }
  *dropped = std::move(unknown);
}

// `map`: print original ids (else catalog indices); `names`: the engine's id map, for titles (in either mode).
void print_results(const Args& a, size_t offset, const earn::Result& r, const earn::IdMap* map,
                   const earn::IdMap* names, const Unknown& dropped) {
  for (int64_t u = 0; u < r.users; ++u) {
    const size_t user = offset + static_cast<size_t>(u);
    std::string line = "{\"history\": [";
    const auto& hist = a.tokens[user];
    if (map) {
      for (size_t i = 0; i < hist.size(); ++i) {
        std::string v = hist[i];
        if (map->int_ids()) {  // as the Python CLI: integers as numbers, anything else as a string
          size_t used = 0;
          try {
            const long long x = std::stoll(v, &used);
            v = used == v.size() ? std::to_string(x) : earn::IdMap::json_string(v);
          } catch (const std::exception&) {
            v = earn::IdMap::json_string(v);
          }
        } else {
          v = earn::IdMap::json_string(v);
        }
        line += (i ? ", " : "") + v;
      }
    } else {
      const auto& ids = a.histories[user];
      for (size_t i = 0; i < ids.size(); ++i) line += (i ? ", " : "") + std::to_string(ids[i]);
    }
    line += "], \"items\": [";
    std::string scores = "], \"scores\": [";
    std::string titles = "], \"titles\": [";
    int n = 0;
    for (int64_t k = 0; k < r.top_k; ++k) {
      const int64_t item = r.items[u * r.top_k + k];
      if (item < 0) continue;
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.4f", static_cast<double>(r.scores[u * r.top_k + k]));
      line += (n ? ", " : "") + (map ? map->json_value(map->original(item)) : std::to_string(item));
      scores += (n ? ", " : "") + std::string(buf);
      if (names && names->has_titles()) {
        const std::string* t = names->title(item);
        titles += (n ? ", " : "") + (t ? earn::IdMap::json_string(*t) : std::string("null"));
      }
      ++n;
    }
    line += scores + (names && names->has_titles() ? titles : std::string()) + "]";
    std::string note;
    const auto named = dropped.find(static_cast<int64_t>(user));
    const int64_t skipped = r.skipped[u] + (named == dropped.end() ? 0 : static_cast<int64_t>(named->second.size()));
    if (skipped) {
      note += std::to_string(skipped) + " unknown skipped";
      if (named != dropped.end()) {
        note += " (";
        for (size_t i = 0; i < named->second.size(); ++i) note += (i ? ", " : "") + named->second[i];
        note += ")";
      }
    }
    if (r.truncated[u]) note += (note.empty() ? "" : ", ") + std::to_string(r.truncated[u]) + " oldest dropped";
    if (!note.empty()) line += ", \"note\": " + earn::IdMap::json_string(note);
    std::cout << line << "}\n";
  }
}

int bench(const Args& a, const earn::Recommender& rec) {
  const auto on_unknown = a.skip_unknown ? earn::OnUnknown::kSkip : earn::OnUnknown::kError;
  std::vector<std::vector<std::vector<int64_t>>> requests;
  for (size_t s = 0; s < a.histories.size(); s += static_cast<size_t>(a.request_users))
    requests.emplace_back(a.histories.begin() + s,
                          a.histories.begin() + std::min(a.histories.size(), s + static_cast<size_t>(a.request_users)));
  std::vector<earn::Timings> per_thread(static_cast<size_t>(a.threads));
  const auto pass = [&](bool timed) {
    std::atomic<size_t> next{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < a.threads; ++t)
      pool.emplace_back([&, t] {
        for (size_t i; (i = next.fetch_add(1)) < requests.size();)
          rec.recommend(requests[i], a.top_k, a.beam, on_unknown, timed ? &per_thread[t] : nullptr);
      });
    for (auto& th : pool) th.join();
  };
  pass(false);  // warm-up: sessions, allocator arenas, workspace pool
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < a.repeat; ++r) pass(true);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  earn::Timings sum;
  for (const auto& t : per_thread) {
    sum.total_s += t.total_s;
    sum.prefill_graph_s += t.prefill_graph_s;
    sum.decode_graph_s += t.decode_graph_s;
    sum.batches += t.batches;
    sum.decode_calls += t.decode_calls;
  }
  const double users = static_cast<double>(a.histories.size()) * a.repeat;
  const double nb = static_cast<double>(std::max<int64_t>(sum.batches, 1));
  std::printf("earn-recommend --bench: %zu users x %d passes, requests of %lld users, beam %lld, top-k %lld, "
              "%d thread(s), intra-op threads %d\n",
              a.histories.size(), a.repeat, static_cast<long long>(a.request_users), static_cast<long long>(a.beam),
              static_cast<long long>(a.top_k), a.threads, a.options.intra_op_threads);
  std::printf("users/s %.1f (wall %.3f s)\n", users / wall, wall);
  std::printf("per batch: total %.3f ms = prefill graph %.3f ms + decode graphs %.3f ms (%lld calls) + bookkeeping "
              "and copies %.3f ms\n",
              1e3 * sum.total_s / nb, 1e3 * sum.prefill_graph_s / nb, 1e3 * sum.decode_graph_s / nb,
              static_cast<long long>(sum.decode_calls / std::max<int64_t>(sum.batches, 1)),
              1e3 * sum.bookkeeping_s() / nb);
  std::printf("{\"users_per_s\": %.3f, \"wall_s\": %.6f, \"batches\": %lld, \"batch_total_ms\": %.6f, "
              "\"batch_prefill_graph_ms\": %.6f, \"batch_decode_graph_ms\": %.6f, \"batch_bookkeeping_ms\": %.6f, "
              "\"threads\": %d}\n",
              users / wall, wall, static_cast<long long>(sum.batches), 1e3 * sum.total_s / nb,
              1e3 * sum.prefill_graph_s / nb, 1e3 * sum.decode_graph_s / nb, 1e3 * sum.bookkeeping_s() / nb,
              a.threads);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  try {
    auto rec = earn::Recommender::load(a.engine, a.options);
    std::optional<earn::IdMap> id_map = earn::IdMap::load_engine(a.engine);  // its sha256 was checked by load
    const earn::IdMap* names = id_map ? &*id_map : nullptr;
    const earn::IdMap* map = a.catalog_ids ? nullptr : names;
    Unknown dropped;
    resolve_histories(a, map, &dropped);
    if (a.bench) return bench(a, *rec);
    const auto on_unknown = a.skip_unknown ? earn::OnUnknown::kSkip : earn::OnUnknown::kError;
    if (a.threads == 1) {
      print_results(a, 0, rec->recommend(a.histories, a.top_k, a.beam, on_unknown), map, names, dropped);
      return 0;
    }
    // --threads N: users split into N contiguous parts, recommended concurrently, printed in input order;
    // unknown ids are reported first with the users' indices in the whole input
    if (on_unknown == earn::OnUnknown::kError) {
      std::map<int64_t, std::vector<int64_t>> unknown;
      for (size_t u = 0; u < a.histories.size(); ++u)
        for (int64_t item : a.histories[u])
          if (!rec->is_known(item)) unknown[static_cast<int64_t>(u)].push_back(item);
      if (!unknown.empty()) throw earn::UnknownItemError(std::move(unknown));
    }
    std::vector<earn::Result> parts(static_cast<size_t>(a.threads));
    std::vector<std::vector<std::vector<int64_t>>> inputs(static_cast<size_t>(a.threads));
    const size_t per = (a.histories.size() + a.threads - 1) / a.threads;
    for (int t = 0; t < a.threads; ++t)
      for (size_t u = t * per; u < std::min(a.histories.size(), (t + 1) * per); ++u)
        inputs[t].push_back(a.histories[u]);
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> errors(static_cast<size_t>(a.threads));
    for (int t = 0; t < a.threads; ++t)
      pool.emplace_back([&, t] {
        try {
          parts[t] = rec->recommend(inputs[t], a.top_k, a.beam, on_unknown);
        } catch (...) {
          errors[t] = std::current_exception();
        }
      });
    for (auto& th : pool) th.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
    for (int t = 0; t < a.threads; ++t) print_results(a, t * per, parts[t], map, names, dropped);
    return 0;
  } catch (const earn::Error& e) {
    std::cerr << "earn-recommend: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "earn-recommend: " << e.what() << "\n";
    return 1;
  }
}
