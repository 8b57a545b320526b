// A minimal tokend client for Java 16+ (UnixDomainSocketAddress, SocketChannel);
// no dependencies.
//
// Gets a tenant's access token, then watches for new ones (SPEC §5 `get` and
// `watch`: newline-delimited JSON over a Unix socket).
//
//   javac TokendClient.java && java TokendClient [--socket PATH] [--count N] TENANT
//
// prints `token TENANT ACCESS_TOKEN`, then one line per pushed event:
// `event token TENANT ACCESS_TOKEN EXPIRES_IN` or `event expired TENANT`, until
// tokend goes away (exit 3) or N events were printed (exit 0). An error answer
// prints `error CODE: MESSAGE` to stderr and exits 1.
//
// The JSON reader below handles every JSON value (objects, arrays, strings with
// all escapes, numbers, true/false/null), which is all tokend sends; use your
// JSON library instead if you have one.

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public final class TokendClient implements AutoCloseable {

  /** tokend answered {"ok":false,...}. */
  public static final class TokendException extends Exception {
    private static final long serialVersionUID = 1L;
    public final String code;

    TokendException(Map<String, Object> answer) {
      super(answer.get("error") + ": " + answer.get("message"));
      this.code = String.valueOf(answer.get("error"));
    }
  }

  private final SocketChannel channel;
  private final ByteBuffer readBuffer = ByteBuffer.allocate(65536);
  private final ByteArrayOutputStream line = new ByteArrayOutputStream();

  /** One connection to tokend; not thread-safe. */
  public TokendClient(String path) throws IOException {
    channel = SocketChannel.open(StandardProtocolFamily.UNIX);
    channel.connect(UnixDomainSocketAddress.of(path));
    readBuffer.flip();  // empty
  }

  @Override
  public void close() throws IOException {
    channel.close();
  }

  /** Sends one request; returns its answer. */
  public Map<String, Object> call(Map<String, Object> request) throws IOException, TokendException {
    ByteBuffer out = ByteBuffer.wrap((Json.write(request) + "\n").getBytes(StandardCharsets.UTF_8));
    while (out.hasRemaining()) channel.write(out);
    Map<String, Object> answer = readObject();
    if (!Boolean.TRUE.equals(answer.get("ok"))) throw new TokendException(answer);
    return answer;
  }

  /** The tenant's current token answer (access_token, expires_in, ...). */
  public Map<String, Object> get(String tenant, long waitMs) throws IOException, TokendException {
    Map<String, Object> request = new LinkedHashMap<>();
    request.put("op", "get");
    request.put("tenant", tenant);
    request.put("wait_ms", waitMs);
    return call(request);
  }

  /** Reports a token the API rejected (401); returns the replacement. */
  public Map<String, Object> invalidate(String tenant, String accessToken, long waitMs)
      throws IOException, TokendException {
    Map<String, Object> request = new LinkedHashMap<>();
    request.put("op", "invalidate");
    request.put("tenant", tenant);
    request.put("access_token", accessToken);
    request.put("wait_ms", waitMs);
    return call(request);
  }

  /** Turns this connection into a watch; then call nextEvent() forever. */
  public List<Object> watch(List<String> tenants) throws IOException, TokendException {
    Map<String, Object> request = new LinkedHashMap<>();
    request.put("op", "watch");
    if (tenants != null && !tenants.isEmpty()) request.put("tenants", tenants);
    @SuppressWarnings("unchecked")
    List<Object> watching = (List<Object>) call(request).get("watching");
    return watching;
  }

  /** The next pushed event; blocks. */
  public Map<String, Object> nextEvent() throws IOException {
    return readObject();
  }

  private Map<String, Object> readObject() throws IOException {
    Object value = Json.parse(readLine());
    if (!(value instanceof Map)) throw new IOException("tokend sent a line that is not an object");
    @SuppressWarnings("unchecked")
    Map<String, Object> object = (Map<String, Object>) value;
    return object;
  }

  private String readLine() throws IOException {
    line.reset();
    for (;;) {
      while (readBuffer.hasRemaining()) {
        byte b = readBuffer.get();
        if (b == '\n') return line.toString(StandardCharsets.UTF_8);
        line.write(b);
      }
      readBuffer.clear();
      int n = channel.read(readBuffer);
      readBuffer.flip();
      if (n < 0) throw new IOException("tokend closed the connection");
    }
  }

  /** Just enough JSON for tokend's protocol. */
  static final class Json {
    private final String s;
    private int i;

    private Json(String s) {
      this.s = s;
    }

    static Object parse(String text) throws IOException {
      Json p = new Json(text);
      p.skipSpace();
      Object value = p.value();
      p.skipSpace();
      if (p.i != p.s.length()) throw p.error("trailing characters");
      return value;
    }

    static String write(Object value) {
      StringBuilder out = new StringBuilder();
      write(value, out);
      return out.toString();
    }

    private static void write(Object value, StringBuilder out) {
      if (value == null) {
        out.append("null");
      } else if (value instanceof String) {
        writeString((String) value, out);
      } else if (value instanceof Number || value instanceof Boolean) {
        out.append(value);
      } else if (value instanceof Map) {
        out.append('{');
        boolean first = true;
        for (Map.Entry<?, ?> e : ((Map<?, ?>) value).entrySet()) {
          if (!first) out.append(',');
          first = false;
          writeString(String.valueOf(e.getKey()), out);
          out.append(':');
          write(e.getValue(), out);
        }
        out.append('}');
      } else if (value instanceof List) {
        out.append('[');
        boolean first = true;
        for (Object item : (List<?>) value) {
          if (!first) out.append(',');
          first = false;
          write(item, out);
        }
        out.append(']');
      } else {
        throw new IllegalArgumentException("cannot write " + value.getClass());
      }
    }

    private static void writeString(String v, StringBuilder out) {
      out.append('"');
      for (int k = 0; k < v.length(); k++) {
        char c = v.charAt(k);
        switch (c) {
          case '"': out.append("\\\""); break;
          case '\\': out.append("\\\\"); break;
          case '\n': out.append("\\n"); break;
          case '\r': out.append("\\r"); break;
          case '\t': out.append("\\t"); break;
          default:
            if (c < 0x20) {
              out.append(String.format("\\u%04x", (int) c));
            } else {
              out.append(c);
            }
        }
      }
      out.append('"');
    }

    private IOException error(String what) {
      return new IOException("bad JSON from tokend at " + i + ": " + what);
    }

    private void skipSpace() {
      while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) i++;
    }

    private boolean consume(String word) {
      if (s.startsWith(word, i)) {
        i += word.length();
        return true;
      }
      return false;
    }

    private Object value() throws IOException {
      if (i >= s.length()) throw error("unexpected end");
      char c = s.charAt(i);
      if (c == '{') return object();
      if (c == '[') return array();
      if (c == '"') return string();
      if (consume("true")) return Boolean.TRUE;
      if (consume("false")) return Boolean.FALSE;
      if (consume("null")) return null;
      return number();
    }

    private Map<String, Object> object() throws IOException {
      Map<String, Object> out = new LinkedHashMap<>();
      i++;  // {
      skipSpace();
      if (consume("}")) return out;
      for (;;) {
        skipSpace();
        if (i >= s.length() || s.charAt(i) != '"') throw error("expected a key");
        String key = string();
        skipSpace();
        if (!consume(":")) throw error("expected :");
        skipSpace();
        out.put(key, value());
        skipSpace();
        if (consume("}")) return out;
        if (!consume(",")) throw error("expected , or }");
      }
    }

    private List<Object> array() throws IOException {
      List<Object> out = new ArrayList<>();
      i++;  // [
      skipSpace();
      if (consume("]")) return out;
      for (;;) {
        skipSpace();
        out.add(value());
        skipSpace();
        if (consume("]")) return out;
        if (!consume(",")) throw error("expected , or ]");
      }
    }

    private String string() throws IOException {
      StringBuilder out = new StringBuilder();
      i++;  // "
      while (i < s.length()) {
        char c = s.charAt(i++);
        if (c == '"') return out.toString();
        if (c != '\\') {
          out.append(c);
          continue;
        }
        if (i >= s.length()) break;
        char e = s.charAt(i++);
        switch (e) {
          case '"': out.append('"'); break;
          case '\\': out.append('\\'); break;
          case '/': out.append('/'); break;
          case 'b': out.append('\b'); break;
          case 'f': out.append('\f'); break;
          case 'n': out.append('\n'); break;
          case 'r': out.append('\r'); break;
          case 't': out.append('\t'); break;
          case 'u':
            if (i + 4 > s.length()) throw error("short \\u escape");
            try {
              out.append((char) Integer.parseInt(s.substring(i, i + 4), 16));  // surrogates pair up
            } catch (NumberFormatException ex) {
              throw error("bad \\u escape");
            }
            i += 4;
            break;
          default:
            throw error("bad escape");
        }
      }
      throw error("unterminated string");
    }

    private Object number() throws IOException {
      int start = i;
      while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
      String text = s.substring(start, i);
      if (text.isEmpty()) throw error("unexpected character");
      try {
        if (text.indexOf('.') < 0 && text.indexOf('e') < 0 && text.indexOf('E') < 0) {
          return Long.parseLong(text);
        }
        return Double.parseDouble(text);
      } catch (NumberFormatException ex) {
        throw error("bad number " + text);
      }
    }
  }

  public static void main(String[] args) {
    String socket = System.getenv("TOKEND_SOCKET");
    if (socket == null || socket.isEmpty()) socket = "/run/tokend/tokend.sock";
    long count = 0;
    String tenant = null;
    for (int k = 0; k < args.length; k++) {
      if (args[k].equals("--socket") && k + 1 < args.length) {
        socket = args[++k];
      } else if (args[k].equals("--count") && k + 1 < args.length) {
        count = Long.parseLong(args[++k]);
      } else if (tenant == null && !args[k].startsWith("-")) {
        tenant = args[k];
      } else {
        System.err.println("usage: TokendClient [--socket PATH] [--count N] TENANT");
        System.exit(2);
      }
    }
    if (tenant == null) {
      System.err.println("usage: TokendClient [--socket PATH] [--count N] TENANT");
      System.exit(2);
    }
    try {
      try (TokendClient client = new TokendClient(socket)) {
        Map<String, Object> token = client.get(tenant, 10000);
        System.out.println("token " + tenant + " " + token.get("access_token"));
      }
      long printed = 0;
      try (TokendClient watcher = new TokendClient(socket)) {
        watcher.watch(List.of(tenant));
        for (;;) {
          Map<String, Object> event = watcher.nextEvent();
          if ("token".equals(event.get("event"))) {
            System.out.println("event token " + event.get("tenant") + " " + event.get("access_token")
                + " " + event.get("expires_in"));
          } else {
            System.out.println("event " + event.get("event") + " " + event.get("tenant"));
          }
          System.out.flush();
          if (count > 0 && ++printed >= count) return;
        }
      }
    } catch (TokendException e) {
      System.err.println("error " + e.getMessage());
      System.exit(1);
    } catch (IOException e) {
      System.err.println("cannot reach tokend: " + e.getMessage());
      System.exit(3);
    }
  }
}
