// Specification tests for Tensor (core/tensor.h): creation, metadata, views and the
// storage they share, dtype/device conversion, in-place updates, PyTorch-style printing,
// and Device parsing and the no-GPU state. The TensorCuda cases skip without a GPU.
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/device.h"
#include "ember/core/base/error.h"
#include "ember/core/memory/cuda_memory.h"
#include "ember/core/memory/pinned_pool.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"

#include "support/check.h"
#include "support/device.h"

namespace {

using namespace ember;

using ember::testing::contains;
using ember::testing::error_of;

Tensor floats(const std::vector<float>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}
Tensor floats(const std::vector<float>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
}

// [[0, 1, 2], [3, 4, 5]] as float32.
Tensor matrix_2x3() { return floats({0, 1, 2, 3, 4, 5}, {2, 3}); }

bool shares_storage(const Tensor& a, const Tensor& b) {
  return a.impl().storage == b.impl().storage;
}

// --- creation ----------------------------------------------------------------------------

TEST(TensorCreation, EmptyHasShapeDtypeAndDevice) {
  Tensor t = empty({2, 3}, {.dtype = kInt32});
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.dtype(), kInt32);
  EXPECT_EQ(t.device(), Device::cpu());
  EXPECT_FALSE(t.requires_grad());
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.nbytes(), 6u * 4u);
}

TEST(TensorCreation, ZerosOnesAndFullFillEveryElement) {
  EXPECT_EQ(zeros({2, 2}).to_vector<float>(), (std::vector<float>{0, 0, 0, 0}));
  EXPECT_EQ(ones({3}, {.dtype = kInt64}).to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(full({2}, 2.5, {.dtype = kFloat64}).to_vector<double>(),
            (std::vector<double>{2.5, 2.5}));
  Tensor t = full({2}, 7, {.dtype = kFloat32, .requires_grad = true});
  EXPECT_TRUE(t.requires_grad());
  EXPECT_TRUE(t.is_leaf());
  Tensor z = zeros_like(full({2, 2}, 3.0, {.dtype = kInt32}));
  EXPECT_EQ(z.dtype(), kInt32);
  EXPECT_EQ(z.to_vector<int32_t>(), (std::vector<int32_t>{0, 0, 0, 0}));
}

TEST(TensorCreation, ArangeWithEndGivesInt64Range) {
  Tensor t = arange(5);
  EXPECT_EQ(t.dtype(), kInt64);
  EXPECT_EQ(t.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(0).numel(), 0);
}

TEST(TensorCreation, ArangeWithStartEndStepGivesFloatRange) {
  Tensor t = arange(0.0, 1.0, 0.25);
  EXPECT_EQ(t.dtype(), kFloat32);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 0.25f, 0.5f, 0.75f}));
  // The end is exclusive even when the step does not divide the range.
  EXPECT_EQ(arange(1.0, 2.0, 0.3).numel(), 4);
  EXPECT_EQ(arange(3.0, 3.0).numel(), 0);
}

TEST(TensorCreation, ArangeWithNegativeStepCountsDown) {
  Tensor t = arange(5.0, 0.0, -1.5, {.dtype = kFloat64});
  EXPECT_EQ(t.to_vector<double>(), (std::vector<double>{5.0, 3.5, 2.0, 0.5}));
  EXPECT_EQ(arange(3.0, 0.0, -1.0, {.dtype = kInt64}).to_vector<int64_t>(),
            (std::vector<int64_t>{3, 2, 1}));
}

TEST(TensorCreation, ArangeWithStepThatNeverArrivesThrows) {
  std::string msg = error_of<Error>([] { arange(0.0, 5.0, -1.0); });
  EXPECT_TRUE(contains(msg, "arange")) << msg;
  EXPECT_TRUE(contains(msg, "never reaches")) << msg;
  EXPECT_THROW(arange(0.0, 5.0, 0.0), Error);
  EXPECT_THROW(arange(0.0, std::numeric_limits<double>::infinity()), Error);
}

TEST(TensorCreation, RandDrawsFromTheUnitInterval) {
  manual_seed(1);
  const std::vector<float> v = rand({200000}).to_vector<float>();
  double sum = 0;
  for (float x : v) {
    ASSERT_GE(x, 0.0f);
    ASSERT_LT(x, 1.0f);
    sum += x;
  }
  EXPECT_NEAR(sum / static_cast<double>(v.size()), 0.5, 0.005);
}

TEST(TensorCreation, RandnHasStandardNormalMoments) {
  manual_seed(2);
  const std::vector<double> v = randn({200000}, {.dtype = kFloat64}).to_vector<double>();
  double sum = 0, sq = 0;
  for (double x : v) sum += x;
  const double mean = sum / static_cast<double>(v.size());
  for (double x : v) sq += (x - mean) * (x - mean);
  // Standard errors: 1/sqrt(n) ~ 0.0022 for the mean, sqrt(2/n) ~ 0.0032 for the variance.
  EXPECT_NEAR(mean, 0.0, 0.011);
  EXPECT_NEAR(sq / static_cast<double>(v.size()), 1.0, 0.016);
}

TEST(TensorCreation, SameSeedGivesSameValues) {
  manual_seed(123);
  const std::vector<float> a = randn({64}).to_vector<float>();
  const std::vector<float> ar = rand({8}).to_vector<float>();
  manual_seed(123);
  const std::vector<float> b = randn({64}).to_vector<float>();
  const std::vector<float> br = rand({8}).to_vector<float>();
  EXPECT_EQ(a, b);
  EXPECT_EQ(ar, br);
  EXPECT_EQ(initial_seed(), 123u);
  EXPECT_NE(randn({64}).to_vector<float>(), a) << "the generator must advance";
}

TEST(TensorCreation, RandRejectsIntegerDtypes) {
  std::string msg = error_of<DTypeError>([] { rand({2}, {.dtype = kInt64}); });
  EXPECT_TRUE(contains(msg, "rand")) << msg;
  EXPECT_TRUE(contains(msg, "int64")) << msg;
}

TEST(TensorCreation, FromVectorKeepsValuesInCOrder) {
  Tensor t = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {3, 2});
  EXPECT_EQ(t.dtype(), kInt32);
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_EQ(t.select(0, 1).to_vector<int32_t>(), (std::vector<int32_t>{3, 4}));
}

TEST(TensorCreation, FromVectorWithSizeMismatchIsShapeError) {
  std::string msg = error_of<ShapeError>(
      [] { Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}); });
  EXPECT_TRUE(contains(msg, "from_vector")) << msg;
  EXPECT_TRUE(contains(msg, "[2, 2]")) << msg;
  EXPECT_TRUE(contains(msg, "3 values")) << msg;
}

TEST(TensorCreation, FromBlobWrapsCallerMemoryWithoutCopying) {
  std::vector<float> buf = {1, 2, 3, 4};
  {
    Tensor t = Tensor::from_blob(buf.data(), {2, 2}, kFloat32);
    EXPECT_EQ(t.data_ptr(), buf.data());
    t.fill_(9);
    EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{9, 9, 9, 9}));
  }
  // Without a deleter the memory stays the caller's, untouched by the tensor's death.
  EXPECT_EQ(buf, (std::vector<float>{9, 9, 9, 9}));
}

TEST(TensorCreation, FromBlobDeleterRunsOnceWhenTheLastViewDies) {
  int calls = 0;
  float* data = new float[6]{0, 1, 2, 3, 4, 5};
  void* freed = nullptr;
  Tensor view;
  {
    Tensor t = Tensor::from_blob(data, {2, 3}, kFloat32, Device::cpu(), [&](void* p) {
      ++calls;
      freed = p;
      delete[] static_cast<float*>(p);
    });
    Tensor other = t.t();
    view = t.narrow(1, 1, 2);
  }
  EXPECT_EQ(calls, 0) << "a view still refers to the memory";
  EXPECT_EQ(view.contiguous().to_vector<float>(), (std::vector<float>{1, 2, 4, 5}));
  view = Tensor();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(freed, data);
}

TEST(TensorCreation, ScalarTensorIsRankZero) {
  Tensor s = scalar_tensor(2.5);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_TRUE(s.shape().empty());
  EXPECT_EQ(s.item(), 2.5);
  EXPECT_EQ(scalar_tensor(3, {.dtype = kInt64}).item<int64_t>(), 3);
}

// --- metadata ----------------------------------------------------------------------------

TEST(TensorMetadata, ReportsShapeStridesNumelAndRank) {
  Tensor t = zeros({2, 3, 4});
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.size(1), 3);
  EXPECT_EQ(t.stride(0), 12);
  EXPECT_EQ(t.element_size(), 4u);
  EXPECT_TRUE(t.is_contiguous());
}

TEST(TensorMetadata, NegativeDimsCountFromTheEnd) {
  Tensor t = zeros({2, 3, 4});
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(t.size(-3), 2);
  EXPECT_EQ(t.stride(-2), 4);
}

TEST(TensorMetadata, OutOfRangeDimNamesTheDimAndTheRank) {
  Tensor t = zeros({2, 3});
  std::string msg = error_of<ShapeError>([&] { t.size(2); });
  EXPECT_TRUE(contains(msg, "dimension 2")) << msg;
  EXPECT_TRUE(contains(msg, "rank 2")) << msg;
  EXPECT_THROW(t.size(-3), ShapeError);
  EXPECT_THROW(t.stride(5), ShapeError);
}

TEST(TensorMetadata, RankZeroTensorHasNoSizeToIndex) {
  Tensor s = scalar_tensor(1.0);
  std::string msg = error_of<ShapeError>([&] { s.size(0); });
  EXPECT_TRUE(contains(msg, "rank 0")) << msg;
  EXPECT_THROW(s.stride(-1), ShapeError);
}

TEST(TensorMetadata, ContiguityFollowsTheStrides) {
  Tensor t = zeros({3, 4});
  EXPECT_FALSE(t.t().is_contiguous());
  EXPECT_FALSE(t.narrow(1, 0, 2).is_contiguous());
  EXPECT_TRUE(t.narrow(0, 1, 2).is_contiguous());
  EXPECT_TRUE(t.unsqueeze(1).is_contiguous()) << "size-1 dims do not break contiguity";
  EXPECT_TRUE(zeros({4, 1}).t().is_contiguous());
  EXPECT_TRUE(zeros({0, 3}).t().is_contiguous()) << "an empty tensor is trivially contiguous";
  EXPECT_TRUE(scalar_tensor(1.0).is_contiguous());
}

TEST(TensorMetadata, UndefinedTensorRefusesUse) {
  Tensor t;
  EXPECT_FALSE(t.defined());
  EXPECT_THROW(t.shape(), Error);
}

// --- views ----------------------------------------------------------------------------------

TEST(TensorView, ViewSharesStorageAndInfersMinusOne) {
  Tensor t = matrix_2x3();
  Tensor v = t.view({3, -1});
  EXPECT_EQ(v.shape(), (Shape{3, 2}));
  EXPECT_TRUE(shares_storage(t, v));
  EXPECT_EQ(v.to_vector<float>(), t.to_vector<float>());
  v.select(0, 0).fill_(-1);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{-1, -1, 2, 3, 4, 5}));
}

TEST(TensorView, ViewOfIncompatibleLayoutTellsTheUserToReshape) {
  Tensor t = matrix_2x3().t();
  std::string msg = error_of<ShapeError>([&] { t.view({6}); });
  EXPECT_TRUE(contains(msg, "view")) << msg;
  EXPECT_TRUE(contains(msg, "[3, 2]")) << msg;
  EXPECT_TRUE(contains(msg, "reshape")) << msg;
}

TEST(TensorView, ViewRejectsBadShapes) {
  Tensor t = matrix_2x3();
  EXPECT_THROW(t.view({4, 2}), ShapeError);
  EXPECT_THROW(t.view({-1, -1}), ShapeError);
  EXPECT_THROW(t.view({-1, 4}), ShapeError);
  EXPECT_THROW(t.view({-2, 3}), ShapeError);
}

TEST(TensorView, ViewOfNonContiguousTensorWorksWhenStridesAllow) {
  // [4, 6] narrowed on dim 1 keeps rows apart; splitting each row is still a view.
  Tensor t = arange(0.0, 24.0).view({4, 6}).narrow(1, 0, 4);
  Tensor v = t.view({4, 2, 2});
  EXPECT_TRUE(shares_storage(t, v));
  EXPECT_EQ(v.select(0, 1).contiguous().to_vector<float>(), (std::vector<float>{6, 7, 8, 9}));
}

TEST(TensorView, RankZeroAndSingleElementViewsConvert) {
  Tensor s = scalar_tensor(4.0);
  EXPECT_EQ(s.view({1}).shape(), (Shape{1}));
  EXPECT_EQ(s.reshape({1, 1}).item(), 4.0);
  EXPECT_EQ(s.flatten().shape(), (Shape{1}));
  EXPECT_EQ(floats({5}).view({}).dim(), 0);
  EXPECT_EQ(s.unsqueeze(0).shape(), (Shape{1}));
}

TEST(TensorView, ReshapeIsAViewWhenTheLayoutAllows) {
  Tensor t = matrix_2x3();
  Tensor r = t.reshape({3, 2});
  EXPECT_TRUE(shares_storage(t, r));
  r.fill_(7);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>(6, 7)));
}

TEST(TensorView, ReshapeCopiesWhenTheLayoutForbidsAView) {
  Tensor t = matrix_2x3();
  Tensor r = t.t().reshape({6});
  EXPECT_FALSE(shares_storage(t, r));
  EXPECT_EQ(r.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  r.fill_(7);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
}

TEST(TensorView, TransposeSwapsDimsAndSharesStorage) {
  Tensor t = arange(0.0, 24.0).view({2, 3, 4});
  Tensor tr = t.transpose(0, 2);
  EXPECT_EQ(tr.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(tr.strides(), (Shape{1, 4, 12}));
  EXPECT_TRUE(shares_storage(t, tr));
  EXPECT_EQ(tr.select(0, 1).select(0, 2).to_vector<float>(), (std::vector<float>{9, 21}));
  EXPECT_EQ(t.transpose(-1, 0).shape(), (Shape{4, 3, 2}));
  EXPECT_THROW(t.transpose(0, 3), ShapeError);
}

TEST(TensorView, TTransposesAMatrix) {
  Tensor m = matrix_2x3();
  Tensor mt = m.t();
  EXPECT_EQ(mt.shape(), (Shape{3, 2}));
  EXPECT_EQ(mt.contiguous().to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_TRUE(shares_storage(m, mt));
  EXPECT_EQ(floats({1, 2}).t().shape(), (Shape{2}));
  std::string msg = error_of<ShapeError>([] { zeros({2, 2, 2}).t(); });
  EXPECT_TRUE(contains(msg, "[2, 2, 2]")) << msg;
}

TEST(TensorView, PermuteReordersDims) {
  Tensor t = arange(0.0, 24.0).view({2, 3, 4});
  Tensor p = t.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.strides(), (Shape{1, 12, 4}));
  EXPECT_TRUE(shares_storage(t, p));
  // p[3][1][2] == t[1][2][3] == 23.
  EXPECT_EQ(p.select(0, 3).select(0, 1).select(0, 2).item(), 23.0);
  EXPECT_EQ(t.permute({-1, 0, 1}).shape(), (Shape{4, 2, 3}));
}

TEST(TensorView, PermuteRejectsARepeatedDimAndWrongCount) {
  Tensor t = zeros({2, 3, 4});
  std::string msg = error_of<ShapeError>([&] { t.permute({0, 1, 1}); });
  EXPECT_TRUE(contains(msg, "permute")) << msg;
  EXPECT_TRUE(contains(msg, "repeat")) << msg;
  EXPECT_THROW(t.permute({0, 1}), ShapeError);
  EXPECT_THROW(t.permute({0, -1, 2}), ShapeError) << "-1 is dimension 2, already used";
}

TEST(TensorView, NarrowPicksARangeAndSharesStorage) {
  Tensor t = matrix_2x3();
  Tensor n = t.narrow(1, 1, 2);
  EXPECT_EQ(n.shape(), (Shape{2, 2}));
  EXPECT_EQ(n.offset(), 1);
  EXPECT_EQ(n.contiguous().to_vector<float>(), (std::vector<float>{1, 2, 4, 5}));
  n.fill_(0);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 0, 0, 3, 0, 0}));
  EXPECT_EQ(t.narrow(1, -1, 1).contiguous().to_vector<float>(), (std::vector<float>{0, 0}));
  std::string msg = error_of<ShapeError>([&] { t.narrow(1, 2, 2); });
  EXPECT_TRUE(contains(msg, "narrow")) << msg;
  EXPECT_TRUE(contains(msg, "size 3")) << msg;
}

TEST(TensorView, SliceTakesEveryStepthElement) {
  Tensor t = arange(0.0, 10.0);
  Tensor s = t.slice(0, 1, 8, 3);
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{1, 4, 7}));
  EXPECT_EQ(s.strides(), (Shape{3}));
  EXPECT_TRUE(shares_storage(t, s));
  EXPECT_EQ(t.slice(0, -3, 100).to_vector<float>(), (std::vector<float>{7, 8, 9}));
  EXPECT_EQ(t.slice(0, 5, 2).numel(), 0);
  EXPECT_EQ(t.slice(0, 0, 10, 4).to_vector<float>(), (std::vector<float>{0, 4, 8}));
  s.fill_(-1);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, -1, 2, 3, -1, 5, 6, -1, 8, 9}));
  EXPECT_THROW(t.slice(0, 0, 5, 0), Error);
}

TEST(TensorView, SelectDropsTheDim) {
  Tensor t = matrix_2x3();
  Tensor col = t.select(1, 2);
  EXPECT_EQ(col.shape(), (Shape{2}));
  EXPECT_EQ(col.to_vector<float>(), (std::vector<float>{2, 5}));
  EXPECT_EQ(t.select(0, -1).to_vector<float>(), (std::vector<float>{3, 4, 5}));
  EXPECT_TRUE(shares_storage(t, col));
  col.fill_(9);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 1, 9, 3, 4, 9}));
  std::string msg = error_of<ShapeError>([&] { t.select(0, 2); });
  EXPECT_TRUE(contains(msg, "select")) << msg;
}

TEST(TensorView, SqueezeAndUnsqueezeEditSizeOneDims) {
  Tensor t = zeros({1, 3, 1, 2});
  EXPECT_EQ(t.squeeze().shape(), (Shape{3, 2}));
  EXPECT_EQ(t.squeeze(2).shape(), (Shape{1, 3, 2}));
  EXPECT_EQ(t.squeeze(1).shape(), (Shape{1, 3, 1, 2})) << "a dim of size 3 stays";
  EXPECT_EQ(t.squeeze(-4).shape(), (Shape{3, 1, 2}));
  Tensor m = matrix_2x3();
  Tensor u = m.unsqueeze(1);
  EXPECT_EQ(u.shape(), (Shape{2, 1, 3}));
  EXPECT_EQ(m.unsqueeze(-1).shape(), (Shape{2, 3, 1}));
  EXPECT_EQ(m.unsqueeze(0).shape(), (Shape{1, 2, 3}));
  EXPECT_TRUE(shares_storage(m, u));
  EXPECT_TRUE(shares_storage(m, m.unsqueeze(2).squeeze()));
  EXPECT_EQ(u.to_vector<float>(), m.to_vector<float>());
  EXPECT_THROW(m.unsqueeze(3), ShapeError);
}

TEST(TensorView, ExpandBroadcastsWithZeroStride) {
  Tensor row = floats({1, 2, 3});
  Tensor e = row.expand({2, 3});
  EXPECT_EQ(e.shape(), (Shape{2, 3}));
  EXPECT_EQ(e.strides(), (Shape{0, 1}));
  EXPECT_TRUE(shares_storage(row, e));
  EXPECT_EQ(e.contiguous().to_vector<float>(), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  row.fill_(4);
  EXPECT_EQ(e.contiguous().to_vector<float>(), (std::vector<float>(6, 4)));
  Tensor col = floats({1, 2}, {2, 1});
  EXPECT_EQ(col.expand({-1, 3}).contiguous().to_vector<float>(),
            (std::vector<float>{1, 1, 1, 2, 2, 2}));
}

TEST(TensorView, ExpandRejectsChangingANonSingletonDim) {
  std::string msg = error_of<ShapeError>([] { floats({1, 2, 3}).expand({2, 4}); });
  EXPECT_TRUE(contains(msg, "expand")) << msg;
  EXPECT_TRUE(contains(msg, "[2, 4]")) << msg;
  EXPECT_THROW(floats({1, 2, 3}).expand({3, 1}), ShapeError);
  EXPECT_THROW(zeros({2, 3}).expand({3}), ShapeError);
  EXPECT_THROW(floats({1}).expand({-1, 3}), ShapeError);
  EXPECT_THROW(floats({1}).expand({-5}), ShapeError);
}

TEST(TensorView, FlattenMergesARangeOfDims) {
  Tensor t = arange(0.0, 24.0).view({2, 3, 4});
  EXPECT_EQ(t.flatten().shape(), (Shape{24}));
  EXPECT_EQ(t.flatten(1).shape(), (Shape{2, 12}));
  EXPECT_EQ(t.flatten(0, 1).shape(), (Shape{6, 4}));
  EXPECT_TRUE(shares_storage(t, t.flatten(1)));
  Tensor nc = t.transpose(0, 2).flatten();
  EXPECT_FALSE(shares_storage(t, nc)) << "a transposed tensor cannot flatten in place";
  EXPECT_EQ(nc.to_vector<float>()[1], 12.0f);
  EXPECT_THROW(t.flatten(2, 1), ShapeError);
}

TEST(TensorView, ContiguousReturnsTheSameHandleWhenAlreadyContiguous) {
  Tensor t = matrix_2x3();
  EXPECT_TRUE(t.contiguous().is_same(t));
  Tensor tt = t.t();
  Tensor c = tt.contiguous();
  EXPECT_FALSE(c.is_same(tt));
  EXPECT_FALSE(shares_storage(c, t));
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(c.strides(), (Shape{2, 1}));
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
}

TEST(TensorView, CloneCopiesIntoFreshStorage) {
  Tensor t = matrix_2x3();
  Tensor c = t.clone();
  EXPECT_FALSE(shares_storage(t, c));
  EXPECT_EQ(c.to_vector<float>(), t.to_vector<float>());
  c.fill_(1);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  Tensor s = t.slice(1, 0, 3, 2).clone();
  EXPECT_TRUE(s.is_contiguous());
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{0, 2, 3, 5}));
}

// --- conversion -------------------------------------------------------------------------------

TEST(TensorConversion, ToConvertsBetweenEveryDtypePair) {
  const DType all[] = {kFloat32, kFloat64, kInt32, kInt64, kUInt8, kBool};
  const std::vector<double> values = {0, 1, 2, 5};
  for (DType from : all) {
    Tensor src = Tensor::from_vector(values, {4}).to(from);
    ASSERT_EQ(src.dtype(), from);
    for (DType to : all) {
      Tensor dst = src.to(to);
      ASSERT_EQ(dst.dtype(), to);
      std::vector<double> expected = values;
      if (from == kBool || to == kBool) expected = {0, 1, 1, 1};
      EXPECT_EQ(dst.to(kFloat64).to_vector<double>(), expected)
          << dtype_name(from) << " -> " << dtype_name(to);
    }
  }
}

TEST(TensorConversion, FloatToIntegerTruncatesTowardZero) {
  Tensor f = floats({2.7f, -2.7f, 0.5f, -0.5f});
  EXPECT_EQ(f.to(kInt64).to_vector<int64_t>(), (std::vector<int64_t>{2, -2, 0, 0}));
  EXPECT_EQ(f.to(kInt32).to_vector<int32_t>(), (std::vector<int32_t>{2, -2, 0, 0}));
  EXPECT_EQ(floats({255.9f, 3.2f}).to(kUInt8).to_vector<uint8_t>(),
            (std::vector<uint8_t>{255, 3}));
}

TEST(TensorConversion, ToBoolMarksNonZeroElements) {
  Tensor b = floats({0.0f, -0.5f, 3.0f, 1e-30f}).to(kBool);
  EXPECT_EQ(b.to(kUInt8).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1, 1, 1}));
  EXPECT_FALSE(b.select(0, 0).item<bool>());
  EXPECT_TRUE(b.select(0, 1).item<bool>());
}

TEST(TensorConversion, ToTheSameDtypeOrTheCpuIsIdentity) {
  Tensor t = matrix_2x3();
  EXPECT_TRUE(t.to(kFloat32).is_same(t));
  EXPECT_TRUE(t.to(Device::cpu()).is_same(t));
  EXPECT_TRUE(t.cpu().is_same(t));
}

TEST(TensorConversion, ToDtypeOfANonContiguousViewKeepsLogicalOrder) {
  Tensor t = matrix_2x3().t().to(kInt64);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.to_vector<int64_t>(), (std::vector<int64_t>{0, 3, 1, 4, 2, 5}));
}

TEST(TensorConversion, ItemReturnsTheSingleElement) {
  EXPECT_EQ(floats({2.5f}).item(), 2.5);
  EXPECT_EQ(floats({2.5f}, {1, 1}).item<float>(), 2.5f);
  EXPECT_EQ(scalar_tensor(-7, {.dtype = kInt64}).item(), -7.0);
  EXPECT_EQ(scalar_tensor(-7, {.dtype = kInt64}).item<int64_t>(), -7);
  EXPECT_EQ(scalar_tensor(3.75, {.dtype = kFloat64}).item<double>(), 3.75);
  EXPECT_EQ(scalar_tensor(3.75).item<int32_t>(), 3);
  EXPECT_TRUE(scalar_tensor(1, {.dtype = kBool}).item<bool>());
  EXPECT_EQ(matrix_2x3().select(1, 2).select(0, 1).item(), 5.0);
}

TEST(TensorConversion, ItemOnSeveralElementsIsShapeError) {
  std::string msg = error_of<ShapeError>([] { matrix_2x3().item(); });
  EXPECT_TRUE(contains(msg, "item")) << msg;
  EXPECT_TRUE(contains(msg, "6 elements")) << msg;
  EXPECT_THROW(matrix_2x3().item<float>(), ShapeError);
  EXPECT_THROW(zeros({0}).item(), ShapeError);
}

TEST(TensorConversion, ToVectorWithTheWrongTypeIsDTypeError) {
  std::string msg = error_of<DTypeError>([] { matrix_2x3().to_vector<double>(); });
  EXPECT_TRUE(contains(msg, "float64")) << msg;
  EXPECT_TRUE(contains(msg, "float32")) << msg;
  EXPECT_THROW(matrix_2x3().data<int32_t>(), DTypeError);
}

TEST(TensorConversion, MovingToAMissingGpuIsDeviceError) {
  if (cuda::is_available()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_THROW(matrix_2x3().cuda(), DeviceError);
  // A hand-built cuda:0 reaches the copy stream's device check.
  std::string msg = error_of<DeviceError>(
      [] { matrix_2x3().to(Device(DeviceType::CUDA, 0), /*non_blocking=*/true); });
  EXPECT_TRUE(contains(msg, cuda::unavailable_reason())) << msg;
}

TEST(TensorConversion, NonBlockingMoveToTheCpuIsThePlainOne) {
  // Only host-to-GPU copies can be left running; on the CPU there is nothing to defer.
  Tensor t = matrix_2x3();
  EXPECT_TRUE(t.to(Device::cpu(), /*non_blocking=*/true).is_same(t));
  Tensor v = t.t();
  EXPECT_TRUE(v.to(Device::cpu(), /*non_blocking=*/true).is_same(v));
  EXPECT_EQ(v.to(Device::cpu(), true).contiguous().to_vector<float>(),
            (std::vector<float>{0, 3, 1, 4, 2, 5}));
}

// --- pinned memory -------------------------------------------------------------------------

TEST(TensorPinnedMemory, PinMemoryCopiesIntoThePinnedPool) {
  const int64_t allocs = memory::pinned_stats().num_allocs;
  Tensor t = matrix_2x3().t();
  Tensor p = t.pin_memory();
  EXPECT_EQ(memory::pinned_stats().num_allocs, allocs + 1);
  EXPECT_TRUE(p.device().is_cpu());
  EXPECT_TRUE(p.is_contiguous());
  EXPECT_EQ(p.shape(), (Shape{3, 2}));
  EXPECT_NE(p.data_ptr(), t.data_ptr());
  EXPECT_EQ(p.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  // pinned_is_page_locked throws for memory the pool did not hand out.
  EXPECT_EQ(memory::pinned_is_page_locked(p.data_ptr()), cuda::is_available());
  Tensor e = empty({4}, {.dtype = kInt64, .pinned_memory = true});
  EXPECT_EQ(memory::pinned_stats().num_allocs, allocs + 2);
  e.fill_(3);
  EXPECT_EQ(e.to_vector<int64_t>(), (std::vector<int64_t>{3, 3, 3, 3}));
}

TEST(TensorPinnedMemory, WithoutAGpuPinnedMemoryIsOrdinaryHostMemory) {
  // PyTorch refuses pin_memory() without CUDA; ember hands out the pinned pool's fallback
  // instead, so that code written for a GPU (a DataLoader with pin_memory) runs unchanged.
  if (cuda::is_available()) GTEST_SKIP() << "a CUDA device is present";
  Tensor p = floats({1, 2, 3}).pin_memory();
  EXPECT_FALSE(memory::pinned_is_page_locked(p.data_ptr()));
  EXPECT_GE(memory::pinned_stats().unpinned_allocs, 1);
  EXPECT_EQ(p.to_vector<float>(), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(add(p, 1.0).to_vector<float>(), (std::vector<float>{2, 3, 4}));
}

TEST(TensorPinnedMemory, OnlyHostMemoryCanBePinned) {
  std::string msg = error_of<DeviceError>(
      [] { empty({2}, {.device = Device(DeviceType::CUDA, 0), .pinned_memory = true}); });
  EXPECT_TRUE(contains(msg, "pinned")) << msg;
  EXPECT_TRUE(contains(msg, "cuda:0")) << msg;
}

TEST(TensorPinnedMemory, PinMemoryPassesGradientsThrough) {
  Tensor x = floats({1, 2});
  x.requires_grad_();
  sum(mul(x.pin_memory(), 3.0)).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{3, 3}));
}

// --- in-place ----------------------------------------------------------------------------------

TEST(TensorInPlace, FillAndZeroWriteEveryElement) {
  Tensor t = matrix_2x3();
  t.fill_(3);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>(6, 3)));
  t.zero_();
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>(6, 0)));
  Tensor i = zeros({3}, {.dtype = kInt32}).fill_(2.9);
  EXPECT_EQ(i.to_vector<int32_t>(), (std::vector<int32_t>{2, 2, 2}));
}

TEST(TensorInPlace, FillOfANonContiguousViewTouchesOnlyTheView) {
  Tensor t = zeros({3, 3});
  t.t().narrow(0, 1, 1).fill_(5);  // column 1
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 5, 0, 0, 5, 0, 0, 5, 0}));
}

TEST(TensorInPlace, CopyIntoATransposedView) {
  Tensor dst = zeros({2, 3});
  dst.t().copy_(floats({0, 1, 2, 3, 4, 5}, {3, 2}));
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{0, 2, 4, 1, 3, 5}));
}

TEST(TensorInPlace, CopyIntoANarrowedView) {
  Tensor dst = zeros({2, 4});
  dst.narrow(1, 1, 2).copy_(floats({1, 2, 3, 4}, {2, 2}));
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{0, 1, 2, 0, 0, 3, 4, 0}));
}

TEST(TensorInPlace, CopyBroadcastsTheSource) {
  Tensor dst = zeros({2, 3});
  dst.copy_(floats({1, 2, 3}));
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  dst.copy_(scalar_tensor(8));
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>(6, 8)));
  std::string msg = error_of<ShapeError>([&] { dst.copy_(zeros({4})); });
  EXPECT_TRUE(contains(msg, "copy_")) << msg;
  EXPECT_THROW(floats({1, 2, 3}).copy_(zeros({2, 3})), ShapeError)
      << "the destination never grows";
}

TEST(TensorInPlace, CopyConvertsTheDtype) {
  Tensor dst = zeros({3}, {.dtype = kFloat64});
  dst.copy_(arange(3));
  EXPECT_EQ(dst.to_vector<double>(), (std::vector<double>{0, 1, 2}));
  Tensor idst = zeros({2}, {.dtype = kInt32});
  idst.copy_(floats({1.9f, -1.9f}));
  EXPECT_EQ(idst.to_vector<int32_t>(), (std::vector<int32_t>{1, -1}));
  Tensor strided = zeros({2, 2}, {.dtype = kInt64});
  strided.t().copy_(floats({1, 2, 3, 4}, {2, 2}));
  EXPECT_EQ(strided.to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 2, 4}));
}

TEST(TensorInPlace, CopyFromAnOverlappingViewReadsTheSourceFirst) {
  Tensor t = arange(0.0, 5.0);
  t.narrow(0, 1, 4).copy_(t.narrow(0, 0, 4));
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 0, 1, 2, 3}));
  Tensor m = floats({1, 2, 3, 4}, {2, 2});
  m.t().copy_(m);
  EXPECT_EQ(m.to_vector<float>(), (std::vector<float>{1, 3, 2, 4}));
}

TEST(TensorInPlace, AddAndMulUpdateInPlace) {
  Tensor t = matrix_2x3();
  const void* p = t.data_ptr();
  t.add_(floats({1, 1, 1}), 2.0);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{2, 3, 4, 5, 6, 7}));
  t.mul_(0.5);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 1.5, 2, 2.5, 3, 3.5}));
  t.add_(t);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(t.data_ptr(), p) << "in-place ops keep the storage";
  Tensor view = t.t();
  view.add_(ones({3, 2}));
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{3, 4, 5, 6, 7, 8}));
}

TEST(TensorInPlace, InPlaceOpsBumpTheVersionSharedByViews) {
  Tensor t = zeros({4});
  Tensor v = t.narrow(0, 0, 2);
  const uint64_t before = t.version();
  v.fill_(1);
  EXPECT_GT(t.version(), before);
  EXPECT_EQ(t.version(), v.version());
}

// --- printing ------------------------------------------------------------------------------

TEST(TensorPrint, IntegerValuedFloatMatrixPrintsLikePyTorch) {
  EXPECT_EQ(floats({1, 2, 3, 4}, {2, 2}).str(), "tensor([[1., 2.],\n        [3., 4.]])");
}

TEST(TensorPrint, ElementsArePaddedToOneWidth) {
  EXPECT_EQ(floats({1, 10, -100}).str(), "tensor([   1.,   10., -100.])");
  EXPECT_EQ(floats({1.5f, -2.25f, 0}).str(), "tensor([ 1.5000, -2.2500,  0.0000])");
}

TEST(TensorPrint, FractionalFloatsGetFourDecimals) {
  EXPECT_EQ(floats({0.5f, 0.125f, 3.0f}).str(), "tensor([0.5000, 0.1250, 3.0000])");
}

TEST(TensorPrint, Int64PrintsWithoutDtype) {
  EXPECT_EQ(arange(4).str(), "tensor([0, 1, 2, 3])");
  EXPECT_EQ(Tensor::from_vector(std::vector<int64_t>{-5, 12}, {2}).str(), "tensor([-5, 12])");
}

TEST(TensorPrint, OtherDtypesAreNamed) {
  EXPECT_EQ(Tensor::from_vector(std::vector<double>{1.5, 2}, {2}).str(),
            "tensor([1.5000, 2.0000], dtype=float64)");
  EXPECT_EQ(Tensor::from_vector(std::vector<int32_t>{1, 2}, {2}).str(),
            "tensor([1, 2], dtype=int32)");
  EXPECT_EQ(Tensor::from_vector(std::vector<uint8_t>{0, 255}, {2}).str(),
            "tensor([  0, 255], dtype=uint8)");
}

TEST(TensorPrint, BoolPrintsTrueAndFalse) {
  Tensor b = Tensor::from_vector(std::vector<uint8_t>{1, 0}, {2}).to(kBool);
  EXPECT_EQ(b.str(), "tensor([ True, False])");
  EXPECT_EQ(scalar_tensor(1, {.dtype = kBool}).str(), "tensor(True)");
}

TEST(TensorPrint, RankZeroPrintsTheBareValue) {
  EXPECT_EQ(scalar_tensor(3.5).str(), "tensor(3.5000)");
  EXPECT_EQ(scalar_tensor(2).str(), "tensor(2.)");
  EXPECT_EQ(scalar_tensor(7, {.dtype = kInt64}).str(), "tensor(7)");
}

TEST(TensorPrint, EmptyTensorsShowTheirSize) {
  EXPECT_EQ(zeros({0}).str(), "tensor([])");
  EXPECT_EQ(zeros({0, 3}).str(), "tensor([], size=(0, 3))");
  EXPECT_EQ(zeros({3, 0}).str(), "tensor([], size=(3, 0))");
  // With no element to tell, the dtype is shown for anything but float32.
  EXPECT_EQ(arange(0).str(), "tensor([], dtype=int64)");
}

TEST(TensorPrint, RequiresGradLeafSaysSo) {
  Tensor x = floats({1, 2});
  x.requires_grad_();
  EXPECT_EQ(x.str(), "tensor([1., 2.], requires_grad=True)");
}

TEST(TensorPrint, OpOutputNamesItsGradFn) {
  Tensor x = floats({1, 2});
  x.requires_grad_();
  EXPECT_EQ(mul(x, 2.0).str(), "tensor([2., 4.], grad_fn=<MulBackward>)");
  EXPECT_EQ(x.view({2, 1}).str(), "tensor([[1.],\n        [2.]], grad_fn=<ViewBackward>)");
}

TEST(TensorPrint, NonFiniteValuesDoNotWidenTheColumns) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(floats({1, nan}).str(), "tensor([1., nan])");
  EXPECT_EQ(floats({1.5f, -inf}).str(), "tensor([1.5000,   -inf])");
}

TEST(TensorPrint, WideRangesSwitchToScientificNotation) {
  EXPECT_EQ(floats({1e-5f, 1.0f}).str(), "tensor([1.0000e-05, 1.0000e+00])");
  EXPECT_EQ(floats({1.0f, 10000.0f}).str(), "tensor([1.0000e+00, 1.0000e+04])");
  EXPECT_EQ(floats({1e9f}).str(), "tensor([1.0000e+09])");
  EXPECT_EQ(floats({1e8f}).str(), "tensor([100000000.])");
}

TEST(TensorPrint, LongRowsWrapAtEightyColumns) {
  EXPECT_EQ(arange(0.0, 30.0).str(),
            "tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12., 13.,\n"
            "        14., 15., 16., 17., 18., 19., 20., 21., 22., 23., 24., 25., 26., 27.,\n"
            "        28., 29.])");
}

TEST(TensorPrint, LargeTensorsAreSummarized) {
  EXPECT_EQ(arange(2000).str(), "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])");
  EXPECT_EQ(arange(2000).view({1000, 2}).str(),
            "tensor([[   0,    1],\n"
            "        [   2,    3],\n"
            "        [   4,    5],\n"
            "        ...,\n"
            "        [1994, 1995],\n"
            "        [1996, 1997],\n"
            "        [1998, 1999]])");
  // Only the shown elements decide the width.
  Tensor t = zeros({1001});
  t.narrow(0, 500, 1).fill_(123456);
  EXPECT_EQ(t.str(), "tensor([0., 0., 0.,  ..., 0., 0., 0.])");
}

TEST(TensorPrint, ThreeDimensionalTensorsSeparateBlocksWithABlankLine) {
  EXPECT_EQ(arange(8).view({2, 2, 2}).str(),
            "tensor([[[0, 1],\n"
            "         [2, 3]],\n"
            "\n"
            "        [[4, 5],\n"
            "         [6, 7]]])");
}

TEST(TensorPrint, StreamOperatorMatchesStr) {
  std::ostringstream os;
  os << arange(3);
  EXPECT_EQ(os.str(), arange(3).str());
  std::ostringstream undefined;
  undefined << Tensor();
  EXPECT_EQ(undefined.str(), "tensor(undefined)");
}

// --- on a GPU ----------------------------------------------------------------------------------

TEST(TensorCuda, MovingToTheGpuAndBackKeepsValues) {
  EMBER_SKIP_WITHOUT_GPU();
  Tensor g = matrix_2x3().to(Device::cuda());
  EXPECT_TRUE(g.is_cuda());
  EXPECT_EQ(g.device().str(), "cuda:0");
  EXPECT_EQ(g.to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(g.t().contiguous().cpu().to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(g.select(1, 2).select(0, 1).item(), 5.0);
  EXPECT_EQ(g.to(kInt64).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_THROW(g.to(kFloat64), DTypeError);
  EXPECT_EQ(floats({1, 2}).cuda().str(), "tensor([1., 2.], device='cuda:0')");
}

TEST(TensorCuda, CopyAndFillWriteStridedGpuViews) {
  EMBER_SKIP_WITHOUT_GPU();
  Tensor dst = zeros({2, 3}, {.device = Device::cuda()});
  dst.t().copy_(floats({0, 1, 2, 3, 4, 5}, {3, 2}));  // from the CPU, into a strided view
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{0, 2, 4, 1, 3, 5}));
  dst.narrow(1, 1, 1).fill_(-1);
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{0, -1, 4, 1, -1, 5}));
  dst.copy_(floats({7, 8, 9}).cuda());  // broadcast on the device
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{7, 8, 9, 7, 8, 9}));
}

TEST(TensorCuda, PinMemoryIsPageLockedAndAGpuTensorCannotBePinned) {
  EMBER_SKIP_WITHOUT_GPU();
  Tensor p = matrix_2x3().pin_memory();
  EXPECT_TRUE(memory::pinned_is_page_locked(p.data_ptr()));
  std::string msg = error_of<DeviceError>([] { matrix_2x3().cuda().pin_memory(); });
  EXPECT_TRUE(contains(msg, "pin_memory")) << msg;
}

TEST(TensorCuda, NonBlockingCopiesAreOrderedBeforeLaterOps) {
  EMBER_SKIP_WITHOUT_GPU();
  // Large enough that the copy is still running when mul is queued; the sources are
  // dropped at once (core keeps them until their copies complete).
  const int64_t n = 1 << 22;
  std::vector<float> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[static_cast<size_t>(i)] = static_cast<float>(i % 1000);
  for (bool pinned : {true, false}) {
    SCOPED_TRACE(pinned ? "pinned source" : "pageable source");
    Tensor g;
    {
      Tensor host = Tensor::from_vector(values, {n});
      if (pinned) host = host.pin_memory();
      g = host.to(Device::cuda(), /*non_blocking=*/true);
    }
    EXPECT_TRUE(g.is_cuda());
    EXPECT_EQ(g.shape(), (Shape{n}));
    const std::vector<float> got = mul(g, 2.0f).cpu().to_vector<float>();
    ASSERT_EQ(got.size(), values.size());
    for (int64_t i = 0; i < n; i += 4099) {
      ASSERT_EQ(got[static_cast<size_t>(i)], 2.0f * values[static_cast<size_t>(i)]) << i;
    }
  }
  // A strided source is made contiguous first; a GPU-to-host copy ignores non_blocking.
  Tensor g = matrix_2x3().t().to(Device::cuda(), true);
  EXPECT_EQ(g.cpu().to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(g.to(Device::cpu(), true).to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(zeros({0}).to(Device::cuda(), true).numel(), 0);
  EXPECT_THROW(zeros({2}, {.dtype = kFloat64}).to(Device::cuda(), true), DTypeError);
  // The copy is recorded for autograd like the blocking one.
  Tensor x = floats({1, 2});
  x.requires_grad_();
  sum(mul(x.to(Device::cuda(), true), 3.0)).backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{3, 3}));
}

TEST(TensorCuda, GradientsFlowBackAcrossADeviceMove) {
  EMBER_SKIP_WITHOUT_GPU();
  Tensor x = floats({1, 2});
  x.requires_grad_();
  sum(mul(x.cuda(), 3.0)).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_TRUE(x.grad().device().is_cpu());
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{3, 3}));
}

// --- device ------------------------------------------------------------------------------------

TEST(Device, ParsesCpu) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_TRUE(Device::parse("cpu").is_cpu());
  EXPECT_EQ(Device::cpu().str(), "cpu");
  EXPECT_EQ(Device(DeviceType::CUDA, 1).str(), "cuda:1");
}

TEST(Device, ParseRejectsMalformedSpecs) {
  std::string msg = error_of<DeviceError>([] { Device::parse("cuda:x"); });
  EXPECT_TRUE(contains(msg, "'cuda:x'")) << msg;
  EXPECT_TRUE(contains(msg, "cuda:N")) << msg;
  EXPECT_THROW(Device::parse("gpu"), DeviceError);
  EXPECT_THROW(Device::parse("cuda:"), DeviceError);
  EXPECT_THROW(Device::parse("cuda:-1"), DeviceError);
  EXPECT_THROW(Device::parse("cuda:99999999999999999999"), DeviceError);
}

TEST(Device, BestIsTheCpuWithoutAGpu) {
  if (cuda::is_available()) {
    EXPECT_EQ(Device::best(), Device(DeviceType::CUDA, 0));
  } else {
    EXPECT_EQ(Device::best(), Device::cpu());
    EXPECT_EQ(Device::parse("best"), Device::cpu());
  }
}

TEST(Device, CudaIsUnavailableWithAReason) {
  if (cuda::is_available()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_EQ(cuda::device_count(), 0);
  EXPECT_FALSE(cuda::unavailable_reason().empty());
  // synchronize() is a no-op, not an error, without a GPU.
  EXPECT_NO_THROW(cuda::synchronize());
}

#if EMBER_WITH_CUDA
TEST(Device, MissingDriverIsToldApartFromAnOldOne) {
  if (cuda::is_available()) GTEST_SKIP() << "a CUDA device is present";
  void* driver = dlopen("libcuda.so.1", RTLD_LAZY);
  if (driver != nullptr) {
    dlclose(driver);
    GTEST_SKIP() << "an NVIDIA driver is installed: " << cuda::unavailable_reason();
  }
  EXPECT_EQ(cuda::unavailable_reason(), "no NVIDIA driver found (libcuda.so.1 is not installed)");
}
#else
TEST(Device, ABuildWithoutCudaSaysSoAndHasNoGpu) {
  EXPECT_FALSE(cuda::is_available());
  EXPECT_EQ(cuda::unavailable_reason(), "ember was built without CUDA (EMBER_CUDA=OFF)");
  EXPECT_EQ(cuda::driver_version(), "");
  EXPECT_THROW(cuda::get_device_properties(0), DeviceError);
  EXPECT_THROW(cuda::memory_stats(0), DeviceError);
  EXPECT_NO_THROW(cuda::empty_cache());
}
#endif

TEST(Device, CudaDeviceThrowsDeviceErrorWithoutAGpu) {
  if (cuda::is_available()) GTEST_SKIP() << "a CUDA device is present";
  std::string msg = error_of<DeviceError>([] { Device::cuda(0); });
  EXPECT_TRUE(contains(msg, "Device::cuda(0)")) << msg;
  EXPECT_TRUE(contains(msg, cuda::unavailable_reason())) << msg;
  EXPECT_THROW(Device::parse("cuda"), DeviceError);
  EXPECT_THROW(Device::parse("cuda:0"), DeviceError);
  // A hand-built cuda:0 reaches the allocator, which refuses it with the same reason.
  msg = error_of<DeviceError>([] { zeros({2}, {.device = Device(DeviceType::CUDA, 0)}); });
  EXPECT_TRUE(contains(msg, cuda::unavailable_reason())) << msg;
}

TEST(Device, CudaDeviceRejectsAnIndexPastTheLastGpu) {
  EMBER_SKIP_WITHOUT_GPU();
  EXPECT_EQ(Device::cuda(0), Device(DeviceType::CUDA, 0));
  std::string msg = error_of<DeviceError>([] { Device::cuda(cuda::device_count()); });
  EXPECT_TRUE(contains(msg, "CUDA device(s)")) << msg;
}

}  // namespace
