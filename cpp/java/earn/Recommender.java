package earn;

import java.lang.ref.Cleaner;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Top-K item recommendation from an earn-export engine directory, through libearn's C API (JNI).
 *
 * <pre>
 * try (Recommender rec = Recommender.load("engines/beauty")) {
 *   Result r = rec.recommend(new long[][] {{12, 873, 4051}, {}}, 10, 20);
 * }
 * try (Recommender rec = Recommender.load("engines/own")) {   // an engine with an item id map
 *   IdResult r = rec.recommendIds(new String[][] {{"sku-528", "sku-115"}}, 10, 20);   // r.items[0][0], r.titles
 * }
 * </pre>
 *
 * <p>Thread-safe: any number of threads may call {@link #recommend} on one instance; {@link #close} waits for
 * running calls and later calls throw IllegalStateException. Errors of libearn are {@link EarnException}s
 * carrying the C API's status and message. The native library is libearn_jni.so: from the system property
 * {@code earn.jni.library} (a path) when set, else from {@code java.library.path}.
 */
public final class Recommender implements AutoCloseable {
  static {
    String path = System.getProperty("earn.jni.library");
    if (path != null && !path.isEmpty()) {
      System.load(path);
    } else {
      System.loadLibrary("earn_jni");
    }
  }

  private static final Cleaner CLEANER = Cleaner.create();

  /** Load options; the defaults are those of earn/c_api.h. */
  public static final class Options {
    final List<String> providers = new ArrayList<>();
    final List<String> customOpLibraries = new ArrayList<>();
    String ortLibrary = "";
    boolean verify = true;
    long batchSize = 64;
    int intraOpThreads = 0;

    /** An execution provider, in order of preference (e.g. "CPUExecutionProvider"). */
    public Options provider(String name) {
      providers.add(name);
      return this;
    }

    /** A custom-op library (engines exported with --attention plugin). */
    public Options customOpLibrary(String path) {
      customOpLibraries.add(path);
      return this;
    }

    /** The libonnxruntime to load (default: $EARN_ORT_LIBRARY, then the system's). */
    public Options ortLibrary(String path) {
      ortLibrary = path;
      return this;
    }

    /** Re-hash every engine file at load (default true). */
    public Options verify(boolean v) {
      verify = v;
      return this;
    }

    /** Users per graph call (default 64). */
    public Options batchSize(long n) {
      batchSize = n;
      return this;
    }

    /** ONNX Runtime threads per session (default 0: ONNX Runtime's choice). */
    public Options intraOpThreads(int n) {
      intraOpThreads = n;
      return this;
    }
  }

  /** Frees the native recommender once: on close, or when an unclosed Recommender is collected. */
  private static final class Handle implements Runnable {
    long ptr;

    Handle(long ptr) {
      this.ptr = ptr;
    }

    @Override
    public void run() {
      if (ptr != 0) {
        nativeFree(ptr);
        ptr = 0;
      }
    }
  }

  private final Handle handle;
  private final Cleaner.Cleanable cleanable;
  private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();

  private Recommender(long ptr) {
    handle = new Handle(ptr);
    cleanable = CLEANER.register(this, handle);
  }

  /** Open an engine directory with the default options. */
  public static Recommender load(String engineDir) {
    return load(engineDir, new Options());
  }

  /** Open an engine directory; throws EarnException (ENGINE_DIR, RUNTIME_LIBRARY, ...) when it cannot. */
  public static Recommender load(String engineDir, Options options) {
    if (engineDir == null || options == null) {
      throw new NullPointerException("engineDir and options must not be null");
    }
    long ptr = nativeLoad(engineDir, options.providers.toArray(new String[0]),
        options.customOpLibraries.toArray(new String[0]), options.ortLibrary, options.verify,
        options.batchSize, options.intraOpThreads);
    return new Recommender(ptr);
  }

  /** CSR offsets of the histories (each an array): offsets[u]..offsets[u + 1] is user u's slice of the flat ids. */
  private static long[] offsets(Object[] histories) {
    long[] offsets = new long[histories.length + 1];
    for (int u = 0; u < histories.length; u++) {
      offsets[u + 1] = offsets[u] + java.lang.reflect.Array.getLength(histories[u]);
    }
    return offsets;
  }

  /** Top-{@code topK} items per history (item ids, oldest first); unknown ids throw (UNKNOWN_ITEM). */
  public Result recommend(long[][] histories, int topK, int beam) {
    return recommend(histories, topK, beam, false);
  }

  /** As above; with skipUnknown, unknown ids are dropped and counted in {@link Result#skipped}. */
  public Result recommend(long[][] histories, int topK, int beam, boolean skipUnknown) {
    long[] offsets = offsets(histories);
    int total = (int) offsets[histories.length];
    long[] flat = new long[total];
    for (int u = 0; u < histories.length; u++) {
      System.arraycopy(histories[u], 0, flat, (int) offsets[u], histories[u].length);
    }
    lock.readLock().lock();
    try {
      return nativeRecommend(live(), flat, offsets, topK, beam, skipUnknown);
    } finally {
      lock.readLock().unlock();
    }
  }

  /**
   * Top-{@code topK} items per history in the catalog's original ids (engines with an item id map,
   * item_ids.json): ids as spelled in the map (an int map's in decimal). Unknown ids throw (UNKNOWN_ITEM, named
   * as given); an engine without a map throws INVALID_ARGUMENT naming it.
   */
  public IdResult recommendIds(String[][] histories, int topK, int beam) {
    return recommendIds(histories, topK, beam, false);
  }

  /** As above; with skipUnknown, unknown ids are dropped, counted in {@link IdResult#skipped} and listed in
   * {@link IdResult#unknown}. */
  public IdResult recommendIds(String[][] histories, int topK, int beam, boolean skipUnknown) {
    long[] offsets = offsets(histories);
    int total = (int) offsets[histories.length];
    byte[][] flat = new byte[total][];
    for (int u = 0; u < histories.length; u++) {
      for (int i = 0; i < histories[u].length; i++) {
        String id = histories[u][i];
        if (id == null) {
          throw new NullPointerException("histories[" + u + "][" + i + "] is null; pass an item id");
        }
        flat[(int) offsets[u] + i] = id.getBytes(StandardCharsets.UTF_8);
      }
    }
    lock.readLock().lock();
    try {
      return nativeRecommendIds(live(), flat, offsets, topK, beam, skipUnknown);
    } finally {
      lock.readLock().unlock();
    }
  }

  /** Whether the engine carries an item id map (item_ids.json), i.e. {@link #recommendIds} can be used. */
  public boolean hasIdMap() {
    lock.readLock().lock();
    try {
      return nativeHasIdMap(live());
    } finally {
      lock.readLock().unlock();
    }
  }

  /** The original id of catalog index {@code index} (engines with an item id map). */
  public String originalId(long index) {
    lock.readLock().lock();
    try {
      return IdResult.text(nativeOriginalId(live(), index));
    } finally {
      lock.readLock().unlock();
    }
  }

  /** The title of catalog index {@code index}, null when the log gave none (engines with an item id map). */
  public String title(long index) {
    lock.readLock().lock();
    try {
      return IdResult.text(nativeTitle(live(), index));
    } finally {
      lock.readLock().unlock();
    }
  }

  /** The engine's max_history (longer histories keep their most recent items). */
  public long maxHistory() {
    lock.readLock().lock();
    try {
      return nativeMaxHistory(live());
    } finally {
      lock.readLock().unlock();
    }
  }

  /** The C API version of the loaded libearn (earn_c_api_version). */
  public static int cApiVersion() {
    return nativeCApiVersion();
  }

  /** The C API minor version of the loaded libearn (earn_c_api_minor_version; 1: the original-id calls). */
  public static int cApiMinorVersion() {
    return nativeCApiMinorVersion();
  }

  /** The libearn release (earn_version_string). */
  public static String libraryVersion() {
    return nativeVersionString();
  }

  @Override
  public void close() {
    lock.writeLock().lock();
    try {
      cleanable.clean();
    } finally {
      lock.writeLock().unlock();
    }
  }

  private long live() {
    if (handle.ptr == 0) {
      throw new IllegalStateException("this Recommender is closed; load the engine again");
    }
    return handle.ptr;
  }

  private static native long nativeLoad(String engineDir, String[] providers, String[] customOpLibraries,
      String ortLibrary, boolean verify, long batchSize, int intraOpThreads);

  private static native Result nativeRecommend(long ptr, long[] items, long[] offsets, int topK, int beam,
      boolean skipUnknown);

  private static native IdResult nativeRecommendIds(long ptr, byte[][] items, long[] offsets, int topK, int beam,
      boolean skipUnknown);

  private static native boolean nativeHasIdMap(long ptr);

  private static native byte[] nativeOriginalId(long ptr, long index);

  private static native byte[] nativeTitle(long ptr, long index);

  private static native long nativeMaxHistory(long ptr);

  private static native void nativeFree(long ptr);

  private static native int nativeCApiVersion();

  private static native int nativeCApiMinorVersion();

  private static native String nativeVersionString();
}
