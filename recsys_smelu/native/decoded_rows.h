// Shared by the line decoders (criteo_rows.cc, tabular_rows.cc): their four
// outputs and the loop that fills them, and n % d without a division.
#ifndef RECSYS_SMELU_NATIVE_DECODED_ROWS_H_
#define RECSYS_SMELU_NATIVE_DECODED_ROWS_H_

#include <algorithm>
#include <cstdint>

#include "tensorflow/core/framework/op_kernel.h"

namespace recsys_smelu {

// n % d by a multiply instead of a 64-bit division (several times its
// cost): with m = floor((2^64 - 1) / d), q = floor(n * m / 2^64) is
// floor(n / d) or at most 2 less, so r = n - q * d is in [0, 3d) and at most
// two subtractions make it n % d exactly.
struct FastModulus {
  uint64_t divisor;
  uint64_t multiplier;
  explicit FastModulus(uint64_t d)
      : divisor(d), multiplier(~uint64_t{0} / d) {}
  uint64_t Of(uint64_t n) const {
    const uint64_t q = static_cast<uint64_t>(
        (static_cast<unsigned __int128>(n) * multiplier) >> 64);
    uint64_t r = n - q * divisor;
    r = r >= divisor ? r - divisor : r;  // selects, not branches
    return r >= divisor ? r - divisor : r;
  }
};

// Allocates outputs label [n], dense [n, num_dense], hashes [n,
// num_categorical] and valid [n], and sets valid[i] =
// decode_line(i, &label[i], dense row i, hashes row i); an invalid line's
// row is zeros.
template <typename DecodeLine>
void DecodeRows(::tensorflow::OpKernelContext* context, int64_t n,
                int64_t num_dense, int64_t num_categorical,
                DecodeLine decode_line) {
  using ::tensorflow::Tensor;
  using ::tensorflow::TensorShape;
  Tensor* label = nullptr;
  Tensor* dense = nullptr;
  Tensor* hashes = nullptr;
  Tensor* valid = nullptr;
  OP_REQUIRES_OK(context,
                 context->allocate_output(0, TensorShape({n}), &label));
  OP_REQUIRES_OK(context, context->allocate_output(
                              1, TensorShape({n, num_dense}), &dense));
  OP_REQUIRES_OK(context, context->allocate_output(
                              2, TensorShape({n, num_categorical}), &hashes));
  OP_REQUIRES_OK(context,
                 context->allocate_output(3, TensorShape({n}), &valid));
  float* label_out = label->flat<float>().data();
  float* dense_out = dense->flat<float>().data();
  int64_t* hashes_out = hashes->flat<int64_t>().data();
  bool* valid_out = valid->flat<bool>().data();
  for (int64_t i = 0; i < n; ++i) {
    float* dense_row = dense_out + i * num_dense;
    int64_t* hashes_row = hashes_out + i * num_categorical;
    valid_out[i] = decode_line(i, &label_out[i], dense_row, hashes_row);
    if (!valid_out[i]) {
      label_out[i] = 0.0f;
      std::fill(dense_row, dense_row + num_dense, 0.0f);
      std::fill(hashes_row, hashes_row + num_categorical, int64_t{0});
    }
  }
}

}  // namespace recsys_smelu

#endif  // RECSYS_SMELU_NATIVE_DECODED_ROWS_H_
