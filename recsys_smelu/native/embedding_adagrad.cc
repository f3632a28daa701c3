// EmbeddingAdagradUpdate: the sparse Adagrad step of many embedding tables in
// one op (CPU).
//
// For each table t, with gradient rows g_i for ids indices[t][i]:
//   duplicate ids are summed first, in order of appearance:  G_r = sum g_i
//   acc[r]   += G_r * G_r
//   table[r] += (-lr * G_r) / sqrt(acc[r] + epsilon)
// which is, operation for operation, the rule tf.keras.optimizers.Adagrad
// spells out for an IndexedSlices gradient (tf.unique + unsorted_segment_sum,
// then scatter_add / gather / sqrt / scatter_add). Results are bit-identical to
// a float32 reference of that rule (tested) and agree with Keras to float32
// rounding: Grappler rewrites Keras' graph to G * rsqrt(...).
// One op replaces about a dozen per table; tables are updated in parallel on
// the intra-op thread pool, each under its variables' exclusive locks.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/platform/mutex.h"
#include "tensorflow/core/platform/threadpool.h"

namespace recsys_smelu {
namespace {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::DataType;
using ::tensorflow::DataTypeString;
using ::tensorflow::OpInputList;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Status;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::Var;
using ::tensorflow::errors::FailedPrecondition;
using ::tensorflow::errors::InvalidArgument;

REGISTER_OP("EmbeddingAdagradUpdate")
    .Input("tables: num_tables * resource")
    .Input("accumulators: num_tables * resource")
    .Input("indices: num_tables * Tindices")
    .Input("gradients: num_tables * float")
    .Input("learning_rate: float")
    .Attr("num_tables: int >= 1")
    .Attr("Tindices: {int32, int64}")
    .Attr("epsilon: float")
    .SetIsStateful()
    .SetShapeFn(::tensorflow::shape_inference::NoOutputs)
    .Doc(R"doc(
Sparse Adagrad step of num_tables embedding tables, in place.

Duplicate ids of a table are summed first (in order of appearance); then for
each distinct row r with summed gradient G: acc[r] += G*G;
table[r] += (-learning_rate * G) / sqrt(acc[r] + epsilon). Bit-identical to
tf.keras.optimizers.Adagrad on IndexedSlices gradients.
)doc");

// Gives the op exclusive use of a variable's buffer for in-place sparse
// updates, as TF's own sparse ops do (EnsureSparseVariableAccess): the first
// sparse access copies the buffer if a dense read still shares it and then
// switches the variable to copy-on-read mode, where dense reads copy.
Status EnsureSparseAccess(OpKernelContext* ctx, Var* var) {
  if (var->copy_on_read_mode.load()) return Status();
  Tensor* tensor = var->tensor();
  if (!tensor->RefCountIsOne()) {
    Tensor copy;
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensor->dtype(), tensor->shape(),
                                          &copy));
    std::memcpy(copy.data(), tensor->data(), tensor->TotalBytes());
    *tensor = copy;
  }
  var->copy_on_read_mode.store(true);
  return Status();
}

// Duplicate-summing of one table's gradient rows: an open-addressing map from
// id to the row's slot, slots in order of first appearance.
template <typename Index>
class RowSums {
 public:
  RowSums(int64_t num_rows, int64_t dim) : dim_(dim) {
    int64_t capacity = 16;
    while (capacity < 2 * num_rows) capacity <<= 1;
    mask_ = capacity - 1;
    keys_.resize(capacity);
    slots_.assign(capacity, -1);
    ids_.reserve(num_rows);
    sums_.reserve(num_rows * dim);
  }

  // Adds gradient row `values` (dim floats) to id's sum.
  void Add(Index id, const float* values) {
    uint64_t h = static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ull;
    int64_t pos = static_cast<int64_t>(h >> 20) & mask_;
    while (slots_[pos] >= 0 && keys_[pos] != id) pos = (pos + 1) & mask_;
    float* sum;
    if (slots_[pos] < 0) {
      slots_[pos] = static_cast<int64_t>(ids_.size());
      keys_[pos] = id;
      ids_.push_back(id);
      sums_.resize(sums_.size() + dim_, 0.0f);
      sum = sums_.data() + sums_.size() - dim_;
    } else {
      sum = sums_.data() + slots_[pos] * dim_;
    }
    for (int64_t k = 0; k < dim_; ++k) sum[k] += values[k];
  }

  const std::vector<Index>& ids() const { return ids_; }
  const float* sum(int64_t slot) const { return sums_.data() + slot * dim_; }

 private:
  int64_t dim_;
  int64_t mask_;
  std::vector<Index> keys_;
  std::vector<int64_t> slots_;
  std::vector<Index> ids_;
  std::vector<float> sums_;
};

template <typename Index>
class EmbeddingAdagradUpdateOp : public OpKernel {
 public:
  explicit EmbeddingAdagradUpdateOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon_));
  }

  void Compute(OpKernelContext* ctx) override {
    OpInputList indices, gradients;
    OP_REQUIRES_OK(ctx, ctx->input_list("indices", &indices));
    OP_REQUIRES_OK(ctx, ctx->input_list("gradients", &gradients));
    const Tensor& lr_tensor = ctx->input(ctx->num_inputs() - 1);
    OP_REQUIRES(ctx, lr_tensor.NumElements() == 1,
                InvalidArgument("learning_rate must be a scalar, got shape ",
                                lr_tensor.shape().DebugString()));
    const float neg_lr = -lr_tensor.flat<float>()(0);
    const int num_tables = indices.size();

    std::vector<Status> statuses(num_tables);
    auto update = [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        statuses[t] = UpdateTable(ctx, t, num_tables, indices[t], gradients[t],
                                  neg_lr);
      }
    };
    int64_t work = 0;
    for (int t = 0; t < num_tables; ++t) work += gradients[t].NumElements();
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    const int64_t cost_per_table = 40 * (work / num_tables + 1);
    pool->ParallelFor(num_tables, cost_per_table, update);
    for (const Status& status : statuses) OP_REQUIRES_OK(ctx, status);
  }

 private:
  Status UpdateTable(OpKernelContext* ctx, int t, int num_tables,
                     const Tensor& indices, const Tensor& gradients,
                     float neg_lr) const {
    ::tensorflow::core::RefCountPtr<Var> table, accumulator;
    TF_RETURN_IF_ERROR(::tensorflow::LookupResource(
        ctx, ::tensorflow::HandleFromInput(ctx, t), &table));
    TF_RETURN_IF_ERROR(::tensorflow::LookupResource(
        ctx, ::tensorflow::HandleFromInput(ctx, num_tables + t), &accumulator));
    if (table.get() == accumulator.get()) {
      return InvalidArgument("table ", t, ": the table and its accumulator "
                             "are the same variable");
    }
    ::tensorflow::mutex_lock table_lock(*table->mu());
    ::tensorflow::mutex_lock accumulator_lock(*accumulator->mu());
    if (!table->is_initialized || !accumulator->is_initialized) {
      return FailedPrecondition("table ", t, ": uninitialized variable");
    }
    TF_RETURN_IF_ERROR(EnsureSparseAccess(ctx, table.get()));
    TF_RETURN_IF_ERROR(EnsureSparseAccess(ctx, accumulator.get()));
    Tensor* w = table->tensor();
    Tensor* acc = accumulator->tensor();
    if (w->dtype() != ::tensorflow::DT_FLOAT ||
        acc->dtype() != ::tensorflow::DT_FLOAT) {
      return InvalidArgument("table ", t, ": tables and accumulators must be "
                             "float32, got ", DataTypeString(w->dtype()),
                             " and ", DataTypeString(acc->dtype()));
    }
    if (w->dims() != 2 || w->shape() != acc->shape()) {
      return InvalidArgument("table ", t, ": table shape ",
                             w->shape().DebugString(), " and accumulator "
                             "shape ", acc->shape().DebugString(),
                             " must be the same [rows, dim]");
    }
    const int64_t rows = w->dim_size(0);
    const int64_t dim = w->dim_size(1);
    const int64_t n = indices.NumElements();
    if (indices.dims() != 1 || gradients.dims() != 2 ||
        gradients.dim_size(0) != n || gradients.dim_size(1) != dim) {
      return InvalidArgument("table ", t, ": indices ",
                             indices.shape().DebugString(), " and gradients ",
                             gradients.shape().DebugString(),
                             " must be [n] and [n, ", dim, "]");
    }
    const Index* ids = indices.flat<Index>().data();
    const float* grad = gradients.flat<float>().data();
    RowSums<Index> sums(n, dim);
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= rows) {
        return InvalidArgument("table ", t, ": index ", ids[i],
                               " is outside [0, ", rows, ")");
      }
      sums.Add(ids[i], grad + i * dim);
    }
    float* w_data = w->flat<float>().data();
    float* acc_data = acc->flat<float>().data();
    const float epsilon = epsilon_;
    const int64_t num_unique = static_cast<int64_t>(sums.ids().size());
    const std::vector<Index>& unique_ids = sums.ids();
    constexpr int64_t kPrefetchDistance = 8;
    for (int64_t u = 0; u < std::min(kPrefetchDistance, num_unique); ++u) {
      const int64_t row = static_cast<int64_t>(unique_ids[u]);
      __builtin_prefetch(acc_data + row * dim, 1);
      __builtin_prefetch(w_data + row * dim, 1);
    }
    for (int64_t u = 0; u < num_unique; ++u) {
      if (u + kPrefetchDistance < num_unique) {
        const int64_t ahead = static_cast<int64_t>(unique_ids[u + kPrefetchDistance]);
        __builtin_prefetch(acc_data + ahead * dim, 1);
        __builtin_prefetch(w_data + ahead * dim, 1);
      }
      const float* g = sums.sum(u);
      const int64_t row = static_cast<int64_t>(sums.ids()[u]);
      float* a = acc_data + row * dim;
      float* v = w_data + row * dim;
      for (int64_t k = 0; k < dim; ++k) {
        const float square = g[k] * g[k];
        a[k] = a[k] + square;
        const float denominator = std::sqrt(a[k] + epsilon);
        const float step = (neg_lr * g[k]) / denominator;
        v[k] = v[k] + step;
      }
    }
    return Status();
  }

  float epsilon_;
};

REGISTER_KERNEL_BUILDER(Name("EmbeddingAdagradUpdate")
                            .Device(DEVICE_CPU)
                            .TypeConstraint<int32_t>("Tindices"),
                        EmbeddingAdagradUpdateOp<int32_t>);
REGISTER_KERNEL_BUILDER(Name("EmbeddingAdagradUpdate")
                            .Device(DEVICE_CPU)
                            .TypeConstraint<int64_t>("Tindices"),
                        EmbeddingAdagradUpdateOp<int64_t>);

}  // namespace
}  // namespace recsys_smelu
