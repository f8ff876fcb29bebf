"""Native CPU LSTM recurrences (XLA FFI) against lstm_jax's default path, side by side.

Usage::

    pip install -e ".[bench]"
    python benchmarks/native_lstm/bench_native.py            # S, M, L; 7 rounds
    python benchmarks/native_lstm/bench_native.py --quick    # tiny shape, one round
    python benchmarks/native_lstm/bench_native.py --onednn ROOT   # and oneDNN's LSTM primitive

Compiles the C++ beside this file with the system's C++ compiler against the FFI headers that
jaxlib ships, into a temporary folder, and times training steps and forward passes of one LSTM
layer, float32, time-major ``(T, B, I)``:

* ``default``: :func:`lstm_jax.sequence.fast_lstm.lstm_core`, the rule every layer uses;
* ``native`` (``lstm_cpu.cc``): the same maths with both recurrences in C++ (``lstm_fwd_f32``,
  ``lstm_bwd_f32``) over SciPy's OpenBLAS, inside a ``jax.custom_vjp``; the input product, the
  residuals and the weight-gradient GEMMs stay in XLA;
* ``native, 1 BLAS thread``: the same, with SciPy's OpenBLAS held to one thread;
* ``oneDNN`` (``lstm_onednn.cc``, with ``--onednn ROOT``): oneDNN's fused LSTM primitive
  (``forward_training`` and ``backward``, which also returns the weight gradients), the
  library behind torch's CPU LSTM. ``ROOT`` holds ``include/`` and ``lib/libdnnl.so``. Two
  builds from PyPI install there with ``pip install --prefix ROOT ...`` (not ``--target``,
  which leaves their ``lib/`` behind): ``onednn-cpu-gomp onednn-devel-cpu-gomp`` (oneDNN 3.2,
  CPU only, GNU OpenMP, a 39 MB wheel; needs nothing else), and ``onednn onednn-devel``
  (oneDNN 3.13 and newer, built for SYCL: about 2 GB with its runtime, whose libraries must be
  on ``LD_LIBRARY_PATH=ROOT/lib`` and whose CPU device is the OpenCL one,
  ``OCL_ICD_FILENAMES=ROOT/lib/libintelocl.so``).

Before timing, every native path's outputs and gradients (of ``mean(hs^2) + mean(sin c_T)``) are
checked against the default path. Each round calls every variant once per mode (``--reps``
calls, averaged) in an order that rotates from round to round; the table shows medians over
rounds and ``variant / default``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.sequence import fast_lstm, tangents

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = {"S": (32, 100, 1, 50), "M": (64, 100, 128, 256), "L": (32, 64, 256, 512)}


def _compile(module, extra=()):
    """Compiles ``<module>.cc`` beside this file (once per source hash); returns its folder."""
    src = os.path.join(HERE, module.lstrip("_") + ".cc")
    tag = hashlib.sha1(open(src, "rb").read() + " ".join(extra).encode()).hexdigest()[:12]
    out_dir = os.path.join(tempfile.gettempdir(), f"lstm_jax_native_{tag}")
    so = os.path.join(out_dir, module + sysconfig.get_config_var("EXT_SUFFIX"))
    if not os.path.exists(so):
        os.makedirs(out_dir, exist_ok=True)
        cmd = [
            os.environ.get("CXX", "c++"), "-O3", "-std=c++17", "-fno-math-errno",
            "-fno-trapping-math", "-shared", "-fPIC", "-isystem", jax.ffi.include_dir(),
            "-I", sysconfig.get_paths()["include"], src, "-o", so, *extra,
        ]  # fmt: skip
        print(" ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
    sys.path.insert(0, out_dir)
    return out_dir


def build():
    """The C++ recurrence over SciPy's BLAS: compiled, imported, its handlers registered."""
    _compile("_lstm_cpu")
    import _lstm_cpu
    import scipy.linalg.cython_blas as cython_blas

    _lstm_cpu.set_blas(cython_blas.__pyx_capi__["sgemm"])
    for name, capsule in _lstm_cpu.targets().items():
        jax.ffi.register_ffi_target(name, capsule, platform="cpu")


def build_onednn(root):
    """oneDNN's LSTM primitive, against the oneDNN installed under ``root`` (``include/``,
    ``lib/libdnnl.so``; the PyPI ``onednn``/``onednn-devel`` wheels install there). Returns the
    module, whose ``workspace_bytes`` the forward pass needs."""
    lib = os.path.join(root, "lib")
    flags = ("-isystem", os.path.join(root, "include"), "-L", lib, f"-Wl,-rpath,{lib}", "-ldnnl")
    _compile("_lstm_onednn", flags)
    import _lstm_onednn

    for name, capsule in _lstm_onednn.targets().items():
        jax.ffi.register_ffi_target(name, capsule, platform="cpu")
    return _lstm_onednn


def _forward(xz, w_h, h0, c0):
    T, B, G = xz.shape
    seq = jax.ShapeDtypeStruct((T, B, G // 4), xz.dtype)
    return jax.ffi.ffi_call("lstm_fwd_f32", [seq, seq, jax.ShapeDtypeStruct(xz.shape, xz.dtype)])(
        xz, w_h, h0, c0
    )


def _backward(gh, gc_T, K, f, q, w_h):
    T, B, G = K.shape
    carry = jax.ShapeDtypeStruct((B, G // 4), K.dtype)
    return jax.ffi.ffi_call("lstm_bwd_f32", [jax.ShapeDtypeStruct(K.shape, K.dtype), carry, carry])(
        gh, gc_T, K, f, q, w_h
    )


ST = fast_lstm.Static()


def _input_product(p, xs):
    T, B, I = xs.shape
    return (xs.reshape(T * B, I) @ p.w_x + p.b).reshape(T, B, -1)


@jax.custom_vjp
def native_lstm(p, xs, h0, c0):
    """``-> (hs (T, B, H), c_T)``, as ``fast_lstm.lstm_core`` without lengths or masks."""
    hs, cs, _ = _forward(_input_product(p, xs), p.w_h, h0, c0)
    return hs, cs[-1]


def _fwd(p, xs, h0, c0):
    hs, cs, acts = _forward(_input_product(p, xs), p.w_h, h0, c0)
    K, f, q = fast_lstm._residuals(ST, acts, cs, c0, None)
    return (hs, cs[-1]), (p, xs, h0, hs, K, f, q)


def _bwd(res, cts):
    p, xs, h0, hs, K, f, q = res
    gh, gc = cts
    dZ, dh0, dc0 = _backward(gh, gc, K, f, q, p.w_h)
    T, B, I = xs.shape
    dZ2 = dZ.reshape(T * B, -1)
    h_prev = tangents.shift(h0, hs).reshape(T * B, -1)
    dp = type(p)(w_x=xs.reshape(T * B, I).T @ dZ2, w_h=h_prev.T @ dZ2, b=dZ2.sum(0))
    return dp, (dZ2 @ p.w_x.T).reshape(xs.shape), dh0, dc0


native_lstm.defvjp(_fwd, _bwd)


DNNL = None  # the oneDNN module, once built


@jax.custom_vjp
def onednn_lstm(p, xs, h0, c0):
    """``-> (hs, c_T)`` through oneDNN's fused LSTM (forward_training, then backward)."""
    return _onednn_fwd(p, xs, h0, c0)[0]


def _onednn_call(p, xs, h0, c0):
    T, B, I = xs.shape
    H = h0.shape[-1]
    carry = jax.ShapeDtypeStruct((B, H), xs.dtype)
    ws = jax.ShapeDtypeStruct((DNNL.workspace_bytes(T, B, I, H),), jnp.uint8)
    out = [jax.ShapeDtypeStruct((T, B, H), xs.dtype), carry, carry, ws]
    return jax.ffi.ffi_call("lstm_dnnl_fwd_f32", out)(xs, p.w_x, p.w_h, p.b, h0, c0)


def _onednn_fwd(p, xs, h0, c0):
    hs, h_T, c_T, ws = _onednn_call(p, xs, h0, c0)
    return (hs, c_T), (p, xs, h0, c0, hs, h_T, c_T, ws)


def _onednn_bwd(res, cts):
    p, xs, h0, c0, hs, h_T, c_T, ws = res
    g_hs, g_cT = cts
    outs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (xs, h0, c0, p.w_x, p.w_h, p.b)]
    g_x, g_h0, g_c0, g_wx, g_wh, g_b = jax.ffi.ffi_call("lstm_dnnl_bwd_f32", outs)(
        xs, p.w_x, p.w_h, p.b, h0, c0, hs, h_T, c_T, ws, g_hs, jnp.zeros_like(h0), g_cT
    )
    return type(p)(w_x=g_wx, w_h=g_wh, b=g_b), g_x, g_h0, g_c0


onednn_lstm.defvjp(_onednn_fwd, _onednn_bwd)


def default_lstm(p, xs, h0, c0):
    return fast_lstm.lstm_core(ST, p, xs, h0, c0, None, None)


def variants(shape):
    B, T, I, H = shape
    k = jax.random.split(jax.random.key(0), 3)
    from collections import namedtuple

    P = namedtuple("P", "w_x w_h b")
    p = P(
        jax.random.normal(k[0], (I, 4 * H)) / np.sqrt(I),
        jax.random.normal(k[1], (H, 4 * H)) / np.sqrt(H),
        jax.random.normal(k[2], (4 * H,)) * 0.1,
    )
    xs = jax.random.normal(k[2], (T, B, I))
    h0 = c0 = jnp.zeros((B, H))
    impls = [("default", default_lstm), ("native", native_lstm)]
    if DNNL is not None:
        impls.append(("onednn", onednn_lstm))
    out = {}
    for name, fn in impls:

        def loss(p, xs, fn=fn):
            hs, c_T = fn(p, xs, h0, c0)
            return jnp.mean(hs**2) + jnp.mean(jnp.sin(c_T))

        out[name] = {
            "fwd": jax.jit(lambda p, xs, fn=fn: fn(p, xs, h0, c0)[0]),
            "train": jax.jit(jax.grad(loss, argnums=(0, 1))),
        }
    return out, (p, xs)


def check(fns, args, name):
    """Largest difference ``name`` - default, relative to the default's largest entry."""
    ref = fns["default"]["fwd"](*args)
    got = fns[name]["fwd"](*args)
    errs = {"hs": float(jnp.max(jnp.abs(got - ref)) / jnp.max(jnp.abs(ref)))}
    gref = jax.tree.leaves(fns["default"]["train"](*args))
    ggot = jax.tree.leaves(fns[name]["train"](*args))
    pairs = zip(gref, ggot, strict=True)
    errs["grads"] = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) for a, b in pairs)
    return errs


def _time(fn, args, reps):
    jax.block_until_ready(fn(*args))
    t = time.perf_counter()
    for _ in range(reps):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t) / reps * 1e3


def main(argv=None):
    global DNNL
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--shapes", default="S,M,L")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--onednn", metavar="ROOT", help="also time oneDNN's LSTM primitive, installed under ROOT"
    )
    a = ap.parse_args(argv)
    build()
    if a.onednn:
        DNNL = build_onednn(a.onednn)
    from threadpoolctl import threadpool_limits

    shapes = {"tiny": (4, 8, 3, 8)} if a.quick else {s: SHAPES[s] for s in a.shapes.split(",")}
    rounds = 1 if a.quick else a.rounds
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} CPU cores; load average {load}; "
        f"jax {jax.__version__}; numpy {np.__version__}; {rounds} rounds x {a.reps} calls"
    )
    runs = [("default", None), ("native", None), ("native", 1)]
    labels = ["default", "native", "native, 1 BLAS thread"]
    if DNNL is not None:
        runs.append(("onednn", None))
        labels.append("oneDNN")
    print(
        "| shape (B, T, I, H) | mode | "
        + " | ".join(f"{n} (ms)" for n in labels)
        + " | "
        + " | ".join(f"{n} / default" for n in labels[1:])
        + " | max rel. diff |"
    )
    print("|---" * (3 + 2 * (len(labels) - 1) + 1) + "|")
    for sname, shape in shapes.items():
        fns, args = variants(shape)
        errs = {name: check(fns, args, name) for name in fns if name != "default"}
        worst = max(max(e.values()) for e in errs.values())
        if worst > 1e-4:
            raise SystemExit(f"a native path disagrees with the default at {shape}: {errs}")
        times = {(r, m): [] for r in range(len(runs)) for m in ("fwd", "train")}
        for rnd in range(rounds):
            k = rnd % len(runs)
            for name, threads in runs[k:] + runs[:k]:
                r = runs.index((name, threads))
                with threadpool_limits(threads, user_api="blas"):
                    for mode in ("fwd", "train"):
                        times[(r, mode)].append(_time(fns[name][mode], args, a.reps))
        for mode in ("fwd", "train"):
            med = [statistics.median(times[(r, mode)]) for r in range(len(runs))]
            err = max(e["hs" if mode == "fwd" else "grads"] for e in errs.values())
            cells = " | ".join(f"{m:.1f}" for m in med)
            ratios = " | ".join(f"{m / med[0]:.2f}x" for m in med[1:])
            print(f"| {sname} {shape} | {mode} | {cells} | {ratios} | {err:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
