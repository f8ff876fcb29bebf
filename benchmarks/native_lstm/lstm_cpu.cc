// A native CPU LSTM recurrence for XLA's FFI: the experiment behind benchmarks/RESULTS.md's
// "Native CPU recurrence" section. Not part of the package: bench_native.py compiles it.
//
// Two handlers, float32, time-major, gate blocks packed i, f, g, o (as lstm_jax):
//
//   lstm_fwd_f32  (xz (T,B,4H) = x W_x + b, W_h (H,4H), h0, c0 (B,H))
//                 -> hs (T,B,H), cs (T,B,H), acts (T,B,4H)
//       per step:  z = xz_t + h_{t-1} W_h;  i,f,o = sigma(z);  g = tanh(z)
//                  c_t = f c_{t-1} + i g;   h_t = o tanh(c_t)
//
//   lstm_bwd_f32  (gh (T,B,H), gc_T (B,H), K (T,B,4H), f (T,B,H), q (T,B,H), W_h)
//                 -> dZ (T,B,4H), gh_0 (B,H), gc_0 (B,H)
//       the transpose of lstm_jax's tangent recurrence (lstm_jax/sequence/fast_lstm.py), with
//       K = [s_i g, s_f c_{t-1}, s_g i, s_o tanh c_t] and q = o (1 - tanh^2 c_t); per step,
//       from t = T-1 down:  a = gh_t + carried;  c = gc + q a;  dZ_t = [c, c, c, a] * K_t;
//                           carried = dZ_t W_h^T;  gc = f_t c
//
// The matrix products call the single-precision GEMM of the BLAS that SciPy ships (its
// cython_blas capsule, handed over by set_blas); the element-wise parts are loops that the
// compiler vectorises (target_clones picks AVX-512, AVX2 or SSE2 at load time).

#include <Python.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using sgemm_t = void (*)(const char*, const char*, const int*, const int*, const int*,
                         const float*, const float*, const int*, const float*, const int*,
                         const float*, float*, const int*);
sgemm_t g_sgemm = nullptr;

// Row-major C (m x n) = alpha op(A) op(B) + beta C, through the column-major Fortran GEMM
// (a row-major matrix is its transpose in column-major order: C^T = op(B)^T op(A)^T).
void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  const char opa = tb ? 'T' : 'N', opb = ta ? 'T' : 'N';
  g_sgemm(&opa, &opb, &n, &m, &k, &alpha, B, &ldb, A, &lda, &beta, C, &ldc);
}

inline float from_bits(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

// exp(x) = 2^n exp(r), x = n ln 2 + r, |r| <= ln(2)/2; exp(r) by its degree-6 minimax
// polynomial (the classic single-precision coefficients). Written without calls so that the
// loops around it vectorise.
inline float exp_approx(float x) {
  x = x < -87.f ? -87.f : x;
  x = x > 88.f ? 88.f : x;
  const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return (p * r * r + r + 1.f) * from_bits((static_cast<int32_t>(n) + 127) << 23);
}

inline float sigmoid(float x) { return 1.f / (1.f + exp_approx(-x)); }

// tanh|x| = (1 - e) / (1 + e), e = exp(-2|x|); below |x| = 0.25 its odd Taylor series to x^9,
// where 1 - e would cancel.
inline float tanh_approx(float x) {
  const float a = x < 0.f ? -x : x;
  const float e = exp_approx(-2.f * a);
  const float big = (1.f - e) / (1.f + e);
  const float a2 = a * a;
  const float small =
      a * (1.f + a2 * (-1.f / 3 + a2 * (2.f / 15 + a2 * (-17.f / 315 + a2 * (62.f / 2835)))));
  const float t = a < 0.25f ? small : big;
  return x < 0.f ? -t : t;
}

#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

VECTOR_CLONES void sigmoid_n(float* __restrict p, int n) {
  for (int j = 0; j < n; ++j) p[j] = sigmoid(p[j]);
}

VECTOR_CLONES void tanh_n(float* __restrict p, int n) {
  for (int j = 0; j < n; ++j) p[j] = tanh_approx(p[j]);
}

VECTOR_CLONES void cell_n(const float* __restrict i, const float* __restrict f,
                          const float* __restrict g, const float* __restrict o,
                          const float* __restrict c_prev, float* __restrict c,
                          float* __restrict h, int n) {
  for (int j = 0; j < n; ++j) {
    const float cn = f[j] * c_prev[j] + i[j] * g[j];
    c[j] = cn;
    h[j] = o[j] * tanh_approx(cn);
  }
}

VECTOR_CLONES void back_n(const float* __restrict a, float* __restrict gc,
                          const float* __restrict K, const float* __restrict f,
                          const float* __restrict q, float* __restrict dz, int H) {
  for (int j = 0; j < H; ++j) {
    const float c = gc[j] + q[j] * a[j];
    dz[j] = c * K[j];
    dz[H + j] = c * K[H + j];
    dz[2 * H + j] = c * K[2 * H + j];
    dz[3 * H + j] = a[j] * K[3 * H + j];
    gc[j] = f[j] * c;
  }
}

VECTOR_CLONES void add_n(float* __restrict a, const float* __restrict b, size_t n) {
  for (size_t j = 0; j < n; ++j) a[j] += b[j];
}

ffi::Error Forward(ffi::Buffer<ffi::F32> xz, ffi::Buffer<ffi::F32> wh, ffi::Buffer<ffi::F32> h0,
                   ffi::Buffer<ffi::F32> c0, ffi::ResultBuffer<ffi::F32> hs,
                   ffi::ResultBuffer<ffi::F32> cs, ffi::ResultBuffer<ffi::F32> acts) {
  if (g_sgemm == nullptr) return ffi::Error::InvalidArgument("set_blas was not called");
  const auto d = xz.dimensions();
  const int T = d[0], B = d[1], G = d[2], H = G / 4;
  const size_t BH = static_cast<size_t>(B) * H, BG = static_cast<size_t>(B) * G;
  float* A = acts->typed_data();
  float* Hs = hs->typed_data();
  float* Cs = cs->typed_data();
  std::memcpy(A, xz.typed_data(), sizeof(float) * T * BG);
  for (int t = 0; t < T; ++t) {
    const float* hp = t ? Hs + (t - 1) * BH : h0.typed_data();
    const float* cp = t ? Cs + (t - 1) * BH : c0.typed_data();
    float* z = A + t * BG;
    gemm(false, false, B, G, H, 1.f, hp, H, wh.typed_data(), G, 1.f, z, G);
    for (int b = 0; b < B; ++b) {
      float* zb = z + static_cast<size_t>(b) * G;
      sigmoid_n(zb, 2 * H);  // i, f
      tanh_n(zb + 2 * H, H);  // g
      sigmoid_n(zb + 3 * H, H);  // o
      cell_n(zb, zb + H, zb + 2 * H, zb + 3 * H, cp + b * H, Cs + t * BH + b * H,
             Hs + t * BH + b * H, H);
    }
  }
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::Buffer<ffi::F32> gh, ffi::Buffer<ffi::F32> gc_T, ffi::Buffer<ffi::F32> K,
                    ffi::Buffer<ffi::F32> f, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> wh,
                    ffi::ResultBuffer<ffi::F32> dZ, ffi::ResultBuffer<ffi::F32> gh_0,
                    ffi::ResultBuffer<ffi::F32> gc_0) {
  if (g_sgemm == nullptr) return ffi::Error::InvalidArgument("set_blas was not called");
  const auto d = K.dimensions();
  const int T = d[0], B = d[1], G = d[2], H = G / 4;
  const size_t BH = static_cast<size_t>(B) * H, BG = static_cast<size_t>(B) * G;
  float* gc = gc_0->typed_data();
  std::memcpy(gc, gc_T.typed_data(), sizeof(float) * BH);
  std::vector<float> a(BH, 0.f);
  for (int t = T - 1; t >= 0; --t) {
    add_n(a.data(), gh.typed_data() + t * BH, BH);
    float* dz = dZ->typed_data() + t * BG;
    for (int b = 0; b < B; ++b) {
      const size_t o = static_cast<size_t>(b) * H;
      back_n(a.data() + o, gc + o, K.typed_data() + t * BG + 4 * o, f.typed_data() + t * BH + o,
             q.typed_data() + t * BH + o, dz + 4 * o, H);
    }
    gemm(false, true, B, H, G, 1.f, dz, G, wh.typed_data(), G, 0.f, a.data(), H);
  }
  std::memcpy(gh_0->typed_data(), a.data(), sizeof(float) * BH);
  return ffi::Error::Success();
}

}  // namespace

using F32 = ffi::Buffer<ffi::F32>;

// Forward: xz, W_h, h0, c0 -> hs, cs, acts. Backward: gh, gc_T, K, f, q, W_h -> dZ, gh_0, gc_0.
XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmForwardF32, Forward,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Ret<F32>().Ret<F32>().Ret<F32>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmBackwardF32, Backward,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>().Arg<F32>().Ret<F32>().Ret<F32>().Ret<F32>());

static PyObject* set_blas(PyObject*, PyObject* capsule) {
  void* p = PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule));
  if (p == nullptr) return nullptr;
  g_sgemm = reinterpret_cast<sgemm_t>(p);
  Py_RETURN_NONE;
}

static PyObject* targets(PyObject*, PyObject*) {
  PyObject* out = PyDict_New();
  PyObject* fwd = PyCapsule_New(reinterpret_cast<void*>(LstmForwardF32), nullptr, nullptr);
  PyObject* bwd = PyCapsule_New(reinterpret_cast<void*>(LstmBackwardF32), nullptr, nullptr);
  PyDict_SetItemString(out, "lstm_fwd_f32", fwd);
  PyDict_SetItemString(out, "lstm_bwd_f32", bwd);
  Py_DECREF(fwd);
  Py_DECREF(bwd);
  return out;
}

static PyMethodDef kMethods[] = {
    {"set_blas", set_blas, METH_O, "Hands over SciPy's cython_blas sgemm capsule."},
    {"targets", targets, METH_NOARGS, "The FFI handlers, name -> capsule."},
    {nullptr, nullptr, 0, nullptr}};

static PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_lstm_cpu", nullptr, -1, kMethods};

PyMODINIT_FUNC PyInit__lstm_cpu(void) { return PyModule_Create(&kModule); }
