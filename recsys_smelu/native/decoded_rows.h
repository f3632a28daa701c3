// Shared by the line decoders (criteo_rows.cc, tabular_rows.cc): their four
// outputs and the loop that fills them (over ranges of rows in parallel),
// and n % d without a division.
#ifndef RECSYS_SMELU_NATIVE_DECODED_ROWS_H_
#define RECSYS_SMELU_NATIVE_DECODED_ROWS_H_

#include <algorithm>
#include <cstdint>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/platform/threadpool.h"
#include "tensorflow/core/util/work_sharder.h"

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

// Rows per range below which ForRowRanges adds no thread: a range must
// outweigh handing it to another thread.
constexpr int64_t kMinRowsPerRange = 512;

// Calls rows(begin, end) on consecutive ranges that cover [0, n), in
// parallel on the op's intra-op worker threads: one range per thread, at
// most GetPerThreadMaxParallelism() of them (tf.data's
// threading.max_intra_op_parallelism bounds it), none shorter than
// kMinRowsPerRange; the calling thread takes one. A chunk's decode then uses
// every core even when tf.data runs one decode at a time. The lines of a
// chunk are independent, so the outputs do not depend on the split.
template <typename RowsFn>
void ForRowRanges(::tensorflow::OpKernelContext* context, int64_t n,
                  const RowsFn& rows) {
  const auto* workers = context->device()->tensorflow_cpu_worker_threads();
  const int64_t ranges = std::min<int64_t>(
      {static_cast<int64_t>(workers->num_threads),
       static_cast<int64_t>(::tensorflow::GetPerThreadMaxParallelism()),
       n / kMinRowsPerRange});
  if (ranges <= 1 || workers->workers == nullptr) {
    rows(int64_t{0}, n);
    return;
  }
  workers->workers->ParallelFor(
      n,
      ::tensorflow::thread::ThreadPool::SchedulingParams::Fixed(
          (n + ranges - 1) / ranges),
      [&rows](int64_t begin, int64_t end) { rows(begin, end); });
}

// Allocates outputs label [n], dense [n, num_dense], hashes [n,
// num_categorical] and valid [n], and sets valid[i] =
// decode_line(i, &label[i], dense row i, hashes row i); an invalid line's
// row is zeros. make_decode_line() gives one decode_line per range of
// ForRowRanges (each with its own scratch).
template <typename MakeDecodeLine>
void DecodeRows(::tensorflow::OpKernelContext* context, int64_t n,
                int64_t num_dense, int64_t num_categorical,
                const MakeDecodeLine& make_decode_line) {
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
  ForRowRanges(context, n, [&](int64_t begin, int64_t end) {
    auto decode_line = make_decode_line();
    for (int64_t i = begin; i < end; ++i) {
      float* dense_row = dense_out + i * num_dense;
      int64_t* hashes_row = hashes_out + i * num_categorical;
      valid_out[i] = decode_line(i, &label_out[i], dense_row, hashes_row);
      if (!valid_out[i]) {
        label_out[i] = 0.0f;
        std::fill(dense_row, dense_row + num_dense, 0.0f);
        std::fill(hashes_row, hashes_row + num_categorical, int64_t{0});
      }
    }
  });
}

}  // namespace recsys_smelu

#endif  // RECSYS_SMELU_NATIVE_DECODED_ROWS_H_
