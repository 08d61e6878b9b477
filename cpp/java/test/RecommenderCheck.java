import earn.EarnException;
import earn.IdResult;
import earn.Recommender;
import earn.Result;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * The Java binding from the outside (tests/test_cpp_package.py compiles it against the installed earn.jar):
 *   recommend ENGINE_DIR HISTORIES_FILE TOP_K BEAM   one line per user: items, "|", scores
 *   errors ENGINE_DIR CORRUPT_DIR                    one "case code message" line per error path
 *   threads ENGINE_DIR HISTORIES_FILE N              N threads share one Recommender; results vs serial
 *   ids ENGINE_DIR HISTORIES_FILE TOP_K BEAM skip|error   original ids: one line per user, tab-separated:
 *                                                    items, titles (comma-separated, "null" = none), scores,
 *                                                    skipped, unknown ids dropped
 *   id-errors ENGINE_DIR GOOD_ID BAD_ID NO_MAP_ENGINE   one "case code message" line per id error path
 */
public final class RecommenderCheck {
  static long[][] read(String path) throws Exception {
    List<long[]> out = new ArrayList<>();
    for (String line : Files.readAllLines(Paths.get(path))) {
      String t = line.trim();
      if (t.isEmpty()) {
        out.add(new long[0]);
        continue;
      }
      String[] parts = t.split("\\s+");
      long[] h = new long[parts.length];
      for (int i = 0; i < parts.length; i++) h[i] = Long.parseLong(parts[i]);
      out.add(h);
    }
    return out.toArray(new long[0][]);
  }

  static String[][] readIds(String path) throws Exception {
    List<String[]> out = new ArrayList<>();
    for (String line : Files.readAllLines(Paths.get(path))) {
      String t = line.trim();
      out.add(t.isEmpty() ? new String[0] : t.split("\\s+"));
    }
    return out.toArray(new String[0][]);
  }

  static String join(Object[] values) {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < values.length; i++) sb.append(i == 0 ? "" : ",").append(values[i]);
    return sb.toString();
  }

  static void report(String name, Runnable call) {
    try {
      call.run();
      System.out.println(name + " OK");
    } catch (EarnException e) {
      System.out.println(name + " " + e.code() + " " + e.getMessage());
    } catch (IllegalStateException e) {
      System.out.println(name + " IllegalStateException " + e.getMessage());
    }
  }

  public static void main(String[] args) throws Exception {
    switch (args[0]) {
      case "recommend": {
        try (Recommender rec = Recommender.load(args[1])) {
          Result r = rec.recommend(read(args[2]), Integer.parseInt(args[3]), Integer.parseInt(args[4]));
          StringBuilder sb = new StringBuilder();
          for (int u = 0; u < r.users; u++) {
            for (int k = 0; k < r.topK; k++) sb.append(r.item(u, k)).append(' ');
            sb.append('|');
            for (int k = 0; k < r.topK; k++) sb.append(' ').append(r.score(u, k));
            sb.append('\n');
          }
          System.out.print(sb);
        }
        break;
      }
      case "errors": {
        String dir = args[1];
        report("missing_engine", () -> Recommender.load(dir + "/no-such-engine").close());
        report("corrupt_engine", () -> Recommender.load(args[2]).close());
        report("bad_batch_size", () -> Recommender.load(dir, new Recommender.Options().batchSize(0)).close());
        Recommender rec = Recommender.load(dir);
        report("unknown_items", () -> rec.recommend(new long[][] {{1, 999999}, {2}}, 5, 20));
        report("top_k_zero", () -> rec.recommend(new long[][] {{1}}, 0, 20));
        report("top_k_above_beam", () -> rec.recommend(new long[][] {{1}}, 30, 20));
        report("skip_unknown", () -> {
          Result r = rec.recommend(new long[][] {{1, 999999}, {2}}, 5, 20, true);
          if (r.skipped[0] != 1 || r.skipped[1] != 0) throw new AssertionError("skipped counts");
        });
        rec.close();
        rec.close();  // a second close is a no-op
        report("closed", () -> rec.recommend(new long[][] {{1}}, 5, 20));
        System.out.println("api " + Recommender.cApiVersion() + " version " + Recommender.libraryVersion());
        break;
      }
      case "threads": {
        long[][] h = read(args[2]);
        int n = Integer.parseInt(args[3]);
        try (Recommender rec = Recommender.load(args[1])) {
          Result want = rec.recommend(h, 10, 20);
          ExecutorService pool = Executors.newFixedThreadPool(n);
          List<Future<Result>> got = new ArrayList<>();
          for (int i = 0; i < 4 * n; i++) got.add(pool.submit(() -> rec.recommend(h, 10, 20)));
          int mismatches = 0;
          for (Future<Result> f : got) {
            Result r = f.get();
            if (!java.util.Arrays.equals(r.items, want.items) || !java.util.Arrays.equals(r.scores, want.scores)) {
              mismatches++;
            }
          }
          pool.shutdown();
          System.out.println("threads " + n + " calls " + got.size() + " mismatches " + mismatches);
        }
        break;
      }
      case "ids": {
        try (Recommender rec = Recommender.load(args[1])) {
          IdResult r = rec.recommendIds(readIds(args[2]), Integer.parseInt(args[3]), Integer.parseInt(args[4]),
              args[5].equals("skip"));
          StringBuilder sb = new StringBuilder();
          for (int u = 0; u < r.users; u++) {
            Float[] scores = new Float[r.topK];
            for (int k = 0; k < r.topK; k++) scores[k] = r.scores[u][k];
            sb.append(join(r.items[u])).append('\t').append(join(r.titles[u])).append('\t').append(join(scores))
                .append('\t').append(r.skipped[u]).append('\t').append(join(r.unknown[u])).append('\n');
          }
          System.out.print(sb);
        }
        break;
      }
      case "id-errors": {
        String good = args[2];
        String bad = args[3];
        try (Recommender rec = Recommender.load(args[1]); Recommender plain = Recommender.load(args[4])) {
          report("unknown_ids", () -> rec.recommendIds(new String[][] {{good, bad}, {good}}, 5, 10));
          report("skip_ids", () -> {
            IdResult r = rec.recommendIds(new String[][] {{good, bad}, {good}}, 5, 10, true);
            if (r.skipped[0] != 1 || r.skipped[1] != 0 || !r.unknown[0][0].equals(bad) || r.unknown[1].length != 0) {
              throw new AssertionError("skipped counts / unknown ids");
            }
          });
          report("no_map", () -> plain.recommendIds(new String[][] {{"1"}}, 5, 10));
          report("no_map_title", () -> plain.title(0));
          report("index_out_of_range", () -> rec.originalId(-1));
          System.out.println("has_id_map " + rec.hasIdMap() + " " + plain.hasIdMap());
          System.out.println("original_id_0 " + rec.originalId(0) + " title_0 " + rec.title(0));
          System.out.println("minor " + Recommender.cApiMinorVersion());
        }
        break;
      }
      default:
        System.err.println("usage: RecommenderCheck recommend|errors|threads|ids|id-errors ...");
        System.exit(2);
    }
  }
}
