// oneDNN's fused LSTM primitive (the library behind torch's CPU LSTM) as XLA FFI handlers: the
// second experiment of benchmarks/RESULTS.md's "Native CPU recurrence" section. Not part of
// the package: bench_native.py --backend onednn compiles it against a oneDNN installation.
//
//   lstm_dnnl_fwd_f32 (x (T,B,I), W_x (I,4H), W_h (H,4H), b (4H), h0, c0 (B,H))
//       -> hs (T,B,H), h_T, c_T (B,H), workspace (bytes)          [forward_training]
//   lstm_dnnl_bwd_f32 (x, W_x, W_h, b, h0, c0, hs, h_T, c_T, workspace, g_hs, g_hT, g_cT)
//       -> g_x (T,B,I), g_h0, g_c0 (B,H), g_Wx (I,4H), g_Wh (H,4H), g_b (4H)
//
// oneDNN packs the gates i, f, c~, o, as lstm_jax does, and its "ldigo" weight layout is
// lstm_jax's (I, 4H) read as (1, 1, I, 4, H), so no weight is permuted; the primitives pick
// their own weight formats ("any") and the handlers reorder into and out of them.

#include <Python.h>

#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = memory::format_tag;

namespace {

dnnl::engine& cpu() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

memory::desc md(memory::dims d, tag t) { return memory::desc(d, memory::data_type::f32, t); }

struct Plan {
  int T, B, I, H;
  dnnl::lstm_forward::primitive_desc fwd;
  dnnl::lstm_backward::primitive_desc bwd;
  dnnl::lstm_forward fwd_prim;
  dnnl::lstm_backward bwd_prim;
  memory::desc src, iter, wx, wh, bias, dst;  // user layouts
};

Plan& plan(int T, int B, int I, int H) {
  static std::mutex mu;
  static std::map<std::tuple<int, int, int, int>, std::unique_ptr<Plan>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[{T, B, I, H}];
  if (!slot) {
    // oneDNN's own (library-managed) scratchpad is not safe here: the primitives run on
    // whichever of XLA's threads executes the call (it crashed oneDNN 3.2 at S, M and L), so
    // every call passes a scratchpad of its own.
    auto p = std::make_unique<Plan>();
    p->T = T, p->B = B, p->I = I, p->H = H;
    p->src = md({T, B, I}, tag::tnc);
    p->dst = md({T, B, H}, tag::tnc);
    p->iter = md({1, 1, B, H}, tag::ldnc);
    p->wx = md({1, 1, I, 4, H}, tag::ldigo);
    p->wh = md({1, 1, H, 4, H}, tag::ldigo);
    p->bias = md({1, 1, 4, H}, tag::ldgo);
    auto wx_any = md({1, 1, I, 4, H}, tag::any), wh_any = md({1, 1, H, 4, H}, tag::any);
    const auto dir = dnnl::rnn_direction::unidirectional_left2right;
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    p->fwd = dnnl::lstm_forward::primitive_desc(cpu(), dnnl::prop_kind::forward_training, dir,
                                                p->src, p->iter, p->iter, wx_any, wh_any, p->bias,
                                                p->dst, p->iter, p->iter, attr);
    p->bwd = dnnl::lstm_backward::primitive_desc(
        cpu(), dnnl::prop_kind::backward, dir, p->src, p->iter, p->iter, wx_any, wh_any, p->bias,
        p->dst, p->iter, p->iter, p->src, p->iter, p->iter, wx_any, wh_any, p->bias, p->dst,
        p->iter, p->iter, p->fwd, attr);
    p->fwd_prim = dnnl::lstm_forward(p->fwd);
    p->bwd_prim = dnnl::lstm_backward(p->bwd);
    slot = std::move(p);
  }
  return *slot;
}

memory wrap(const memory::desc& d, const void* ptr) {
  return memory(d, cpu(), const_cast<void*>(ptr));
}

// `user` (in the user's layout) in the layout `want`, reordered when they differ.
memory as(memory user, const memory::desc& want, dnnl::stream& s) {
  if (user.get_desc() == want) return user;
  memory out(want, cpu());
  dnnl::reorder(user, out).execute(s, user, out);
  return out;
}

ffi::Error Forward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w_x, ffi::Buffer<ffi::F32> w_h,
                   ffi::Buffer<ffi::F32> b, ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0,
                   ffi::ResultBuffer<ffi::F32> hs, ffi::ResultBuffer<ffi::F32> h_T,
                   ffi::ResultBuffer<ffi::F32> c_T, ffi::ResultBuffer<ffi::U8> ws) {
  const auto d = x.dimensions();
  const int T = d[0], B = d[1], I = d[2], H = h0.dimensions()[1];
  Plan& p = plan(T, B, I, H);
  if (ws->size_bytes() != p.fwd.workspace_desc().get_size())
    return ffi::Error::InvalidArgument("workspace size does not match the primitive's");
  dnnl::stream s(cpu());
  auto wx = as(wrap(p.wx, w_x.typed_data()), p.fwd.weights_layer_desc(), s);
  auto wh = as(wrap(p.wh, w_h.typed_data()), p.fwd.weights_iter_desc(), s);
  p.fwd_prim.execute(s, {{DNNL_ARG_SRC_LAYER, wrap(p.src, x.typed_data())},
                         {DNNL_ARG_SRC_ITER, wrap(p.iter, h0.typed_data())},
                         {DNNL_ARG_SRC_ITER_C, wrap(p.iter, c0.typed_data())},
                         {DNNL_ARG_WEIGHTS_LAYER, wx},
                         {DNNL_ARG_WEIGHTS_ITER, wh},
                         {DNNL_ARG_BIAS, wrap(p.bias, b.typed_data())},
                         {DNNL_ARG_DST_LAYER, wrap(p.dst, hs->typed_data())},
                         {DNNL_ARG_DST_ITER, wrap(p.iter, h_T->typed_data())},
                         {DNNL_ARG_DST_ITER_C, wrap(p.iter, c_T->typed_data())},
                         {DNNL_ARG_WORKSPACE, wrap(p.fwd.workspace_desc(), ws->typed_data())},
                         {DNNL_ARG_SCRATCHPAD, memory(p.fwd.scratchpad_desc(), cpu())}});
  s.wait();
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w_x, ffi::Buffer<ffi::F32> w_h,
                    ffi::Buffer<ffi::F32> b, ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0,
                    ffi::Buffer<ffi::F32> hs, ffi::Buffer<ffi::F32> h_T,
                    ffi::Buffer<ffi::F32> c_T, ffi::Buffer<ffi::U8> ws,
                    ffi::Buffer<ffi::F32> g_hs, ffi::Buffer<ffi::F32> g_hT,
                    ffi::Buffer<ffi::F32> g_cT, ffi::ResultBuffer<ffi::F32> g_x,
                    ffi::ResultBuffer<ffi::F32> g_h0, ffi::ResultBuffer<ffi::F32> g_c0,
                    ffi::ResultBuffer<ffi::F32> g_wx, ffi::ResultBuffer<ffi::F32> g_wh,
                    ffi::ResultBuffer<ffi::F32> g_b) {
  const auto d = x.dimensions();
  const int T = d[0], B = d[1], I = d[2], H = h0.dimensions()[1];
  Plan& p = plan(T, B, I, H);
  dnnl::stream s(cpu());
  auto wx = as(wrap(p.wx, w_x.typed_data()), p.bwd.weights_layer_desc(), s);
  auto wh = as(wrap(p.wh, w_h.typed_data()), p.bwd.weights_iter_desc(), s);
  // The primitive accumulates into the weight and bias gradients: start them at zero.
  memory dwx(p.bwd.diff_weights_layer_desc(), cpu()), dwh(p.bwd.diff_weights_iter_desc(), cpu());
  memset(dwx.get_data_handle(), 0, p.bwd.diff_weights_layer_desc().get_size());
  memset(dwh.get_data_handle(), 0, p.bwd.diff_weights_iter_desc().get_size());
  memset(g_b->typed_data(), 0, g_b->size_bytes());
  p.bwd_prim.execute(s, {{DNNL_ARG_SRC_LAYER, wrap(p.src, x.typed_data())},
                         {DNNL_ARG_SRC_ITER, wrap(p.iter, h0.typed_data())},
                         {DNNL_ARG_SRC_ITER_C, wrap(p.iter, c0.typed_data())},
                         {DNNL_ARG_WEIGHTS_LAYER, wx},
                         {DNNL_ARG_WEIGHTS_ITER, wh},
                         {DNNL_ARG_BIAS, wrap(p.bias, b.typed_data())},
                         {DNNL_ARG_DST_LAYER, wrap(p.dst, hs.typed_data())},
                         {DNNL_ARG_DST_ITER, wrap(p.iter, h_T.typed_data())},
                         {DNNL_ARG_DST_ITER_C, wrap(p.iter, c_T.typed_data())},
                         {DNNL_ARG_WORKSPACE, wrap(p.bwd.workspace_desc(), ws.typed_data())},
                         {DNNL_ARG_DIFF_DST_LAYER, wrap(p.dst, g_hs.typed_data())},
                         {DNNL_ARG_DIFF_DST_ITER, wrap(p.iter, g_hT.typed_data())},
                         {DNNL_ARG_DIFF_DST_ITER_C, wrap(p.iter, g_cT.typed_data())},
                         {DNNL_ARG_DIFF_SRC_LAYER, wrap(p.src, g_x->typed_data())},
                         {DNNL_ARG_DIFF_SRC_ITER, wrap(p.iter, g_h0->typed_data())},
                         {DNNL_ARG_DIFF_SRC_ITER_C, wrap(p.iter, g_c0->typed_data())},
                         {DNNL_ARG_DIFF_WEIGHTS_LAYER, dwx},
                         {DNNL_ARG_DIFF_WEIGHTS_ITER, dwh},
                         {DNNL_ARG_DIFF_BIAS, wrap(p.bias, g_b->typed_data())},
                         {DNNL_ARG_SCRATCHPAD, memory(p.bwd.scratchpad_desc(), cpu())}});
  auto out_wx = wrap(p.wx, g_wx->typed_data()), out_wh = wrap(p.wh, g_wh->typed_data());
  dnnl::reorder(dwx, out_wx).execute(s, dwx, out_wx);
  dnnl::reorder(dwh, out_wh).execute(s, dwh, out_wh);
  s.wait();
  return ffi::Error::Success();
}

}  // namespace

using F32 = ffi::Buffer<ffi::F32>;

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmDnnlForward, Forward,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Ret<F32>().Ret<F32>().Ret<F32>().Ret<ffi::Buffer<ffi::U8>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmDnnlBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<ffi::Buffer<ffi::U8>>()
                                  .Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>());

static PyObject* workspace_bytes(PyObject*, PyObject* args) {
  int T, B, I, H;
  if (!PyArg_ParseTuple(args, "iiii", &T, &B, &I, &H)) return nullptr;
  try {
    return PyLong_FromSize_t(plan(T, B, I, H).fwd.workspace_desc().get_size());
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}

static PyObject* targets(PyObject*, PyObject*) {
  PyObject* out = PyDict_New();
  PyObject* fwd = PyCapsule_New(reinterpret_cast<void*>(LstmDnnlForward), nullptr, nullptr);
  PyObject* bwd = PyCapsule_New(reinterpret_cast<void*>(LstmDnnlBackward), nullptr, nullptr);
  PyDict_SetItemString(out, "lstm_dnnl_fwd_f32", fwd);
  PyDict_SetItemString(out, "lstm_dnnl_bwd_f32", bwd);
  Py_DECREF(fwd);
  Py_DECREF(bwd);
  return out;
}

static PyMethodDef kMethods[] = {
    {"workspace_bytes", workspace_bytes, METH_VARARGS, "(T, B, I, H) -> bytes of workspace"},
    {"targets", targets, METH_NOARGS, "The FFI handlers, name -> capsule."},
    {nullptr, nullptr, 0, nullptr}};

static PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_lstm_onednn", nullptr, -1, kMethods};

PyMODINIT_FUNC PyInit__lstm_onednn(void) { return PyModule_Create(&kModule); }
