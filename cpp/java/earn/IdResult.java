package earn;

import java.nio.charset.StandardCharsets;

/**
 * The top-K of one {@link Recommender#recommendIds} call, in the catalog's original item ids (the engine's
 * item_ids.json): {@code items[u][rank]} best first, {@code null} where fewer than topK valid items exist.
 */
public final class IdResult {
  public final int users;
  public final int topK;
  /** [users][topK] original item ids as spelled in the engine's id map; null = no item at that rank. */
  public final String[][] items;
  /** [users][topK] the items' titles; null where the log gave none (or no item). */
  public final String[][] titles;
  /** [users][topK] catalog indices (-1 = no item). */
  public final long[][] index;
  /** [users][topK] sums of token log-probabilities (-Infinity = no item). */
  public final float[][] scores;
  /** [users] unknown item ids dropped (skipUnknown). */
  public final long[] skipped;
  /** [users] oldest items dropped beyond the engine's max_history. */
  public final long[] truncated;
  /** [users][] the unknown ids dropped from each history (skipUnknown), as given. */
  public final String[][] unknown;

  /** Built by libearn_jni from the C result: strings arrive as UTF-8 bytes, flat arrays row-major. */
  IdResult(int users, int topK, byte[][] items, byte[][] titles, long[] index, float[] scores, long[] skipped,
      long[] truncated, byte[][] unknown, long[] unknownOffsets) {
    this.users = users;
    this.topK = topK;
    this.items = new String[users][topK];
    this.titles = new String[users][topK];
    this.index = new long[users][topK];
    this.scores = new float[users][topK];
    this.unknown = new String[users][];
    for (int u = 0; u < users; u++) {
      for (int k = 0; k < topK; k++) {
        int i = u * topK + k;
        this.items[u][k] = text(items[i]);
        this.titles[u][k] = text(titles[i]);
        this.index[u][k] = index[i];
        this.scores[u][k] = scores[i];
      }
      int from = (int) unknownOffsets[u];
      int to = (int) unknownOffsets[u + 1];
      this.unknown[u] = new String[to - from];
      for (int j = from; j < to; j++) {
        this.unknown[u][j - from] = text(unknown[j]);
      }
    }
    this.skipped = skipped;
    this.truncated = truncated;
  }

  static String text(byte[] utf8) {
    return utf8 == null ? null : new String(utf8, StandardCharsets.UTF_8);
  }
}
