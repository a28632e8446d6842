// cuBLASLt GEMM (kernels/cublas/gemm_lt.h): row-major C = op(A) op(B) mapped onto the
// column-major C^T = op(B)^T op(A)^T as in kernels/cublas/gemm.cpp, with the matmul
// descriptor, the three layouts and the heuristic's algorithm cached per shape.
#include "ember/kernels/cublas/gemm_lt.h"

#include <cuda_runtime_api.h>

#include <array>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>
#include <unordered_map>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/core/base/half.h"
#include "ember/kernels/cudnn/plan_cache.h"
#include "ember/kernels/lru_cache.h"

namespace ember::kernels::cublas {
namespace {

template <typename T>
constexpr cudaDataType_t kCudaType = std::is_same_v<T, Half>       ? CUDA_R_16F
                                     : std::is_same_v<T, BFloat16> ? CUDA_R_16BF
                                                                   : CUDA_R_32F;

// float32 with TF32 tensor cores or in full float32; the 16-bit types accumulate in float.
template <typename T>
cublasComputeType_t compute_type(bool allow_tf32) {
  return std::is_same_v<T, float> && allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                : CUBLAS_COMPUTE_32F;
}

// The largest power of two up to 256 (cuBLASLt's default assumption) dividing the address.
uint32_t alignment(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

// One cuBLASLt handle per thread and device, created on first use and kept for the
// process (as the cuDNN caches are: Note [cuDNN caches are never destroyed]).
cublasLtHandle_t lt_handle(int device) {
  thread_local std::unordered_map<int, cublasLtHandle_t> handles;
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  cublasLtHandle_t h = nullptr;
  EMBER_CUBLAS_CHECK(cublasLtCreate(&h));
  handles.emplace(device, h);
  return h;
}

// device, dtype, compute, trans_a, trans_b, m, n, k, lda, ldb, ldc, stride_a, stride_b,
// stride_c, batch, epilogue, workspace bytes, the alignments of A, B and C, aux_ld.
using Key = std::array<int64_t, 21>;

struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 0;
    for (int64_t v : k) cudnn::hash_mix(h, v);
    return h;
  }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;  // false: the heuristic had none for this epilogue (cached too)
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

struct Cache {
  std::mutex mu;
  LruCache<Key, Plan, KeyHash> plans{cudnn::kPlanCacheCapacity};
};

// See Note [cuDNN caches are never destroyed] in kernels/cudnn/plan_cache.h.
Cache& cache() {
  static auto* c = new Cache();
  return *c;
}

cublasLtEpilogue_t lt_epilogue(LtEpilogue e) {
  switch (e) {
    case LtEpilogue::kNone: return CUBLASLT_EPILOGUE_DEFAULT;
    case LtEpilogue::kBias: return CUBLASLT_EPILOGUE_BIAS;
    case LtEpilogue::kBiasRelu: return CUBLASLT_EPILOGUE_RELU_BIAS;
    case LtEpilogue::kBiasGelu: return CUBLASLT_EPILOGUE_GELU_BIAS;
    case LtEpilogue::kBiasGeluAux: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    case LtEpilogue::kBiasGradA: return CUBLASLT_EPILOGUE_BGRADB;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

void set_layout_batch(cublasLtMatrixLayout_t layout, int32_t batch, int64_t stride) {
  if (batch == 1) return;
  EMBER_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
      layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch)));
  EMBER_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
      layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
}

template <typename T>
std::shared_ptr<Plan> make_plan(cublasLtHandle_t lt, bool trans_a, bool trans_b, int64_t m,
                                int64_t n, int64_t k, int64_t lda, int64_t stride_a,
                                int64_t ldb, int64_t stride_b, int64_t ldc, int64_t stride_c,
                                int32_t batch, const LtOptions<T>& o,
                                const std::array<uint32_t, 3>& align) {
  const LtEpilogue epilogue = o.epilogue;
  auto plan = std::make_shared<Plan>();
  const cudaDataType_t type = kCudaType<T>;
  EMBER_CUBLAS_CHECK(
      cublasLtMatmulDescCreate(&plan->desc, compute_type<T>(o.allow_tf32), CUDA_R_32F));
  // Column-major: Lt's A is our B and Lt's B is our A (see the file comment).
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                    &op_first, sizeof(op_first)));
  EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                    &op_second, sizeof(op_second)));
  const cublasLtEpilogue_t epi = lt_epilogue(epilogue);
  EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                    &epi, sizeof(epi)));
  if (epilogue != LtEpilogue::kNone) {
    EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &type, sizeof(type)));
  }
  if (epilogue == LtEpilogue::kBiasGeluAux) {
    const int64_t aux_ld = o.aux_ld;
    EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof(aux_ld)));
  }
  // Stored shapes in column-major terms: B^T is [b_rows, b_cols] with leading dim ldb.
  const uint64_t b_rows = static_cast<uint64_t>(trans_b ? k : n);
  const uint64_t b_cols = static_cast<uint64_t>(trans_b ? n : k);
  const uint64_t a_rows = static_cast<uint64_t>(trans_a ? m : k);
  const uint64_t a_cols = static_cast<uint64_t>(trans_a ? k : m);
  EMBER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, type, b_rows, b_cols, ldb));
  EMBER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, type, a_rows, a_cols, lda));
  EMBER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, type, static_cast<uint64_t>(n),
                                                static_cast<uint64_t>(m), ldc));
  set_layout_batch(plan->a, batch, stride_b);
  set_layout_batch(plan->b, batch, stride_a);
  set_layout_batch(plan->c, batch, stride_c);

  cublasLtMatmulPreference_t pref = nullptr;
  EMBER_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = o.workspace_bytes;
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  const cublasStatus_t status = [&] {
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    // Lt's A is our B and Lt's B our A (see the file comment); C and D are both c.
    const std::array<std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t>, 4> aligns{{
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align[1]},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align[0]},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align[2]},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align[2]},
    }};
    for (const auto& [attr, value] : aligns) {
      if (st != CUBLAS_STATUS_SUCCESS) return st;
      st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value));
    }
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    return cublasLtMatmulAlgoGetHeuristic(lt, plan->desc, plan->a, plan->b, plan->c, plan->c,
                                          pref, 1, &result, &returned);
  }();
  cublasLtMatmulPreferenceDestroy(pref);
  // An epilogue cuBLASLt cannot fuse for this case is not an error: the caller composes the
  // op. (The heuristic answers NOT_SUPPORTED or zero results for it.)
  if (epilogue != LtEpilogue::kNone &&
      (status == CUBLAS_STATUS_NOT_SUPPORTED || (status == CUBLAS_STATUS_SUCCESS && returned == 0))) {
    return plan;
  }
  EMBER_CUBLAS_CHECK(status);
  EMBER_CHECK_T(CudaError, returned > 0, "gemm (cuBLASLt): no algorithm for [", m, ", ", k,
                "] x [", k, ", ", n, "] (batch ", batch, ") with ", o.workspace_bytes,
                " bytes of workspace");
  plan->algo = result.algo;
  plan->has_algo = true;
  return plan;
}

int64_t checked_int(int64_t v, const char* what) {
  EMBER_CHECK(v >= 0 && v <= std::numeric_limits<int32_t>::max(), "gemm (cuBLASLt): ", what,
              " = ", v, " does not fit in int32");
  return v;
}

}  // namespace

template <typename T>
bool gemm_lt(cublasHandle_t handle, bool trans_a, bool trans_b, int64_t m, int64_t n,
             int64_t k, float alpha, const T* a, int64_t lda, int64_t stride_a, const T* b,
             int64_t ldb, int64_t stride_b, float beta, T* c, int64_t ldc, int64_t stride_c,
             int64_t batch, const LtOptions<T>& o) {
  EMBER_CHECK(m > 0 && n > 0 && k > 0 && batch > 0, "gemm (cuBLASLt): sizes must be positive "
              "(m = ", m, ", n = ", n, ", k = ", k, ", batch = ", batch,
              "); empty and k == 0 products are handled by the caller");
  const LtEpilogue epilogue = o.epilogue;
  EMBER_CHECK(epilogue == LtEpilogue::kNone || (o.bias != nullptr && batch == 1),
              "gemm (cuBLASLt): an epilogue needs a bias vector and batch == 1");
  EMBER_CHECK(epilogue != LtEpilogue::kBiasGeluAux ||
                  (o.aux != nullptr && o.aux_ld >= n && o.aux_ld % 8 == 0),
              "gemm (cuBLASLt): the GELU epilogue's aux output needs a pointer and a row "
              "stride >= n that is a multiple of 8 (aux_ld = ", o.aux_ld, ", n = ", n, ")");
  EMBER_CHECK(ldc >= n && lda >= (trans_a ? m : k) && ldb >= (trans_b ? k : n),
              "gemm (cuBLASLt): leading dimensions lda = ", lda, ", ldb = ", ldb, ", ldc = ",
              ldc, " are too small for m = ", m, ", n = ", n, ", k = ", k);
  // The epilogue's vectors are read and written with wide accesses; a vector that starts
  // off a 16-byte boundary (a view into a larger buffer) is composed by the caller instead.
  if (epilogue != LtEpilogue::kNone &&
      (alignment(o.bias) < 16 || (o.aux != nullptr && alignment(o.aux) < 16))) {
    return false;
  }
  const int32_t ibatch = static_cast<int32_t>(checked_int(batch, "batch"));
  int device = 0;
  EMBER_CUDA_CHECK(cudaGetDevice(&device));
  cudaStream_t stream = nullptr;
  EMBER_CUBLAS_CHECK(cublasGetStream(handle, &stream));
  cublasLtHandle_t lt = lt_handle(device);

  const std::array<uint32_t, 3> align{alignment(a), alignment(b), alignment(c)};
  const Key key{device,
                static_cast<int64_t>(kCudaType<T>),
                static_cast<int64_t>(compute_type<T>(o.allow_tf32)),
                trans_a,
                trans_b,
                m, n, k, lda, ldb, ldc, stride_a, stride_b, stride_c, batch,
                static_cast<int64_t>(epilogue),
                static_cast<int64_t>(o.workspace_bytes),
                align[0], align[1], align[2],
                epilogue == LtEpilogue::kBiasGeluAux ? o.aux_ld : 0};
  Cache& cc = cache();
  // The bias and aux pointers change per call and the descriptor is shared between
  // threads: they are set and the matmul enqueued under the cache's lock (cuBLASLt reads
  // the descriptor when the call is made, not when it runs).
  std::lock_guard<std::mutex> lock(cc.mu);
  std::shared_ptr<Plan> plan = cc.plans.find(key);
  if (!plan) {
    plan = cc.plans.insert(key, make_plan<T>(lt, trans_a, trans_b, m, n, k, lda, stride_a, ldb,
                                             stride_b, ldc, stride_c, ibatch, o, align));
  }
  if (!plan->has_algo) return false;
  if (epilogue != LtEpilogue::kNone) {
    const void* bias = o.bias;
    EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  if (epilogue == LtEpilogue::kBiasGeluAux) {
    void* aux = o.aux;
    EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
  }
  EMBER_CUBLAS_CHECK(cublasLtMatmul(lt, plan->desc, &alpha, b, plan->a, a, plan->b, &beta, c,
                                    plan->c, c, plan->c, &plan->algo, o.workspace,
                                    o.workspace_bytes, stream));
  return true;
}

size_t gemm_lt_cached_plans() {
  Cache& cc = cache();
  std::lock_guard<std::mutex> lock(cc.mu);
  return cc.plans.size();
}

#define EMBER_GEMM_LT_INSTANTIATE(T)                                                          \
  template bool gemm_lt<T>(cublasHandle_t, bool, bool, int64_t, int64_t, int64_t, float,     \
                           const T*, int64_t, int64_t, const T*, int64_t, int64_t, float, T*, \
                           int64_t, int64_t, int64_t, const LtOptions<T>&);
EMBER_GEMM_LT_INSTANTIATE(float)
EMBER_GEMM_LT_INSTANTIATE(Half)
EMBER_GEMM_LT_INSTANTIATE(BFloat16)
#undef EMBER_GEMM_LT_INSTANTIATE

}  // namespace ember::kernels::cublas
