// DecodeCriteoRows: validates and decodes a batch of Criteo TSV lines in one
// pass per line (the native fast path of recsys_smelu.data.criteo).
//
// A line is valid when it has exactly 1 + num_dense + len(moduli) tab-separated
// fields, the label is "0" or "1", and every integer field is empty or matches
// -?[0-9]{1,38} (the same rule as criteo._row_regex). For a valid line:
//   label[i]      = 0.0 or 1.0
//   dense[i, j]   = the integer as float32, correctly rounded (NaN if empty)
//   hashes[i, k]  = Fingerprint64(field) % moduli[k]
//                   (= tf.strings.to_hash_bucket_fast(field, moduli[k]))
// An invalid line gives valid[i] = false and zeros in its rows.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "decoded_rows.h"
#include "absl/strings/str_cat.h"
#include "farmhash.h"  // util::Fingerprint64, exported by libtensorflow_framework
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

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

constexpr int kMaxIntegerDigits = 38;  // float32 holds < 3.4e38
constexpr int kExactDigits = 18;       // below 1e18, int64 holds the value

// Parses an integer field [begin, end) (non-empty); false if it is not
// -?[0-9]{1,38}.
bool ParseInteger(const char* begin, const char* end, float* value) {
  const bool negative = *begin == '-';
  const char* digits = begin + negative;
  const std::ptrdiff_t count = end - digits;
  if (count < 1 || count > kMaxIntegerDigits) return false;
  uint64_t exact = 0;
  for (const char* p = digits; p < end; ++p) {
    const unsigned digit = static_cast<unsigned char>(*p) - '0';
    if (digit > 9) return false;
    exact = exact * 10 + digit;  // wraps past 18 digits; not used then
  }
  float magnitude;
  if (count <= kExactDigits) {
    // Correctly rounded: the conversion rounds the exact integer.
    magnitude = static_cast<float>(static_cast<int64_t>(exact));
  } else {
    char buffer[kMaxIntegerDigits + 1];
    std::memcpy(buffer, digits, count);
    buffer[count] = '\0';
    magnitude = std::strtof(buffer, nullptr);  // correctly rounded (glibc)
  }
  *value = negative ? -magnitude : magnitude;
  return true;
}

class DecodeCriteoRowsOp : public OpKernel {
 public:
  explicit DecodeCriteoRowsOp(OpKernelConstruction* context)
      : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("num_dense", &num_dense_));
    std::vector<int64_t> moduli;
    OP_REQUIRES_OK(context, context->GetAttr("moduli", &moduli));
    for (const int64_t modulus : moduli) {
      OP_REQUIRES(context, modulus > 0,
                  absl::InvalidArgumentError(
                      absl::StrCat("moduli must be > 0, got ", modulus)));
      moduli_.emplace_back(static_cast<uint64_t>(modulus));
    }
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& lines_tensor = context->input(0);
    OP_REQUIRES(context,
                ::tensorflow::TensorShapeUtils::IsVector(lines_tensor.shape()),
                absl::InvalidArgumentError(
                    absl::StrCat("lines must be a vector, got shape ",
                                 lines_tensor.shape().DebugString())));
    const auto lines = lines_tensor.vec<tstring>();
    DecodeRows(context, lines.size(), num_dense_, moduli_.size(), [&] {
      return [&](int64_t i, float* label, float* dense, int64_t* hashes) {
        return DecodeLine(lines(i), label, dense, hashes);
      };
    });
  }

 private:
  bool DecodeLine(const tstring& line, float* label, float* dense,
                  int64_t* hashes) const {
    const char* field = line.data();
    const char* const end = field + line.size();
    const int64_t num_columns = 1 + num_dense_ + moduli_.size();
    const float missing = std::numeric_limits<float>::quiet_NaN();
    for (int64_t column = 0;; ++column) {
      if (column >= num_columns) return false;  // too many fields
      const char* tab =
          static_cast<const char*>(std::memchr(field, '\t', end - field));
      const char* field_end = tab == nullptr ? end : tab;
      if (column == 0) {
        if (field_end - field != 1 || (*field != '0' && *field != '1')) {
          return false;
        }
        *label = *field == '1' ? 1.0f : 0.0f;
      } else if (column <= num_dense_) {
        float* value = &dense[column - 1];
        if (field == field_end) {
          *value = missing;
        } else if (!ParseInteger(field, field_end, value)) {
          return false;
        }
      } else {
        const int64_t k = column - 1 - num_dense_;
        hashes[k] = static_cast<int64_t>(
            moduli_[k].Of(util::Fingerprint64(field, field_end - field)));
      }
      if (tab == nullptr) return column + 1 == num_columns;
      field = tab + 1;
    }
  }

  int64_t num_dense_ = 0;
  std::vector<FastModulus> moduli_;
};

REGISTER_OP("DecodeCriteoRows")
    .Input("lines: string")
    .Attr("num_dense: int >= 0")
    .Attr("moduli: list(int) >= 0")
    .Output("label: float")
    .Output("dense: float")
    .Output("hashes: int64")
    .Output("valid: bool")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle lines;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 1, &lines));
      int64_t num_dense;
      std::vector<int64_t> moduli;
      TF_RETURN_IF_ERROR(c->GetAttr("num_dense", &num_dense));
      TF_RETURN_IF_ERROR(c->GetAttr("moduli", &moduli));
      const auto n = c->Dim(lines, 0);
      c->set_output(0, c->Vector(n));
      c->set_output(1, c->Matrix(n, num_dense));
      c->set_output(2, c->Matrix(n, static_cast<int64_t>(moduli.size())));
      c->set_output(3, c->Vector(n));
      return absl::OkStatus();
    })
    .Doc("Validates and decodes Criteo TSV lines; see criteo_rows.cc.");

REGISTER_KERNEL_BUILDER(Name("DecodeCriteoRows").Device(DEVICE_CPU),
                        DecodeCriteoRowsOp);

}  // namespace
}  // namespace recsys_smelu
