#include "beam_search.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace earn {

void beam_search(const Trie& trie, const std::vector<int64_t>& columns, int64_t vocab_out, int64_t users,
                 int64_t beam, const float* first_logprobs, DecodeModel& model, BeamScratch& s, BeamOutput& out) {
  const int64_t L = trie.depth;
  const int64_t K = beam;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const size_t bk = static_cast<size_t>(users * K);
  s.nodes.assign(static_cast<size_t>(users), 0);  // step 0: one row per user, at the root
  s.scores.assign(static_cast<size_t>(users), 0.0f);
  s.new_nodes.resize(bk);
  s.new_scores.resize(bk);
  s.parents.resize(bk);
  s.step_tokens.resize(bk);
  s.path.resize(bk * L);
  s.new_path.resize(bk * L);

  // (score desc, parent asc, column asc): the candidate index parent * C + column in numpy's stable order
  const auto better = [](const BeamScratch::Cand& a, const BeamScratch::Cand& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.parent != b.parent) return a.parent < b.parent;
    return a.col < b.col;
  };

  const float* logprobs = first_logprobs;
  int64_t nb = 1;  // beams per user feeding this step
  for (int64_t step = 0; step < L; ++step) {
    if (step > 0) {
      for (size_t i = 0; i < bk; ++i) s.step_tokens[i] = std::max<int64_t>(s.path[i * L + step - 1], 0);
      logprobs = model.decode(s.step_tokens.data(), s.parents.data(), users, K, step);
    }
    for (int64_t b = 0; b < users; ++b) {
      s.cands.clear();
      for (int64_t i = 0; i < nb; ++i) {
        const int64_t row = b * nb + i;
        const float score = s.scores[row];
        if (!std::isfinite(score)) continue;  // dead beams are never expanded
        const int64_t node = s.nodes[row];
        const float* lp = logprobs + row * vocab_out;
        const int64_t e0 = trie.offsets[node], e1 = trie.offsets[node + 1];
        for (int64_t e = e0; e < e1; ++e) {
          const float c = score + lp[columns[trie.tokens[e]]];
          if (std::isfinite(c))
            s.cands.push_back({c, static_cast<int32_t>(i), static_cast<int32_t>(e - e0), e});
        }
      }
      const size_t n = std::min(s.cands.size(), static_cast<size_t>(K));
      if (s.cands.size() > n) std::nth_element(s.cands.begin(), s.cands.begin() + n - 1, s.cands.end(), better);
      std::sort(s.cands.begin(), s.cands.begin() + n, better);
      for (int64_t k = 0; k < K; ++k) {
        const size_t o = static_cast<size_t>(b * K + k);
        int64_t parent = 0, token = -1;
        if (static_cast<size_t>(k) < n) {
          const auto& c = s.cands[k];
          s.new_scores[o] = c.score;
          s.new_nodes[o] = trie.children[c.edge];
          parent = c.parent;
          token = trie.tokens[c.edge];
        } else {  // dead: fewer live candidates than beams
          s.new_scores[o] = neg_inf;
          s.new_nodes[o] = 0;
        }
        s.parents[o] = parent;
        int64_t* dst = &s.new_path[o * L];
        if (step) {
          const int64_t* src = &s.path[static_cast<size_t>(b * K + parent) * L];
          std::copy(src, src + step, dst);
        }
        dst[step] = token;
      }
    }
    std::swap(s.path, s.new_path);
    s.nodes.assign(s.new_nodes.begin(), s.new_nodes.end());
    s.scores.assign(s.new_scores.begin(), s.new_scores.end());
    nb = K;
  }
  out.items.resize(bk);
  out.scores.resize(bk);
  out.tokens.resize(bk * L);
  for (size_t o = 0; o < bk; ++o) {
    const int64_t leaf = trie.leaf_item[s.nodes[o]];
    const bool alive = std::isfinite(s.scores[o]) && leaf >= 0;
    out.items[o] = alive ? leaf : -1;
    out.scores[o] = alive ? s.scores[o] : neg_inf;
    for (int64_t d = 0; d < L; ++d) out.tokens[o * L + d] = alive ? s.path[o * L + d] : -1;
  }
}

}  // namespace earn
