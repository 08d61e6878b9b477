package earn;

/**
 * The top-K of one {@link Recommender#recommend} call, row-major: user u's items are
 * items[u * topK .. (u + 1) * topK), best first; -1 (score -Infinity) where fewer than topK valid items exist.
 */
public final class Result {
  public final int users;
  public final int topK;
  /** [users * topK] item ids. */
  public final long[] items;
  /** [users * topK] sums of token log-probabilities. */
  public final float[] scores;
  /** [users] unknown item ids dropped (skipUnknown). */
  public final long[] skipped;
  /** [users] oldest items dropped beyond the engine's max_history. */
  public final long[] truncated;

  Result(int users, int topK, long[] items, float[] scores, long[] skipped, long[] truncated) {
    this.users = users;
    this.topK = topK;
    this.items = items;
    this.scores = scores;
    this.skipped = skipped;
    this.truncated = truncated;
  }

  /** The item at rank {@code rank} (0 = best) for user {@code user}. */
  public long item(int user, int rank) {
    return items[user * topK + rank];
  }

  /** The score at rank {@code rank} for user {@code user}. */
  public float score(int user, int rank) {
    return scores[user * topK + rank];
  }
}
