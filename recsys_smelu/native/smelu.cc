// SmeluForward / SmeluBackward: Smooth ReLU with a constant beta, float32,
// one pass over memory each (CPU).
//
//   h  = clip((x + beta) / (beta + beta), 0, 1)      (the slope d smelu / dx)
//   y  = max(x, beta * h * h)
//   dx = dy * h
//
// Each operation is rounded as written, in the order written, with NaN
// propagated as tf.clip_by_value and tf.maximum do, so results equal the
// stock-op expression in recsys_smelu/activations.py bit for bit. Why: the
// stock expression is about ten element-wise kernels per layer and step, and
// its XLA-fused form pays an XLA launch per call; ReLU is fused into the
// matmul. These ops close most of that gap on CPU.

#include <cstdint>

#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/platform/threadpool.h"

namespace recsys_smelu {
namespace {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::errors::InvalidArgument;

REGISTER_OP("SmeluForward")
    .Input("x: float")
    .Output("y: float")
    .Attr("beta: float")
    .SetShapeFn(::tensorflow::shape_inference::UnchangedShape)
    .Doc("Smooth ReLU: y = max(x, beta h^2), h = clip((x + beta) / 2beta, 0, 1).");

REGISTER_OP("SmeluBackward")
    .Input("x: float")
    .Input("dy: float")
    .Output("dx: float")
    .Attr("beta: float")
    .SetShapeFn(::tensorflow::shape_inference::UnchangedShape)
    .Doc("Smooth ReLU's gradient: dx = dy * clip((x + beta) / 2beta, 0, 1).");

// clip(v, 0, 1) keeping NaN (comparisons with NaN are false).
inline float ClipUnit(float v) {
  v = v < 0.0f ? 0.0f : v;
  return v > 1.0f ? 1.0f : v;
}

inline float Slope(float x, float beta, float two_beta) {
  return ClipUnit((x + beta) / two_beta);
}

// Tensors up to this many elements are done on the calling thread: a CTR
// MLP's activations (1024 x 256 = 262k) take about 0.1 ms vectorized, and
// splitting them over the intra-op pool measured slower in training, where
// the input pipeline keeps the other cores busy.
constexpr int64_t kInlineElements = int64_t{1} << 20;

// Runs body(begin, end) over [0, n): inline when small, else on the intra-op
// thread pool.
template <typename Body>
void ForEachBlock(OpKernelContext* ctx, int64_t n, Body body) {
  if (n <= kInlineElements) {
    body(0, n);
    return;
  }
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  pool->ParallelFor(n, /*cost_per_unit=*/8, body);
}

class SmeluOp : public OpKernel {
 public:
  explicit SmeluOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("beta", &beta_));
    OP_REQUIRES(ctx, beta_ > 0.0f && beta_ < 3.0e38f,
                InvalidArgument("beta must be finite and > 0, got ", beta_));
    two_beta_ = beta_ + beta_;
  }

 protected:
  float beta_;
  float two_beta_;
};

class SmeluForwardOp : public SmeluOp {
 public:
  using SmeluOp::SmeluOp;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &y));
    const float* in = x.flat<float>().data();
    float* out = y->flat<float>().data();
    const float beta = beta_;
    const float two_beta = two_beta_;
    ForEachBlock(ctx, x.NumElements(), [=](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float v = in[i];
        const float h = Slope(v, beta, two_beta);
        const float quadratic = (beta * h) * h;
        // max(v, quadratic); NaN v gives NaN h, hence NaN quadratic.
        out[i] = v > quadratic ? v : quadratic;
      }
    });
  }
};

class SmeluBackwardOp : public SmeluOp {
 public:
  using SmeluOp::SmeluOp;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& dy = ctx->input(1);
    OP_REQUIRES(ctx, x.shape() == dy.shape(),
                InvalidArgument("x and dy must have the same shape, got ",
                                x.shape().DebugString(), " and ",
                                dy.shape().DebugString()));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
    const float* in = x.flat<float>().data();
    const float* grad = dy.flat<float>().data();
    float* out = dx->flat<float>().data();
    const float beta = beta_;
    const float two_beta = two_beta_;
    ForEachBlock(ctx, x.NumElements(), [=](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        out[i] = grad[i] * Slope(in[i], beta, two_beta);
      }
    });
  }
};

REGISTER_KERNEL_BUILDER(Name("SmeluForward").Device(DEVICE_CPU),
                        SmeluForwardOp);
REGISTER_KERNEL_BUILDER(Name("SmeluBackward").Device(DEVICE_CPU),
                        SmeluBackwardOp);

}  // namespace
}  // namespace recsys_smelu
