// wordcount in C++: the same three functions as the Rust plugin
// (plugins/wordcount), byte-identical outputs and error messages, written
// with the standard library (std::string_view, std::vector, std::string,
// std::optional) over wasi-libc and libc++ — a WASI reactor: the host
// calls _initialize (static constructors) first.
//
//   map:split              line -> (word, i64 1) for every word split on
//                          Unicode White_Space (Rust's char::is_whitespace)
//   reduce:sum             adds i64 counts; an overflow fails the call
//   update:running_count   state = i64 total; a key with new values gets
//                          total + sum(values) (wrapping) and emits
//                          (word, total); a key without values keeps its
//                          state (or has none)
//
// No exceptions (-fno-exceptions): a failure is a value, Result<T>.
//
// Build (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32
//        libc++-14-dev-wasm32 libc++abi-14-dev-wasm32):
//   clang++ --target=wasm32-wasi -std=c++20 -O2 -Wall -Werror -fno-exceptions \
//           -mexec-model=reactor -s -o wordcount_cpp.wasm wordcount.cpp

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#define EXPORT(name) extern "C" __attribute__((export_name(name)))

namespace {

using Bytes = std::string_view;

// ---- failures ---------------------------------------------------------------

struct Error {
  std::string message;
};

// A value or the message of the call's failure (status 1).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error e) : v_(std::move(e)) {}
  bool ok() const { return v_.index() == 0; }
  T& operator*() { return std::get<0>(v_); }
  Error& error() { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Propagates a failure, like Rust's `?`.
#define TRY(var, expr)                            \
  auto var##_result = (expr);                     \
  if (!var##_result.ok()) return var##_result.error(); \
  auto var = std::move(*var##_result)

// Propagates a failure and drops the value.
#define CHECK(expr) \
  if (auto checked = (expr); !checked.ok()) return checked.error()

Error fail(std::string message) { return Error{std::move(message)}; }

std::string str(uint64_t v) { return std::to_string(v); }

// ---- framing (docs/abi.md §3), with the weir-abi crate's error wording ------

class Reader {
 public:
  Reader(Bytes buf, std::string_view context) : buf_(buf), context_(context) {}

  size_t pos() const { return pos_; }
  void rewind(size_t pos) { pos_ = pos; }

  Error frame_error(size_t at, std::string_view expected) const {
    return fail(std::string(context_) + "malformed framing at byte " + str(at) + ": expected " + std::string(expected));
  }

  Result<Bytes> take(size_t n, std::string_view expected) {
    if (buf_.size() - pos_ < n) return frame_error(pos_, expected);
    Bytes out = buf_.substr(pos_, n);
    pos_ += n;
    return out;
  }

  Result<uint8_t> u8(std::string_view expected) {
    TRY(b, take(1, expected));
    return static_cast<uint8_t>(b[0]);
  }

  Result<uint32_t> u32(std::string_view expected) {
    TRY(b, take(4, expected));
    uint32_t v;
    std::memcpy(&v, b.data(), 4);  // wasm is little-endian
    return v;
  }

  Result<Bytes> bytes(std::string_view expected) {
    TRY(n, u32(expected));
    return take(n, expected);
  }

  // A count of items that need at least min_item bytes each.
  Result<uint32_t> count(uint64_t min_item, std::string_view expected) {
    size_t at = pos_;
    TRY(n, u32(expected));
    if (n * min_item > buf_.size() - pos_) return frame_error(at, expected);
    return n;
  }

  Result<bool> finish() const {
    if (pos_ != buf_.size()) return frame_error(pos_, "end of buffer (trailing bytes)");
    return true;
  }

 private:
  Bytes buf_;
  size_t pos_ = 0;
  std::string_view context_;
};

// ---- output -------------------------------------------------------------------

class Out {
 public:
  void u8(uint8_t v) { bytes_.push_back(v); }
  void u32(uint32_t v) { raw(&v, 4); }
  void bytes(Bytes b) {
    u32(static_cast<uint32_t>(b.size()));
    raw(b.data(), b.size());
  }
  void i64(int64_t v) {
    u32(8);
    raw(&v, 8);
  }
  void append(const Out& o) { bytes_.insert(bytes_.end(), o.bytes_.begin(), o.bytes_.end()); }
  void patch_u32(size_t at, uint32_t v) { std::memcpy(bytes_.data() + at, &v, 4); }
  std::vector<uint8_t>& data() { return bytes_; }

 private:
  void raw(const void* p, size_t n) {
    auto b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  std::vector<uint8_t> bytes_;
};

// ---- values, as the Rust SDK decodes them ---------------------------------------

// Checks UTF-8, failing with Rust's str::from_utf8 message after `what`.
Result<std::string_view> decode_string(Bytes s, const std::string& what) {
  auto cont = [](uint8_t c) { return c >= 0x80 && c <= 0xbf; };
  auto at = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  auto invalid = [&](size_t i, size_t len) {
    return fail(what + "cannot decode alloc::string::String: invalid utf-8 sequence of " + str(len) +
                " bytes from index " + str(i));
  };
  auto incomplete = [&](size_t i) {
    return fail(what + "cannot decode alloc::string::String: incomplete utf-8 byte sequence from index " + str(i));
  };
  for (size_t i = 0; i < s.size();) {
    uint8_t b = at(i);
    if (b < 0x80) {
      i++;
      continue;
    }
    size_t w = (b >= 0xc2 && b <= 0xdf) ? 2 : (b >= 0xe0 && b <= 0xef) ? 3 : (b >= 0xf0 && b <= 0xf4) ? 4 : 0;
    if (w == 0) return invalid(i, 1);
    if (i + 1 >= s.size()) return incomplete(i);
    uint8_t c = at(i + 1);
    bool second_ok = b == 0xe0   ? (c >= 0xa0 && c <= 0xbf)
                     : b == 0xed ? (c >= 0x80 && c <= 0x9f)
                     : b == 0xf0 ? (c >= 0x90 && c <= 0xbf)
                     : b == 0xf4 ? (c >= 0x80 && c <= 0x8f)
                                 : cont(c);
    if (!second_ok) return invalid(i, 1);
    for (size_t k = 2; k < w; k++) {
      if (i + k >= s.size()) return incomplete(i);
      if (!cont(at(i + k))) return invalid(i, k);
    }
    i += w;
  }
  return s;
}

Result<int64_t> decode_i64(Bytes b, const std::string& what) {
  if (b.size() != 8) return fail(what + "cannot decode i64: expected 8 bytes, found " + str(b.size()));
  int64_t v;
  std::memcpy(&v, b.data(), 8);
  return v;
}

// Byte length of the whitespace character at the start of s (valid UTF-8),
// or 0. Unicode White_Space, the set of Rust's char::is_whitespace; not
// std::isspace/iswspace, which are ASCII or locale dependent.
size_t space_len(std::string_view s) {
  char c = s[0];
  if (static_cast<uint8_t>(c) < 0x80) return c == ' ' || (c >= '\t' && c <= '\r') ? 1 : 0;
  for (std::string_view ws : {"\u0085", "\u00a0", "\u1680", "\u2000", "\u2001", "\u2002", "\u2003", "\u2004",
                              "\u2005", "\u2006", "\u2007", "\u2008", "\u2009", "\u200a", "\u2028", "\u2029",
                              "\u202f", "\u205f", "\u3000"}) {
    if (s.starts_with(ws)) return ws.size();
  }
  return 0;
}

// The words of a valid UTF-8 line, as Rust's str::split_whitespace.
std::vector<std::string_view> split_whitespace(std::string_view line) {
  std::vector<std::string_view> words;
  size_t start = std::string_view::npos;
  for (size_t i = 0; i < line.size();) {
    size_t sp = space_len(line.substr(i));
    if (sp == 0) {
      if (start == std::string_view::npos) start = i;
      i++;
      continue;
    }
    if (start != std::string_view::npos) words.push_back(line.substr(start, i - start));
    start = std::string_view::npos;
    i += sp;
  }
  if (start != std::string_view::npos) words.push_back(line.substr(start));
  return words;
}

// ---- the three functions ----------------------------------------------------------

Result<Out> split(Reader r) {
  TRY(n, r.count(8, "record count"));
  std::vector<Bytes> lines;
  for (uint32_t i = 0; i < n; i++) {
    CHECK(r.bytes("record key"));
    TRY(value, r.bytes("record value"));
    lines.push_back(value);
  }
  CHECK(r.finish());

  Out out;
  out.u32(0);
  uint32_t words = 0;
  for (size_t i = 0; i < lines.size(); i++) {
    // The error context is built only when the check fails.
    if (!decode_string(lines[i], std::string()).ok()) {
      return decode_string(lines[i], "record " + str(i) + ": value: ").error();
    }
    std::string_view line = lines[i];
    for (std::string_view word : split_whitespace(line)) {
      out.bytes(word);
      out.i64(1);
      words++;
    }
  }
  out.patch_u32(0, words);
  return out;
}

Result<int64_t> add(int64_t a, int64_t b) {
  int64_t s;
  if (__builtin_add_overflow(a, b, &s)) {
    return fail("count overflow adding " + std::to_string(a) + " and " + std::to_string(b));
  }
  return s;
}

Result<Out> sum(Reader r) {
  TRY(n, r.count(8, "group count"));
  std::vector<std::vector<Bytes>> groups;
  for (uint32_t g = 0; g < n; g++) {
    CHECK(r.bytes("group key"));
    size_t at = r.pos();
    TRY(m, r.count(4, "value count"));
    if (m == 0) return r.frame_error(at, "a value count of at least 1");
    std::vector<Bytes>& values = groups.emplace_back();
    for (uint32_t v = 0; v < m; v++) {
      TRY(value, r.bytes("group value"));
      values.push_back(value);
    }
  }
  CHECK(r.finish());

  Out out;
  out.u32(n);
  for (size_t g = 0; g < groups.size(); g++) {
    std::string what = "group " + str(g) + ": value: ";
    TRY(acc0, decode_i64(groups[g][0], what));
    int64_t acc = acc0;
    for (size_t v = 1; v < groups[g].size(); v++) {
      TRY(x, decode_i64(groups[g][v], what));
      TRY(next, add(acc, x));
      acc = next;
    }
    out.i64(acc);
  }
  return out;
}

struct Entry {
  Bytes key;
  std::optional<Bytes> state;
  std::vector<Bytes> values;
};

Result<Out> running_count(Reader r) {
  TRY(n, r.count(9, "update entry count"));
  std::vector<Entry> entries;
  for (uint32_t i = 0; i < n; i++) {
    Entry& e = entries.emplace_back();
    TRY(key, r.bytes("update key"));
    e.key = key;
    size_t at = r.pos();
    TRY(flags, r.u8("update flags"));
    if (flags & ~3u) return r.frame_error(at, "update flags with only bits 0 and 1");
    if (flags & 1) {
      TRY(state, r.bytes("update state"));
      e.state = state;
    }
    TRY(m, r.count(4, "update value count"));
    for (uint32_t v = 0; v < m; v++) {
      TRY(value, r.bytes("update value"));
      e.values.push_back(value);
    }
  }
  CHECK(r.finish());

  Out actions, emitted;
  actions.u32(n);
  emitted.u32(0);
  uint32_t emitted_count = 0;
  for (size_t i = 0; i < entries.size(); i++) {
    const Entry& e = entries[i];
    std::string entry = "entry " + str(i);
    TRY(word, decode_string(e.key, entry + ": key: "));
    uint64_t added = 0;  // wrapping, like the Rust plugin's release build
    for (Bytes value : e.values) {
      TRY(x, decode_i64(value, entry + ": value: "));
      added += static_cast<uint64_t>(x);
    }
    int64_t total = 0;
    if (e.state) {
      TRY(s, decode_i64(*e.state, entry + ": state: "));
      total = s;
    }
    if (!e.values.empty()) {
      total = static_cast<int64_t>(static_cast<uint64_t>(total) + added);
      actions.u8(1);
      actions.i64(total);
      emitted.bytes(word);
      emitted.i64(total);
      emitted_count++;
    } else if (e.state) {  // no new values: the state stays
      actions.u8(1);
      actions.i64(total);
    } else {  // no values, no state: nothing to keep
      actions.u8(0);
    }
  }
  emitted.patch_u32(0, emitted_count);
  actions.append(emitted);
  return actions;
}

// ---- the weir ABI glue ---------------------------------------------------------------

int run(Result<Out> (*f)(Reader), std::string_view context, uint32_t input, uint32_t len, uint32_t result) {
  Bytes in(reinterpret_cast<const char*>(input), len);
  std::vector<uint8_t> out;
  int status = 0;
  if (len < 16) {
    std::string m = "bad call input: malformed framing at byte " + str(len) + ": expected a 16-byte call header";
    out.assign(m.begin(), m.end());
    status = 1;
  } else if (Result<Out> r = f(Reader(in.substr(16), context)); r.ok()) {
    out = std::move((*r).data());
  } else {
    out.assign(r.error().message.begin(), r.error().message.end());
    status = 1;
  }
  // Leaked on purpose: the host reads it after the call, then discards the
  // whole instance.
  const auto* kept = new std::vector<uint8_t>(std::move(out));
  uint32_t area[2] = {reinterpret_cast<uint32_t>(kept->data()), static_cast<uint32_t>(kept->size())};
  std::memcpy(reinterpret_cast<void*>(result), area, 8);
  return status;
}

}  // namespace

EXPORT("weir_abi_version") int weir_abi_version() { return 1; }

// malloc's blocks are aligned for max_align_t (16 bytes); never freed.
EXPORT("weir_alloc") void* weir_alloc(uint32_t size) { return std::malloc(size ? size : 1); }

EXPORT("map:split") int map_split(uint32_t input, uint32_t len, uint32_t result) {
  return run(split, "bad record batch from host: ", input, len, result);
}

EXPORT("reduce:sum") int reduce_sum(uint32_t input, uint32_t len, uint32_t result) {
  return run(sum, "bad reduce input from host: ", input, len, result);
}

EXPORT("update:running_count") int update_running_count(uint32_t input, uint32_t len, uint32_t result) {
  return run(running_count, "bad update input from host: ", input, len, result);
}
