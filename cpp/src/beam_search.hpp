// Trie-constrained beam search with exactly the semantics of earn_export/search/beam.py.
//
// Step 0 expands each user's prefill row into `beam` beams; steps 1..L-1 call the decode graph once for all
// beams of all users. Candidates are the children of each live beam's trie node, ranked per user over
// beam x children by (score desc, candidate index asc) -- numpy's stable sort on -score, i.e. the lowest index
// wins a tie at the beam cut. A slot that cannot be filled with a finite-score candidate is dead: score -inf,
// trie node 0, parent 0, token -1 (fed to the graph as token 0), item -1 at the end. Scores are float32 sums
// of the token log-probs, added in the same order as numpy does.
#pragma once

#include <cstdint>
#include <vector>

#include "engine.hpp"

namespace earn {

/// What the decode graph computes for the search (the SearchBackend protocol's decode).
class DecodeModel {
 public:
  virtual ~DecodeModel() = default;
  /// tokens [B, K] (previous step's tokens, dead beams 0), parents [B, K] (beam each continues) ->
  /// log-probs [B, K, vocab_out], valid until the next call.
  virtual const float* decode(const int64_t* tokens, const int64_t* parents, int64_t users, int64_t beam,
                              int64_t step) = 0;
};

struct BeamOutput {
  std::vector<int64_t> items;   // [B, K]
  std::vector<float> scores;    // [B, K]
  std::vector<int64_t> tokens;  // [B, K, L]
};

/// Buffers reused across searches (sized on first use, never shrunk).
struct BeamScratch {
  struct Cand {
    float score;
    int32_t parent;  // beam index in the previous step
    int32_t col;     // child column within the parent's node (edge - offsets[node])
    int64_t edge;
  };
  std::vector<Cand> cands;
  std::vector<int64_t> nodes, new_nodes, parents, step_tokens, path, new_path;
  std::vector<float> scores, new_scores;
};

/// Search for `users` prompts whose prefill log-probs are `first_logprobs` [users, vocab_out].
void beam_search(const Trie& trie, const std::vector<int64_t>& columns, int64_t vocab_out, int64_t users,
                 int64_t beam, const float* first_logprobs, DecodeModel& model, BeamScratch& s, BeamOutput& out);

}  // namespace earn
