// DecodeDelimitedRows: validates, splits and decodes a batch of delimited
// text lines (CSV/TSV with named column roles) in one pass per line: the
// native fast path of recsys_smelu.data.tabular. DecodeDelimitedText does
// the same for the lines of one text (a block of a plain file: lines ended by
// '\n', one '\r' before it dropped), so no string is made per line;
// ReadCompleteLines reads the block of a plain file that the decoder takes.
// PackDelimitedRows / PackDelimitedText decode the same way and write the
// packed rows (recsys_smelu.data.packed) directly, the dense transform
// applied, for schemas whose categorical columns are all hashed.
//
// A line is valid exactly when the stock-op path of tabular._chunk_parser
// keeps it:
//   * it is UTF-8 as RE2 reads it (ASCII, [C2-DF][80-BF],
//     [E0-EF][80-BF]{2}, [F0-F4][80-BF]{3}: RE2's lax set for the runes
//     80-10FFFF);
//   * it has exactly num_columns fields (RFC 4180): a field is unquoted (no
//     '"', no delimiter) or enclosed in '"' with an inner '"' doubled, and a
//     closing quote is followed by the delimiter or the line end;
//   * the label field (unquoted) is "0" or "1";
//   * every dense field (unquoted) is empty or matches tabular.NUMBER_REGEX
//     [-+]?([0-9]{1,38}(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{1,2})?
//     with |value| <= FLT_MAX, the value being the correctly rounded double.
// For a valid line:
//   label[i]      = 0.0 or 1.0
//   dense[i, j]   = float(double value of dense field j) (NaN if empty)
//   hashes[i, k]  = Fingerprint64(unquoted categorical field k) % moduli[k]
//                   (= tf.strings.to_hash_bucket_fast(field, moduli[k]))
// The Pack ops give rows[i] = [bits(label), bits(t(dense[i, j])) for j,
// int32(hashes[i, k]) for k] (packed.pack_columns' layout), t being the
// dense transform as features.transform_dense_values computes it: x = 0 when
// missing, then log1p_clip0: float(log1p(double(max(x, +0)))); none: x;
// standardize: float((double(x) - mean[j]) / std[j]). A subnormal x reads as
// a zero of its sign, as TensorFlow's kernels read it (denormals flushed).
// An invalid line gives valid[i] = false and zeros in its rows; why it is
// invalid is for the caller to find (it re-reads the few bad lines with the
// stock ops, so that reasons and messages are the stock path's).
#include <clocale>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <locale.h>

#if defined(__SSE4_1__)
#include <smmintrin.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "decoded_rows.h"
#include "farmhash.h"  // util::Fingerprint64, exported by libtensorflow_framework
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/env.h"
#include "tensorflow/core/platform/file_system.h"

namespace recsys_smelu {
namespace {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::tstring;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

constexpr int kMaxIntegerDigits = 38;
constexpr int kMaxExponentDigits = 2;
constexpr uint64_t kExactMantissa = uint64_t{1} << 53;
constexpr int kMaxExactPower = 22;  // 10^22 is the largest exact double
constexpr double kPowersOfTen[kMaxExactPower + 1] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

enum Role : int8_t { kIgnore, kLabel, kDense, kCategorical };

// Entries past num_columns + 1 in DecodeLine's field starts: a 32-byte scan
// step writes up to 32 starts past the last one found.
constexpr int64_t kStartsSlack = 32;

#if defined(__SSE4_1__)
// kBitPositions[m]: the positions of m's set bits, lowest first, then zeros.
struct BitPositionTable {
  alignas(64) uint8_t positions[256][8];
  constexpr BitPositionTable() : positions() {
    for (int m = 0; m < 256; ++m) {
      int found = 0;
      for (int bit = 0; bit < 8; ++bit) {
        if (m & (1 << bit)) positions[m][found++] = static_cast<uint8_t>(bit);
      }
    }
  }
};
constexpr BitPositionTable kBitPositions;

// The high bits of the 32 bytes low, high (16 each) as one mask, bit i
// from byte i.
inline uint32_t HighBits32(__m128i low, __m128i high) {
  return static_cast<uint32_t>(_mm_movemask_epi8(low)) |
         (static_cast<uint32_t>(_mm_movemask_epi8(high)) << 16);
}

// Bit i set when p[i] == byte (a broadcast byte), for the 32 bytes at p.
inline uint32_t EqualMask32(const char* p, __m128i byte) {
  const __m128i low = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i high =
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
  return HighBits32(_mm_cmpeq_epi8(low, byte), _mm_cmpeq_epi8(high, byte));
}

// out[i] = base + (position of the i-th set bit of byte_mask), i <
// popcount(byte_mask), from a table instead of a bit-by-bit loop (whose
// steps depend on each other); out[popcount .. 8) get scratch values.
inline void StoreBitPositions(int32_t* out, int32_t base, unsigned byte_mask) {
  const __m128i positions = _mm_loadl_epi64(
      reinterpret_cast<const __m128i*>(kBitPositions.positions[byte_mask]));
  const __m128i offset = _mm_set1_epi32(base);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                   _mm_add_epi32(_mm_cvtepu8_epi32(positions), offset));
  _mm_storeu_si128(
      reinterpret_cast<__m128i*>(out + 4),
      _mm_add_epi32(_mm_cvtepu8_epi32(_mm_srli_si128(positions, 4)), offset));
}
#endif

constexpr int kLog1pTableSize = 1 << 12;
// DecodeLine's clipped integer of a dense field that has none (not a short
// integer, or a quoted line): the transform starts from the float.
constexpr uint32_t kNoClippedInteger = ~uint32_t{0};

inline bool IsDigit(char c) {
  return static_cast<unsigned char>(c) - '0' <= 9u;
}

// Whether [begin, end) is UTF-8 by RE2's lax rule (file comment).
bool IsLaxUtf8(const unsigned char* p, const unsigned char* end) {
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int continuation;
    if (c >= 0xC2 && c <= 0xDF) {
      continuation = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      continuation = 2;
    } else if (c >= 0xF0 && c <= 0xF4) {
      continuation = 3;
    } else {
      return false;
    }
    if (end - p <= continuation) return false;
    for (int k = 1; k <= continuation; ++k) {
      if ((p[k] & 0xC0) != 0x80) return false;
    }
    p += continuation + 1;
  }
  return true;
}

bool HasNonAscii(const char* p, const char* end) {
  for (; end - p >= 8; p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    if (word & 0x8080808080808080ull) return true;
  }
  for (; p < end; ++p) {
    if (static_cast<unsigned char>(*p) >= 0x80) return true;
  }
  return false;
}

// The correctly rounded double of a field that matches the number grammar,
// by strtod in the C locale (glibc rounds correctly, as TensorFlow's
// to_number does).
double ParseSlow(const char* begin, const char* end) {
  static const locale_t c_locale = newlocale(LC_ALL_MASK, "C", nullptr);
  const std::string text(begin, end);
  return strtod_l(text.c_str(), nullptr, c_locale);
}

// The value of 8 ASCII digits, the first in the lowest byte (the most
// significant), without a branch: pairs, then quads, then the 8 digits
// combined by three multiplies (simdjson's parse_eight_digits_unrolled).
inline uint64_t EightDigitsValue(uint64_t digits) {
  digits -= 0x3030303030303030ull;
  digits = digits * 10 + (digits >> 8);
  digits = (((digits & 0x000000FF000000FFull) * (100 + (1000000ull << 32))) +
            (((digits >> 16) & 0x000000FF000000FFull) *
             (1 + (10000ull << 32)))) >>
           32;
  return digits;
}

// Whether all 8 bytes of `word` are ASCII digits: each high nibble is 3 and
// the low nibble + 6 does not reach 16 (a byte too large to be a digit
// fails its own nibble test, whatever it carries into the next).
inline bool AllDigits(uint64_t word) {
  return ((word & 0xF0F0F0F0F0F0F0F0ull) |
          (((word + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) >> 4)) ==
         0x3333333333333333ull;
}

// The commonest dense field, empty or [-]digits in at most 8 bytes, without
// a branch (a branch per digit or per empty field mispredicts often): the
// 8 bytes at begin are read (all must be readable), a leading '-' becomes
// '0', the field's bytes move to the high end with '0's before them
// (leading zeros), and all 8 are checked and converted at once. False
// unless the field has that form; else *value is its value (the same as
// ParseNumber's), NaN when empty, and *clipped is max(value, 0) as an
// integer, 0 when empty (log1p_clip0's input). Needs 0 <= length <= 8.
inline bool ShortInteger(const char* begin, int64_t length, float* value,
                         uint32_t* clipped) {
  constexpr uint64_t kZeros = 0x3030303030303030ull;  // "00000000"
  uint64_t word;
  std::memcpy(&word, begin, 8);
  const bool negative = ((word & 0xFF) == '-') & (length > 0);
  word = negative ? (word & ~uint64_t{0xFF}) | '0' : word;
  const int padding_bits = (8 * static_cast<int>(8 - length)) & 63;
  const uint64_t padding = (uint64_t{1} << padding_bits) - 1;
  word = length == 0 ? kZeros : (word << padding_bits) | (kZeros & padding);
  const uint32_t integer = static_cast<uint32_t>(EightDigitsValue(word));
  const float magnitude = static_cast<float>(integer);  // exact: < 10^8
  *value = length == 0 ? std::numeric_limits<float>::quiet_NaN()
                       : (negative ? -magnitude : magnitude);
  *clipped = negative ? 0 : integer;  // "00000000" when empty
  return AllDigits(word) & !(negative & (length == 1));
}

// Parses a dense field [begin, end) (non-empty); false unless it matches the
// number grammar and its value is within float32.
bool ParseNumber(const char* begin, const char* end, float* value) {
  // The common field, [-]digits (at most 15: exact in a double): converted
  // directly, the same value as below.
  if (end - begin <= 16) {
    const char* p = begin + (*begin == '-');
    if (p < end && end - p <= 15) {
      uint64_t integer = 0;
      for (; p < end && IsDigit(*p); ++p) integer = integer * 10 + (*p - '0');
      if (p == end) {
        const double magnitude = static_cast<double>(integer);
        *value = static_cast<float>(*begin == '-' ? -magnitude : magnitude);
        return true;
      }
    }
  }
  const char* p = begin;
  bool negative = false;
  if (*p == '+' || *p == '-') {
    negative = *p == '-';
    ++p;
  }
  uint64_t mantissa = 0;
  int significant = 0;  // digits in mantissa, leading zeros not counted
  int dropped = 0;      // integer digits past 19 significant ones
  const char* digits = p;
  for (; p < end && IsDigit(*p); ++p) {
    if (significant < 19) {
      mantissa = mantissa * 10 + (*p - '0');
      significant += mantissa != 0;
    } else {
      ++dropped;
    }
  }
  const std::ptrdiff_t integer_digits = p - digits;
  if (integer_digits > kMaxIntegerDigits) return false;
  int fraction_used = 0;
  std::ptrdiff_t fraction_digits = 0;
  bool exact = true;
  if (p < end && *p == '.') {
    ++p;
    const char* fraction = p;
    for (; p < end && IsDigit(*p); ++p) {
      if (significant < 19) {
        mantissa = mantissa * 10 + (*p - '0');
        significant += mantissa != 0;
        ++fraction_used;
      } else if (*p != '0') {
        exact = false;  // a non-zero digit beyond the mantissa
      }
    }
    fraction_digits = p - fraction;
  }
  if (integer_digits == 0 && fraction_digits == 0) return false;
  int exponent = 0;
  if (p < end && (*p == 'e' || *p == 'E')) {
    ++p;
    bool negative_exponent = false;
    if (p < end && (*p == '+' || *p == '-')) {
      negative_exponent = *p == '-';
      ++p;
    }
    const char* exponent_digits = p;
    for (; p < end && IsDigit(*p); ++p) exponent = exponent * 10 + (*p - '0');
    const std::ptrdiff_t count = p - exponent_digits;
    if (count < 1 || count > kMaxExponentDigits) return false;
    if (negative_exponent) exponent = -exponent;
  }
  if (p != end) return false;
  double magnitude;
  const int power = exponent + dropped - fraction_used;
  if (mantissa == 0) {
    magnitude = 0.0;  // zeros only (a dropped digit needs 19 before it)
  } else if (exact && mantissa <= kExactMantissa && power >= -kMaxExactPower &&
             power <= kMaxExactPower && dropped == 0) {
    // Both operands exact: one correctly rounded operation.
    magnitude = power >= 0 ? mantissa * kPowersOfTen[power]
                           : mantissa / kPowersOfTen[-power];
  } else {
    magnitude = ParseSlow(negative || *begin == '+' ? begin + 1 : begin, end);
  }
  if (!(magnitude <= std::numeric_limits<float>::max())) return false;
  const double signed_value = negative ? -magnitude : magnitude;
  *value = static_cast<float>(signed_value);
  return true;
}

// util::Fingerprint64(s, length) (farmhash's Fingerprint64, i.e.
// farmhashna::Hash64, which tf.strings.to_hash_bucket_fast uses) of at most
// 16 bytes, inlined: the same arithmetic as farmhashna::HashLen0to16, so an
// id costs a few multiplies instead of a call through the PLT and a
// dispatch on its length; longer values call util::Fingerprint64. Tests
// compare the hashes with tf.strings.to_hash_bucket_fast for lengths 0-20.
inline uint64_t Fingerprint64(const char* s, uint64_t length) {
  constexpr uint64_t k0 = 0xc3a5c85c97cb3127ull;
  constexpr uint64_t k2 = 0x9ae16a3b2f90404full;
  if (length > 16) return util::Fingerprint64(s, length);
  auto load64 = [](const char* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
  };
  auto load32 = [](const char* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return static_cast<uint64_t>(v);
  };
  auto rotate = [](uint64_t v, int shift) {
    return (v >> shift) | (v << (64 - shift));
  };
  auto hash_len16 = [](uint64_t u, uint64_t v, uint64_t mul) {
    uint64_t a = (u ^ v) * mul;
    a ^= a >> 47;
    uint64_t b = (v ^ a) * mul;
    b ^= b >> 47;
    return b * mul;
  };
  if (length >= 8) {
    const uint64_t mul = k2 + length * 2;
    const uint64_t a = load64(s) + k2;
    const uint64_t b = load64(s + length - 8);
    const uint64_t c = rotate(b, 37) * mul + a;
    const uint64_t d = (rotate(a, 25) + b) * mul;
    return hash_len16(c, d, mul);
  }
  if (length >= 4) {
    const uint64_t mul = k2 + length * 2;
    return hash_len16(length + (load32(s) << 3), load32(s + length - 4), mul);
  }
  if (length > 0) {
    const uint32_t a = static_cast<uint8_t>(s[0]);
    const uint32_t b = static_cast<uint8_t>(s[length >> 1]);
    const uint32_t c = static_cast<uint8_t>(s[length - 1]);
    const uint32_t y = a + (b << 8);
    const uint32_t z = static_cast<uint32_t>(length) + (c << 2);
    const uint64_t mixed = y * k2 ^ z * k0;
    return (mixed ^ (mixed >> 47)) * k2;
  }
  return k2;
}

// Fingerprint64(value) % moduli[k] of categorical column k's values, those
// of at most 8 bytes (the common id) through a direct-mapped cache per
// column, used by one range of rows at a time (ForRowRanges) and kept by
// the kernel between calls (ShortValueHashesPool): values repeat (ids
// follow power laws), and a hit costs a compare instead of a Fingerprint64.
// Exact: an entry's key holds the value's bytes and length (KeyOf).
class ShortValueHashes {
 public:
  explicit ShortValueHashes(const std::vector<FastModulus>& moduli)
      : moduli_(moduli),
        entries_(moduli.size() * kSlots),
        missed_(moduli.size()) {}

  // hashes[k] = Fingerprint64(value k) % moduli[k] for the categorical
  // values of one line, value k being field columns[k] of the line at begin
  // ([begin + starts[c], begin + starts[c + 1] - 1) is field c); bytes up to
  // readable_end may be read; kPadded: 8 bytes from any value's start are
  // readable (no test per value). In two passes, so that no branch depends
  // on whether a value is cached (a miss mispredicts): all lookups, the
  // columns that missed listed without a branch, then the misses keyed
  // again, hashed and cached. Hash: int64_t for the Decode ops, int32_t
  // for packed rows (written into the row). The scratch storage is held in
  // locals, so stores through hashes need not reload it.
  template <bool kPadded, typename Hash>
  void HashRow(const char* begin, const int32_t* starts,
               const int64_t* columns, const char* readable_end,
               Hash* hashes) {
    const int64_t n = static_cast<int64_t>(moduli_.size());
    Entry* const entries = entries_.data();
    int64_t* const missed = missed_.data();
    int64_t misses = 0;
    const Entry* table = entries;  // column k's slots
    for (int64_t k = 0; k < n; ++k, table += kSlots) {
      const int64_t column = columns[k];
      const int32_t start = starts[column];
      const uint64_t key = KeyOf<kPadded>(
          begin + start, starts[column + 1] - start - 1, readable_end);
      const Entry& entry = table[SlotIn(key)];
      hashes[k] = static_cast<Hash>(entry.hash);
      missed[misses] = k;
      misses += entry.key != key;
    }
    for (int64_t i = 0; i < misses; ++i) {
      const int64_t k = missed[i];
      const int64_t column = columns[k];
      const int32_t start = starts[column];
      const int64_t length = starts[column + 1] - start - 1;
      const uint64_t key = KeyOf<kPadded>(begin + start, length, readable_end);
      const uint64_t hash = moduli_[k].Of(Fingerprint64(begin + start, length));
      if (key != kUncached) entries[k * kSlots + SlotIn(key)] = {key, hash};
      hashes[k] = static_cast<Hash>(hash);
    }
  }

 private:
  // 1024 slots (16 KiB) per column: on generated Avazu-shaped rows 94% of
  // lookups hit, against 90% with 256 slots (Criteo-shaped: 99% and 97%).
  static constexpr int kSlotBits = 10;
  static constexpr int64_t kSlots = int64_t{1} << kSlotBits;
  // Never the key of a cached value (KeyOf): a length-0 key is 0, and a top
  // byte of 0 with other bits set would be an 8-byte value ending in \0.
  static constexpr uint64_t kEmpty = 1;     // an unused entry
  static constexpr uint64_t kUncached = 2;  // a value the cache does not hold

  // The key of value[0, length) (readable up to readable_end): its bytes
  // (zeros past its end), with its length in the top byte when it is
  // shorter than 8 bytes. One 8-byte value per key has a top byte below 8,
  // so those (values ending in a control byte \0-\7) are kUncached, as
  // are values longer than 8 bytes.
  template <bool kPadded>
  static uint64_t KeyOf(const char* value, int64_t length,
                        const char* readable_end) {
    uint64_t word = 0;
    if (kPadded || readable_end - value >= 8) {
      std::memcpy(&word, value, 8);
    } else {
      std::memcpy(&word, value, length);  // length < 8 here
    }
    const uint64_t kept =
        length >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * (length & 7))) - 1;
    word &= kept;
    const bool cached = length < 8 || (length == 8 && (word >> 56) >= 8);
    const uint64_t key =
        length < 8 ? word | (static_cast<uint64_t>(length) << 56) : word;
    return cached ? key : kUncached;
  }

  static uint64_t SlotIn(uint64_t key) {
    return (key * 0x9E3779B97F4A7C15ull) >> (64 - kSlotBits);
  }

  struct Entry {
    uint64_t key = kEmpty;
    uint64_t hash = 0;
  };
  const std::vector<FastModulus>& moduli_;
  std::vector<Entry> entries_;
  std::vector<int64_t> missed_;  // HashRow's columns that missed
};

// The ShortValueHashes of one kernel, lent to the ranges it decodes at the
// same time and kept between its calls: a kernel's moduli never change, so
// the entries stay valid, and a call starts with the values earlier blocks
// cached and allocates nothing.
class ShortValueHashesPool {
 public:
  explicit ShortValueHashesPool(const std::vector<FastModulus>& moduli)
      : moduli_(moduli) {}

  struct GiveBack {
    ShortValueHashesPool* pool;
    void operator()(ShortValueHashes* hashes) const { pool->Put(hashes); }
  };
  using Lease = std::unique_ptr<ShortValueHashes, GiveBack>;

  Lease Take() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        ShortValueHashes* hashes = free_.back().release();
        free_.pop_back();
        return Lease(hashes, GiveBack{this});
      }
    }
    return Lease(new ShortValueHashes(moduli_), GiveBack{this});
  }

 private:
  void Put(ShortValueHashes* hashes) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.emplace_back(hashes);
  }

  const std::vector<FastModulus>& moduli_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<ShortValueHashes>> free_;
};

class DecodeDelimitedRowsOp : public OpKernel {
 public:
  DecodeDelimitedRowsOp(OpKernelConstruction* context, bool text_input,
                        bool packed)
      : OpKernel(context), text_input_(text_input), packed_(packed) {
    std::string delimiter;
    OP_REQUIRES_OK(context, context->GetAttr("delimiter", &delimiter));
    OP_REQUIRES(context,
                delimiter.size() == 1 && delimiter[0] != '"' &&
                    delimiter[0] != '\n' && delimiter[0] != '\r',
                absl::InvalidArgumentError(
                    "delimiter must be one byte other than a quote or a "
                    "newline"));
    delimiter_ = delimiter[0];
    int64_t num_columns, label_column;
    std::vector<int64_t> dense_columns, categorical_columns, moduli;
    OP_REQUIRES_OK(context, context->GetAttr("num_columns", &num_columns));
    OP_REQUIRES_OK(context, context->GetAttr("label_column", &label_column));
    OP_REQUIRES_OK(context, context->GetAttr("dense_columns", &dense_columns));
    OP_REQUIRES_OK(context, context->GetAttr("categorical_columns",
                                             &categorical_columns));
    OP_REQUIRES_OK(context, context->GetAttr("moduli", &moduli));
    OP_REQUIRES(context, moduli.size() == categorical_columns.size(),
                absl::InvalidArgumentError(
                    "moduli must have one entry per categorical column"));
    role_.assign(num_columns, kIgnore);
    slot_.assign(num_columns, 0);
    auto assign = [&](int64_t column, Role role, int slot) {
      OP_REQUIRES(context, column >= 0 && column < num_columns,
                  absl::InvalidArgumentError(absl::StrCat(
                      "column ", column, " outside [0, ", num_columns, ")")));
      OP_REQUIRES(context, role_[column] == kIgnore,
                  absl::InvalidArgumentError(
                      absl::StrCat("column ", column, " has two roles")));
      role_[column] = role;
      slot_[column] = slot;
    };
    assign(label_column, kLabel, 0);
    for (size_t j = 0; j < dense_columns.size(); ++j) {
      assign(dense_columns[j], kDense, static_cast<int>(j));
    }
    for (size_t k = 0; k < categorical_columns.size(); ++k) {
      assign(categorical_columns[k], kCategorical, static_cast<int>(k));
      OP_REQUIRES(context, moduli[k] > 0,
                  absl::InvalidArgumentError(
                      absl::StrCat("moduli must be > 0, got ", moduli[k])));
      moduli_.emplace_back(static_cast<uint64_t>(moduli[k]));
    }
    num_dense_ = dense_columns.size();
    label_column_ = label_column;
    dense_columns_.assign(dense_columns.begin(), dense_columns.end());
    categorical_columns_.assign(categorical_columns.begin(),
                                categorical_columns.end());
    if (packed_) {
      std::string transform;
      OP_REQUIRES_OK(context, context->GetAttr("dense_transform", &transform));
      if (transform == "log1p_clip0") {
        transform_ = kLog1pClip0;
        log1p_table_.resize(kLog1pTableSize);
        for (int i = 0; i < kLog1pTableSize; ++i) {
          log1p_table_[i] =
              static_cast<float>(std::log1p(static_cast<double>(i)));
        }
      } else if (transform == "none") {
        transform_ = kNone;
      } else if (transform == "standardize") {
        transform_ = kStandardize;
      } else {
        OP_REQUIRES(context, false,
                    absl::InvalidArgumentError(absl::StrCat(
                        "dense_transform must be log1p_clip0, none or "
                        "standardize, got '", transform, "'")));
      }
      for (const int64_t modulus : moduli) {
        OP_REQUIRES(context,
                    modulus <= int64_t{std::numeric_limits<int32_t>::max()} + 1,
                    absl::InvalidArgumentError(absl::StrCat(
                        "packed rows hold int32 ids: moduli must be <= 2^31, "
                        "got ", modulus)));
      }
    }
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& input = context->input(0);
    // Lines: a vector of lines, or (DecodeDelimitedText) a scalar text of
    // lines each ended by '\n' (the last one need not be), from which one
    // '\r' before each '\n' is dropped.
    std::vector<std::pair<const char*, const char*>> spans;
    const char* readable_end = nullptr;  // of the text (text input)
    if (text_input_) {
      OP_REQUIRES(context,
                  ::tensorflow::TensorShapeUtils::IsScalar(input.shape()),
                  absl::InvalidArgumentError(
                      absl::StrCat("text must be a scalar, got shape ",
                                   input.shape().DebugString())));
      const tstring& text = input.scalar<tstring>()();
      const char* line = text.data();
      const char* const end = line + text.size();
      readable_end = end;
      auto add_line = [&](const char* line_end) {  // [line, line_end)
        const char* content_end = line_end;
        if (content_end > line && content_end[-1] == '\r') --content_end;
        spans.emplace_back(line, content_end);
      };
      // The newlines 32 bytes per step, not a memchr per line.
      const char* scanned = line;  // none of line's newlines before it
#if defined(__SSE4_1__)
      const __m128i newline = _mm_set1_epi8('\n');
      for (; end - scanned >= 32; scanned += 32) {
        for (uint32_t bits = EqualMask32(scanned, newline); bits != 0;
             bits &= bits - 1) {
          const char* const line_end = scanned + __builtin_ctz(bits);
          add_line(line_end);
          line = line_end + 1;
        }
      }
#endif
      while (line < end) {
        const char* const found = static_cast<const char*>(
            std::memchr(scanned, '\n', end - scanned));
        const char* const line_end = found == nullptr ? end : found;
        add_line(line_end);
        line = scanned = found == nullptr ? end : found + 1;
      }
    } else {
      OP_REQUIRES(context,
                  ::tensorflow::TensorShapeUtils::IsVector(input.shape()),
                  absl::InvalidArgumentError(
                      absl::StrCat("lines must be a vector, got shape ",
                                   input.shape().DebugString())));
      const auto lines = input.vec<tstring>();
      spans.reserve(lines.size());
      for (int64_t i = 0; i < lines.size(); ++i) {
        spans.emplace_back(lines(i).data(), lines(i).data() + lines(i).size());
      }
    }
    // One decode_line per range of rows (ForRowRanges), with its scratch.
    auto make_decode_line = [&] {
      return [&, unquoted = std::string(),  // a quoted value, "" -> "
              starts = std::vector<int32_t>(role_.size() + 1 +
                                            kStartsSlack),  // DecodeLine's
              short_hashes = short_hashes_pool_.Take()](
                 int64_t i, float* label, float* dense, auto* hashes,
                 uint32_t* clipped = nullptr) mutable {
        const char* const line_end = spans[i].second;
        return DecodeLine(spans[i].first, line_end,
                          text_input_ ? readable_end : line_end, label, dense,
                          clipped, hashes, &unquoted, starts.data(),
                          short_hashes.get());
      };
    };
    if (packed_) {
      PackRows(context, spans.size(), make_decode_line);
    } else {
      DecodeRows(context, spans.size(), num_dense_, moduli_.size(),
                 make_decode_line);
    }
  }

 private:
  enum Transform { kLog1pClip0, kNone, kStandardize };

  // Outputs rows int32 [n, 1 + num_dense + num_categorical] and valid [n]
  // (file comment) from decode_line(i, &label, dense, hashes), one
  // decode_line = make_decode_line() per range of rows (ForRowRanges).
  template <typename MakeDecodeLine>
  void PackRows(OpKernelContext* context, int64_t n,
                const MakeDecodeLine& make_decode_line) const {
    const int64_t num_categorical = moduli_.size();
    const double* mean = nullptr;
    const double* stddev = nullptr;
    if (transform_ == kStandardize) {
      const Tensor& mean_input = context->input(1);
      const Tensor& std_input = context->input(2);
      OP_REQUIRES(context,
                  mean_input.NumElements() == num_dense_ &&
                      std_input.NumElements() == num_dense_,
                  absl::InvalidArgumentError(absl::StrCat(
                      "standardize needs ", num_dense_, " means and stds, got ",
                      mean_input.NumElements(), " and ",
                      std_input.NumElements())));
      mean = mean_input.flat<double>().data();
      stddev = std_input.flat<double>().data();
    }
    const int64_t width = 1 + num_dense_ + num_categorical;
    Tensor* rows = nullptr;
    Tensor* valid = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, TensorShape({n, width}), &rows));
    OP_REQUIRES_OK(context,
                   context->allocate_output(1, TensorShape({n}), &valid));
    int32_t* rows_out = rows->flat<int32_t>().data();
    bool* valid_out = valid->flat<bool>().data();
    ForRowRanges(context, n, [&](int64_t begin, int64_t end) {
      PackRange(begin, end, make_decode_line(), width, mean, stddev, rows_out,
                valid_out);
    });
  }

  // PackRows' rows [begin, end).
  template <typename DecodeLineFn>
  void PackRange(int64_t begin, int64_t end, DecodeLineFn decode_line,
                 int64_t width, const double* mean, const double* stddev,
                 int32_t* rows_out, bool* valid_out) const {
    std::vector<float> dense(num_dense_);
    std::vector<uint32_t> clipped(num_dense_);
    for (int64_t i = begin; i < end; ++i) {
      int32_t* row = rows_out + i * width;
      float label = 0.0f;
      // The bucket ids straight into the row (int32: moduli <= 2^31).
      valid_out[i] = decode_line(i, &label, dense.data(), row + 1 + num_dense_,
                                 clipped.data());
      if (!valid_out[i]) {
        std::fill(row, row + width, 0);
        continue;
      }
      row[0] = Bits(label);
      int32_t* const dense_out = row + 1;
      switch (transform_) {  // t(x) of the file comment
        case kLog1pClip0:
          for (int64_t j = 0; j < num_dense_; ++j) {
            dense_out[j] = Bits(clipped[j] < kLog1pTableSize
                                    ? log1p_table_[clipped[j]]
                                    : Log1pClip0(dense[j]));
          }
          break;
        case kNone:
          for (int64_t j = 0; j < num_dense_; ++j) {
            dense_out[j] = Bits(FlushedOrZero(dense[j]));
          }
          break;
        case kStandardize:
          for (int64_t j = 0; j < num_dense_; ++j) {
            const float x = dense[j];
            dense_out[j] =
                std::isnan(x)
                    ? 0
                    : Bits(static_cast<float>(
                          (static_cast<double>(FlushedOrZero(x)) - mean[j]) /
                          stddev[j]));
          }
          break;
      }
    }
  }

  static int32_t Bits(float value) {
    int32_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    return bits;
  }

  // x, or 0 when missing (NaN); a subnormal x as a zero of its sign.
  static float FlushedOrZero(float x) {
    if (std::isnan(x)) return 0.0f;
    return std::fabs(x) < std::numeric_limits<float>::min()
               ? std::copysign(0.0f, x)
               : x;
  }

  // log1p_clip0's t(x): +0 for missing, x <= 0 (-0 too: tf.maximum's
  // kernels disagree there, the stock transform selects) and subnormals;
  // small integers (most counts) from a table of the same values.
  float Log1pClip0(float x) const {
    // Selects, not branches, up to the one test of an integer in the table.
    const float clipped = x >= std::numeric_limits<float>::min() ? x : 0.0f;
    const int i = static_cast<int>(
        std::min(clipped, static_cast<float>(kLog1pTableSize - 1)));
    if (static_cast<float>(i) == clipped) return log1p_table_[i];
    return static_cast<float>(std::log1p(static_cast<double>(clipped)));
  }

  // Decodes one field's value [begin, end) (already unquoted) in its role.
  template <typename Hash>
  bool DecodeField(int64_t column, const char* begin, const char* end,
                   float* label, float* dense, Hash* hashes) const {
    switch (role_[column]) {
      case kIgnore:
        return true;
      case kLabel:
        if (end - begin != 1 || (*begin != '0' && *begin != '1')) return false;
        *label = *begin == '1' ? 1.0f : 0.0f;
        return true;
      case kDense: {
        float* value = &dense[slot_[column]];
        if (begin == end) {
          *value = std::numeric_limits<float>::quiet_NaN();
          return true;
        }
        return ParseNumber(begin, end, value);
      }
      case kCategorical: {
        const int k = slot_[column];
        hashes[k] = static_cast<Hash>(
            moduli_[k].Of(Fingerprint64(begin, end - begin)));
        return true;
      }
    }
    return false;
  }

  // The common line, ASCII without quotes: the delimiters found 32 bytes at
  // a time (one compare per byte class instead of a memchr per field), then
  // the fields decoded role by role (label, dense, categorical: loops without
  // a branch per column, and the hashes independent of each other); any other
  // line goes to DecodeQuotedLine, which also decides it. Same result as
  // DecodeQuotedLine on every line (tests compare both with the stock ops).
  // Bytes up to readable_end (>= end) may be read, not used.
  // starts has num_columns + 1 + kStartsSlack entries: field c is
  // [begin + starts[c], begin + starts[c + 1] - 1); hashes of short values
  // come from short_hashes. clipped (if not null) gets ShortInteger's
  // clipped integer of each dense field, or kNoClippedInteger.
  template <typename Hash>
  bool DecodeLine(const char* const begin, const char* const end,
                  const char* const readable_end, float* label, float* dense,
                  uint32_t* clipped, Hash* hashes,
                  std::string* unquoted, int32_t* starts,
                  ShortValueHashes* short_hashes) const {
    auto decode_quoted_line = [&] {
      if (clipped != nullptr) {
        std::fill(clipped, clipped + num_dense_, kNoClippedInteger);
      }
      return DecodeQuotedLine(begin, end, label, dense, hashes, unquoted);
    };
    if (end - begin >= std::numeric_limits<int32_t>::max() - 64) {
      return decode_quoted_line();
    }
    const int64_t num_columns = static_cast<int64_t>(role_.size());
    int64_t count = 0;  // delimiters so far
    const char* p = begin;
    starts[0] = 0;
#if defined(__SSE4_1__)
    const __m128i delimiter = _mm_set1_epi8(delimiter_);
    const __m128i quote = _mm_set1_epi8('"');
    // 32 bytes at p, those of `mask` only: -1 when one is a quote or
    // non-ASCII (DecodeQuotedLine decides the line), 0 when there are too
    // many fields, else 1 with the delimiters' field starts recorded.
    auto scan32 = [&](uint32_t mask) {
      const __m128i low_bytes =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      const __m128i high_bytes =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
      const uint32_t special = HighBits32(  // high bit: a non-ASCII byte
          _mm_or_si128(low_bytes, _mm_cmpeq_epi8(low_bytes, quote)),
          _mm_or_si128(high_bytes, _mm_cmpeq_epi8(high_bytes, quote)));
      if (special & mask) return -1;
      const uint32_t bits = HighBits32(_mm_cmpeq_epi8(low_bytes, delimiter),
                                       _mm_cmpeq_epi8(high_bytes, delimiter)) &
                            mask;
      const int found = __builtin_popcount(bits);
      if (count + found >= num_columns) return 0;  // too many fields
      int32_t* out = starts + count + 1;
      const int32_t offset = static_cast<int32_t>(p - begin) + 1;
      for (int byte = 0; byte < 4; ++byte) {
        const unsigned byte_bits = (bits >> (8 * byte)) & 0xFFu;
        StoreBitPositions(out, offset + 8 * byte, byte_bits);
        out += __builtin_popcount(byte_bits);
      }
      count += found;
      return 1;
    };
    int scanned = 1;
    for (; scanned == 1 && end - p >= 32; p += 32) scanned = scan32(~0u);
    // The last bytes in one load that reads past the line (within the text),
    // the bits beyond its end masked off.
    if (scanned == 1 && p < end && readable_end - p >= 32) {
      scanned = scan32((uint32_t{1} << (end - p)) - 1);
      p = end;
    }
    if (scanned == -1) return decode_quoted_line();
    if (scanned == 0) return false;
#endif
    for (; p < end; ++p) {
      const char c = *p;
      if (c == '"' || static_cast<unsigned char>(c) >= 0x80) {
        return decode_quoted_line();
      }
      if (c == delimiter_) {
        if (++count >= num_columns) return false;  // too many fields
        starts[count] = static_cast<int32_t>(p - begin) + 1;
      }
    }
    if (count != num_columns - 1) return false;  // too few fields
    starts[num_columns] = static_cast<int32_t>(end - begin) + 1;
    const char* const field = begin + starts[label_column_];
    if (starts[label_column_ + 1] - starts[label_column_] != 2 ||
        (*field != '0' && *field != '1')) {
      return false;
    }
    *label = *field == '1' ? 1.0f : 0.0f;
    for (int64_t j = 0; j < num_dense_; ++j) {
      const int64_t column = dense_columns_[j];
      const char* const b = begin + starts[column];
      const char* const e = begin + starts[column + 1] - 1;
      uint32_t clipped_integer;
      const bool short_integer = e - b <= 8 && readable_end - b >= 8 &&
                                 ShortInteger(b, e - b, &dense[j],
                                              &clipped_integer);
      if (clipped != nullptr) {
        clipped[j] = short_integer ? clipped_integer : kNoClippedInteger;
      }
      if (short_integer) continue;
      if (b == e) {
        dense[j] = std::numeric_limits<float>::quiet_NaN();
      } else if (!ParseNumber(b, e, &dense[j])) {
        return false;
      }
    }
    if (readable_end - end >= 8) {  // no value's 8-byte load leaves the text
      short_hashes->HashRow<true>(begin, starts, categorical_columns_.data(),
                                  readable_end, hashes);
    } else {
      short_hashes->HashRow<false>(begin, starts, categorical_columns_.data(),
                                   readable_end, hashes);
    }
    return true;
  }

  // Any line: UTF-8 check, RFC 4180 quotes.
  template <typename Hash>
  bool DecodeQuotedLine(const char* field, const char* const end,
                        float* label, float* dense, Hash* hashes,
                        std::string* unquoted) const {
    if (HasNonAscii(field, end) &&
        !IsLaxUtf8(reinterpret_cast<const unsigned char*>(field),
                   reinterpret_cast<const unsigned char*>(end))) {
      return false;
    }
    const bool has_quote = std::memchr(field, '"', end - field) != nullptr;
    const int64_t num_columns = role_.size();
    for (int64_t column = 0;; ++column) {
      if (column >= num_columns) return false;  // too many fields
      const char* field_end;
      const char* next;  // the delimiter after the field, or end
      if (has_quote && field < end && *field == '"') {
        // Quoted: up to the '"' not followed by another '"'.
        unquoted->clear();
        const char* p = field + 1;
        bool closed = false;
        while (p < end) {
          const char* quote =
              static_cast<const char*>(std::memchr(p, '"', end - p));
          if (quote == nullptr) break;
          unquoted->append(p, quote);
          if (quote + 1 < end && quote[1] == '"') {
            unquoted->push_back('"');
            p = quote + 2;
            continue;
          }
          p = quote + 1;
          closed = true;
          break;
        }
        if (!closed) return false;
        if (p < end && *p != delimiter_) return false;
        next = p;
        if (!DecodeField(column, unquoted->data(),
                         unquoted->data() + unquoted->size(), label, dense,
                         hashes)) {
          return false;
        }
      } else {
        const char* delimiter = static_cast<const char*>(
            std::memchr(field, delimiter_, end - field));
        field_end = delimiter == nullptr ? end : delimiter;
        if (has_quote &&
            std::memchr(field, '"', field_end - field) != nullptr) {
          return false;  // a quote inside an unquoted field
        }
        next = field_end;
        if (!DecodeField(column, field, field_end, label, dense, hashes)) {
          return false;
        }
      }
      if (next == end) return column + 1 == num_columns;
      field = next + 1;
    }
  }

  const bool text_input_;
  const bool packed_;
  Transform transform_ = kLog1pClip0;
  std::vector<float> log1p_table_;  // log1p_clip0: t(i) for small i
  char delimiter_ = ',';
  std::vector<int8_t> role_;
  std::vector<int> slot_;
  int64_t num_dense_ = 0;
  int64_t label_column_ = 0;
  std::vector<int64_t> dense_columns_;        // file positions, output order
  std::vector<int64_t> categorical_columns_;  // file positions, output order
  std::vector<FastModulus> moduli_;
  ShortValueHashesPool short_hashes_pool_{moduli_};  // after moduli_
};

template <bool kTextInput, bool kPacked>
class DelimitedOp : public DecodeDelimitedRowsOp {
 public:
  explicit DelimitedOp(OpKernelConstruction* context)
      : DecodeDelimitedRowsOp(context, kTextInput, kPacked) {}
};

// Shapes of the Decode ops (label, dense, hashes, valid) and of the Pack ops
// (rows, valid; inputs 1 and 2 are the standardize statistics).
absl::Status DelimitedShape(InferenceContext* c, bool text_input,
                            bool packed) {
  ShapeHandle input;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), text_input ? 0 : 1, &input));
  const auto n = text_input ? c->UnknownDim() : c->Dim(input, 0);
  std::vector<int64_t> dense_columns, moduli;
  TF_RETURN_IF_ERROR(c->GetAttr("dense_columns", &dense_columns));
  TF_RETURN_IF_ERROR(c->GetAttr("moduli", &moduli));
  const int64_t num_dense = dense_columns.size();
  const int64_t num_categorical = moduli.size();
  if (packed) {
    ShapeHandle statistics;
    for (int i = 1; i < 3; ++i) {
      TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 1, &statistics));
    }
    c->set_output(0, c->Matrix(n, 1 + num_dense + num_categorical));
    c->set_output(1, c->Vector(n));
    return absl::OkStatus();
  }
  c->set_output(0, c->Vector(n));
  c->set_output(1, c->Matrix(n, num_dense));
  c->set_output(2, c->Matrix(n, num_categorical));
  c->set_output(3, c->Vector(n));
  return absl::OkStatus();
}

#define RECSYS_SMELU_COLUMN_ATTRS                  \
  .Attr("delimiter: string")                       \
      .Attr("num_columns: int >= 1")               \
      .Attr("label_column: int >= 0")              \
      .Attr("dense_columns: list(int) >= 0")       \
      .Attr("categorical_columns: list(int) >= 0") \
      .Attr("moduli: list(int) >= 0")

#define RECSYS_SMELU_DECODE_ATTRS \
  RECSYS_SMELU_COLUMN_ATTRS       \
      .Output("label: float")     \
      .Output("dense: float")     \
      .Output("hashes: int64")    \
      .Output("valid: bool")

#define RECSYS_SMELU_PACK_ATTRS           \
  .Input("dense_mean: double")            \
      .Input("dense_std: double")         \
      RECSYS_SMELU_COLUMN_ATTRS           \
      .Attr("dense_transform: string")    \
      .Output("rows: int32")              \
      .Output("valid: bool")

REGISTER_OP("DecodeDelimitedRows")
    .Input("lines: string")
    RECSYS_SMELU_DECODE_ATTRS
    .SetShapeFn([](InferenceContext* c) { return DelimitedShape(c, false, false); })
    .Doc("Validates and decodes delimited text lines; see tabular_rows.cc.");

REGISTER_OP("DecodeDelimitedText")
    .Input("text: string")
    RECSYS_SMELU_DECODE_ATTRS
    .SetShapeFn([](InferenceContext* c) { return DelimitedShape(c, true, false); })
    .Doc("DecodeDelimitedRows of the lines of one text; see tabular_rows.cc.");

REGISTER_OP("PackDelimitedRows")
    .Input("lines: string")
    RECSYS_SMELU_PACK_ATTRS
    .SetShapeFn([](InferenceContext* c) { return DelimitedShape(c, false, true); })
    .Doc("DecodeDelimitedRows as packed rows; see tabular_rows.cc.");

REGISTER_OP("PackDelimitedText")
    .Input("text: string")
    RECSYS_SMELU_PACK_ATTRS
    .SetShapeFn([](InferenceContext* c) { return DelimitedShape(c, true, true); })
    .Doc("DecodeDelimitedText as packed rows; see tabular_rows.cc.");

#undef RECSYS_SMELU_PACK_ATTRS
#undef RECSYS_SMELU_DECODE_ATTRS
#undef RECSYS_SMELU_COLUMN_ATTRS

REGISTER_KERNEL_BUILDER(Name("DecodeDelimitedRows").Device(DEVICE_CPU),
                        DelimitedOp<false, false>);
REGISTER_KERNEL_BUILDER(Name("DecodeDelimitedText").Device(DEVICE_CPU),
                        DelimitedOp<true, false>);
REGISTER_KERNEL_BUILDER(Name("PackDelimitedRows").Device(DEVICE_CPU),
                        DelimitedOp<false, true>);
REGISTER_KERNEL_BUILDER(Name("PackDelimitedText").Device(DEVICE_CPU),
                        DelimitedOp<true, true>);

// ReadCompleteLines: (filename, offset, length) -> text: the lines of a
// file whose '\n' lies in [offset, offset + length), i.e. the bytes from
// just after the last '\n' before offset (or the file start) to just after
// the last '\n' before offset + length; for offset >= the file size, the
// last line when it has no '\n' (else ""). Blocks k * length, k = 0, 1, ...,
// ceil(size / length) cover every line exactly once, in order, and each is
// read on its own (in parallel, with no carry-over between blocks); they are
// the chunks the stock-op reader makes (readers._plain_text_chunks: a line
// cut by a block boundary goes to the block holding its '\n'). Reads go
// through TensorFlow's file systems (local, gs://, ...).
class ReadCompleteLinesOp : public OpKernel {
 public:
  explicit ReadCompleteLinesOp(OpKernelConstruction* context)
      : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const std::string filename(context->input(0).scalar<tstring>()());
    const int64_t offset = context->input(1).scalar<int64_t>()();
    const int64_t length = context->input(2).scalar<int64_t>()();
    OP_REQUIRES(context, offset >= 0 && length > 0,
                absl::InvalidArgumentError(absl::StrCat(
                    "need offset >= 0 and length > 0, got ", offset, ", ",
                    length)));
    ::tensorflow::Env* env = ::tensorflow::Env::Default();
    uint64_t file_size = 0;
    OP_REQUIRES_OK(context, env->GetFileSize(filename, &file_size));
    std::unique_ptr<::tensorflow::RandomAccessFile> file;
    OP_REQUIRES_OK(context, env->NewRandomAccessFile(filename, &file));
    const int64_t size = static_cast<int64_t>(file_size);
    int64_t start = 0;
    OP_REQUIRES_OK(context, LineStartBefore(*file, filename,
                                            std::min(offset, size), &start));
    const int64_t block_end = std::min(offset + length, size);
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, TensorShape({}), &output));
    tstring& text = output->scalar<tstring>()();
    const int64_t read_end = offset >= size ? size : block_end;
    if (read_end <= start) return;  // "" (no line ends in the block)
    text.resize_uninitialized(read_end - start);
    OP_REQUIRES_OK(context,
                   ReadFully(*file, filename, start, read_end - start,
                             text.mdata()));
    if (offset >= size) return;  // the last line, without its '\n'
    // Up to the last '\n' in the block (the bytes before offset hold none).
    const char* data = text.data();
    const char* block = data + (std::max(offset, start) - start);
    const void* last = memrchr(block, '\n', data + text.size() - block);
    text.resize(last == nullptr
                    ? 0
                    : static_cast<const char*>(last) + 1 - data);
  }

 private:
  static absl::Status ReadFully(const ::tensorflow::RandomAccessFile& file,
                                const std::string& filename, int64_t offset,
                                int64_t n, char* out) {
    absl::string_view result;
    const absl::Status status = file.Read(offset, n, &result, out);
    if (!status.ok() && !absl::IsOutOfRange(status)) return status;
    if (static_cast<int64_t>(result.size()) != n) {
      return absl::DataLossError(absl::StrCat(
          filename, ": read ", result.size(), " bytes at offset ", offset,
          ", expected ", n, " (did the file change while read?)"));
    }
    if (result.data() != out) std::memmove(out, result.data(), n);
    return absl::OkStatus();
  }

  // *start = 1 + the position of the last '\n' before `end` (0 if none),
  // reading backwards in windows.
  static absl::Status LineStartBefore(
      const ::tensorflow::RandomAccessFile& file, const std::string& filename,
      int64_t end, int64_t* start) {
    constexpr int64_t kWindow = 1 << 14;
    std::string window;
    while (end > 0) {
      const int64_t n = std::min(end, kWindow);
      window.resize(n);
      TF_RETURN_IF_ERROR(ReadFully(file, filename, end - n, n, &window[0]));
      const void* last = memrchr(window.data(), '\n', n);
      if (last != nullptr) {
        *start = end - n + (static_cast<const char*>(last) - window.data()) + 1;
        return absl::OkStatus();
      }
      end -= n;
    }
    *start = 0;
    return absl::OkStatus();
  }
};

REGISTER_OP("ReadCompleteLines")
    .Input("filename: string")
    .Input("offset: int64")
    .Input("length: int64")
    .Output("text: string")
    .SetIsStateful()  // reads a file
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle unused;
      for (int i = 0; i < 3; ++i) {
        TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &unused));
      }
      c->set_output(0, c->Scalar());
      return absl::OkStatus();
    })
    .Doc("The lines of a file ending in a byte range; see tabular_rows.cc.");

REGISTER_KERNEL_BUILDER(Name("ReadCompleteLines").Device(DEVICE_CPU),
                        ReadCompleteLinesOp);

}  // namespace
}  // namespace recsys_smelu
