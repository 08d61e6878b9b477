package earn;

/**
 * A failed libearn call: {@link #code()} is the C API's earn_status (see earn/c_api.h), the message is the C
 * API's message for that call (what went wrong and how to fix it).
 */
public class EarnException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public static final int INVALID_ARGUMENT = 1;
  public static final int ENGINE_DIR = 2;
  public static final int UNKNOWN_ITEM = 3;
  public static final int RUNTIME_LIBRARY = 4;
  public static final int OUT_OF_MEMORY = 5;
  public static final int INTERNAL = 6;

  private final int code;

  public EarnException(int code, String message) {
    super(message);
    this.code = code;
  }

  /** The earn_status of the failed call (one of the constants above). */
  public int code() {
    return code;
  }
}
