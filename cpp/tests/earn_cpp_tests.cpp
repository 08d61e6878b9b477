// C++ tests of libearn's pieces that need no ONNX Runtime (run by ctest and by tests/test_cpp_runtime.py):
//
//   earn_cpp_tests unit          npy reader (values and refusals), prompt pieces, beam search on a hand-made
//                                trie (tie at the beam cut -> lowest index, dead beams, -1 padding)
//   earn_cpp_tests replay DIR    replay a search recorded from the Python runtime (earn_export/search/beam.py):
//                                the recorded log-probs are served by a fake decode model; the C++ search must
//                                feed the same tokens/parents to every decode call and give the same items,
//                                scores (bitwise) and token paths
//   earn_cpp_tests domains FILE  print the opset-import domains of an ONNX file, one per line
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "beam_search.hpp"
#include "earn/recommender.hpp"
#include "engine.hpp"
#include "npy.hpp"

namespace {

int g_failures = 0;
int g_checks = 0;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    ++g_checks;                                                                     \
    if (!(cond)) {                                                                  \
      ++g_failures;                                                                 \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                               \
  } while (0)

template <typename F>
void expect_error(F f, const std::string& fragment) {
  ++g_checks;
  try {
    f();
    ++g_failures;
    std::fprintf(stderr, "expected an error containing '%s', got none\n", fragment.c_str());
  } catch (const earn::Error& e) {
    if (std::string(e.what()).find(fragment) == std::string::npos) {
      ++g_failures;
      std::fprintf(stderr, "error '%s' lacks '%s'\n", e.what(), fragment.c_str());
    }
  }
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string npy_bytes(const std::string& descr, const std::string& shape, const std::string& data, bool fortran = false) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                       ", 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

std::string int64_bytes(const std::vector<int64_t>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int64_t));
}

void test_npy(const std::string& tmp) {
  const std::string p = tmp + "/a.npy";
  write_file(p, npy_bytes("<i8", "(3,)", int64_bytes({4, -5, 6})));
  auto a = earn::read_npy_int64(p);
  CHECK(a.shape == std::vector<int64_t>{3});
  CHECK((a.data == std::vector<int64_t>{4, -5, 6}));
  write_file(p, npy_bytes("<i8", "()", int64_bytes({7})));
  a = earn::read_npy_int64(p);
  CHECK(a.shape.empty() && a.data.size() == 1 && a.data[0] == 7);
  write_file(p, npy_bytes("<i8", "(2, 2)", int64_bytes({1, 2, 3, 4})));
  CHECK((earn::read_npy_int64(p).shape == std::vector<int64_t>{2, 2}));
  write_file(p, npy_bytes("<i4", "(2,)", std::string(8, '\0')));
  expect_error([&] { earn::read_npy_int64(p); }, "dtype <i4 is not int64");
  write_file(p, npy_bytes("<i8", "(2, 2)", int64_bytes({1, 2, 3, 4}), true));
  expect_error([&] { earn::read_npy_int64(p); }, "Fortran order");
  write_file(p, npy_bytes("<i8", "(3,)", int64_bytes({1, 2})));
  expect_error([&] { earn::read_npy_int64(p); }, "truncated data");
  write_file(p, "not an array");
  expect_error([&] { earn::read_npy_int64(p); }, "bad magic");
  expect_error([&] { earn::read_npy_int64(tmp + "/none.npy"); }, "cannot open");
}

void test_pieces() {
  earn::PromptPieces p;
  p.special_prefix = {1};
  p.prefix = {5};
  p.head = {6};
  p.sep = {7};
  p.tail = {8};
  p.suffix = {9};
  p.item_offsets = {0, 2, 2, 3};  // item 1 has no tokens
  p.item_tokens = {10, 11, 12};
  std::vector<int64_t> row;
  p.append_row({0, 2}, row);
  CHECK((row == std::vector<int64_t>{1, 5, 6, 10, 11, 7, 12, 8, 9}));
  row.clear();
  p.append_row({}, row);
  CHECK((row == std::vector<int64_t>{1, 5, 6, 8, 9}));
  CHECK(p.known(0) && !p.known(1) && p.known(2) && !p.known(3) && !p.known(-1));
  expect_error([&] { p.append_row({1}, row); }, "item 1 has no prompt tokens");
  earn::PromptPieces bare;
  bare.item_offsets = {0};
  row.clear();
  expect_error([&] { bare.append_row({}, row); }, "empty prompt");
}

// A decode model that returns fixed per-token log-probs for every beam (the trie decides the rest).
struct TableModel : earn::DecodeModel {
  std::vector<float> table;  // [V]
  std::vector<float> out;
  std::vector<std::vector<int64_t>> seen_parents;
  int64_t V = 0;
  const float* decode(const int64_t*, const int64_t* parents, int64_t users, int64_t beam, int64_t) override {
    seen_parents.emplace_back(parents, parents + users * beam);
    out.assign(static_cast<size_t>(users * beam * V), 0.f);
    for (int64_t r = 0; r < users * beam; ++r) std::copy(table.begin(), table.end(), out.begin() + r * V);
    return out.data();
  }
};

void test_beam_rules() {
  // depth 2: root -> tokens 0, 1, 2; node of token 0 -> tokens 3, 4; of 1 -> 3; of 2 -> 4
  // items: (0,3)=10 (0,4)=11 (1,3)=12 (2,4)=13
  earn::Trie t;
  t.offsets = {0, 3, 5, 6, 7, 7, 7, 7, 7};
  t.tokens = {0, 1, 2, 3, 4, 3, 4};
  t.children = {1, 2, 3, 4, 5, 6, 7};
  t.leaf_item = {-1, -1, -1, -1, 10, 11, 12, 13};
  t.depth = 2;
  std::vector<int64_t> cols = {0, 1, 2, 3, 4};
  TableModel m;
  m.V = 5;
  m.table = {0.f, 0.f, 0.f, -1.f, -1.f};  // tokens 3 and 4 tie: every item scores first + (-1)
  const float first[5] = {-0.5f, -0.5f, -0.5f, 0.f, 0.f};  // the three first tokens tie too
  earn::BeamScratch s;
  earn::BeamOutput out;
  // beam 2: the cut falls inside ties at both steps -> lowest candidate index = (beam, column) order
  earn::beam_search(t, cols, 5, 1, 2, first, m, s, out);
  CHECK((out.items == std::vector<int64_t>{10, 11}));
  CHECK(out.scores[0] == -1.5f && out.scores[1] == -1.5f);
  CHECK((out.tokens == std::vector<int64_t>{0, 3, 0, 4}));
  // beam 6 > 4 items: two dead slots at the end, -1 padded, -inf scores; parents of dead slots are 0
  earn::beam_search(t, cols, 5, 1, 6, first, m, s, out);
  CHECK((out.items == std::vector<int64_t>{10, 11, 12, 13, -1, -1}));
  CHECK(std::isinf(out.scores[4]) && out.scores[4] < 0 && std::isinf(out.scores[5]));
  CHECK(out.tokens[4 * 2] == -1 && out.tokens[5 * 2 + 1] == -1);
  CHECK((m.seen_parents.back() == std::vector<int64_t>{0, 0, 0, 0, 0, 0}));
  // a better second token reorders across parents: token 4 beats 3
  m.table = {0.f, 0.f, 0.f, -2.f, -1.f};
  earn::beam_search(t, cols, 5, 1, 3, first, m, s, out);
  CHECK((out.items == std::vector<int64_t>{11, 13, 10}));
}

void test_replay(const std::string& dir) {
  const auto i64 = [&](const std::string& name) { return earn::read_npy_int64(dir + "/" + name + ".npy"); };
  const auto f32 = [&](const std::string& name) { return earn::read_npy_float32(dir + "/" + name + ".npy"); };
  earn::Trie t;
  t.offsets = i64("trie.offsets").data;
  t.tokens = i64("trie.tokens").data;
  t.children = i64("trie.children").data;
  t.leaf_item = i64("trie.leaf_item").data;
  t.depth = i64("trie.depth").data.at(0);
  const auto params = i64("params").data;  // beam, vocab_out
  const int64_t beam = params.at(0), V = params.at(1);
  const auto cols = i64("columns").data;
  const auto first = f32("first");
  const int64_t users = first.shape.at(0);

  struct Replay : earn::DecodeModel {
    std::function<earn::NpyArray<float>(const std::string&)> f32;
    std::function<earn::Int64Array(const std::string&)> i64;
    earn::NpyArray<float> current;
    const float* decode(const int64_t* tokens, const int64_t* parents, int64_t u, int64_t k, int64_t step) override {
      const auto want_tokens = i64("tokens_" + std::to_string(step)).data;
      const auto want_parents = i64("parents_" + std::to_string(step)).data;
      CHECK(static_cast<int64_t>(want_tokens.size()) == u * k);
      CHECK(std::vector<int64_t>(tokens, tokens + u * k) == want_tokens);
      CHECK(std::vector<int64_t>(parents, parents + u * k) == want_parents);
      current = f32("decode_" + std::to_string(step));
      return current.data.data();
    }
  } model;
  model.f32 = f32;
  model.i64 = i64;
  earn::BeamScratch s;
  earn::BeamOutput out;
  earn::beam_search(t, cols, V, users, beam, first.data.data(), model, s, out);
  const auto items = i64("items").data;
  const auto scores = f32("scores").data;
  const auto tokens = i64("path").data;
  CHECK(out.items == items);
  CHECK(out.tokens == tokens);
  bool same = scores.size() == out.scores.size();
  for (size_t i = 0; same && i < scores.size(); ++i)
    same = (scores[i] == out.scores[i]) || (std::isinf(scores[i]) && std::isinf(out.scores[i]));
  CHECK(same);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "unit";
  try {
    if (mode == "unit") {
      const char* tmpdir = std::getenv("TMPDIR");
      std::string tmp = (tmpdir && *tmpdir ? tmpdir : "/tmp") + std::string("/earn_cpp_tests_XXXXXX");
      if (!::mkdtemp(&tmp[0])) throw std::runtime_error("mkdtemp failed");
      test_npy(tmp);
      test_pieces();
      test_beam_rules();
      std::remove((tmp + "/a.npy").c_str());
      std::remove(tmp.c_str());
    } else if (mode == "replay" && argc > 2) {
      for (int i = 2; i < argc; ++i) test_replay(argv[i]);
    } else if (mode == "domains" && argc > 2) {
      for (const auto& d : earn::onnx_opset_domains(argv[2])) std::cout << d << "\n";
      return 0;
    } else {
      std::cerr << "usage: earn_cpp_tests [unit | replay DIR... | domains FILE.onnx]\n";
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  std::printf("%d passed, %d failed\n", g_checks - g_failures, g_failures);
  return g_failures ? 1 : 0;
}
