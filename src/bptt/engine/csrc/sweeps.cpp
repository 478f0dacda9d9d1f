// Native time loops for bptt's engine; engine/native.py builds this file on first use.
//
// The same sweeps as engine/sweep.py, with each cell's step (cells/rnn.py, cells/lstm.py,
// cells/gru.py) fused into one vectorised pass per batch row: per step one matmul for the
// recurrence and one loop for the elementwise equations, writing straight into the Tape's buffers
// (layout in engine/tape.py). Nothing is allocated inside the loops.
//
// Only per-operator ATen headers are included, and the ops are registered with TORCH_LIBRARY,
// so the file compiles in seconds rather than the half minute <torch/extension.h> takes.

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

// The BLAS that PyTorch links (MKL in the x86 wheels) is called directly for the per-step products,
// which are too small to pay ATen's dispatch every step. Weak symbols: where a build has no such
// BLAS, the ATen fallback in gemm() runs instead.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*) __attribute__((weak));
}

// glibc's vector math library (libmvec) supplies SIMD exp and tanh. Declaring the variants here,
// rather than through -ffast-math, keeps IEEE semantics: NaN and Inf propagate as in PyTorch.
extern "C" {
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) float tanhf(float) noexcept;
__attribute__((simd("notinbranch"))) double exp(double) noexcept;
__attribute__((simd("notinbranch"))) double tanh(double) noexcept;
}

namespace {

using at::Tensor;
using i64 = int64_t;

inline float vexp(float x) { return ::expf(x); }
inline double vexp(double x) { return ::exp(x); }
inline float vtanh(float x) { return ::tanhf(x); }
inline double vtanh(double x) { return ::tanh(x); }
template <typename T>
inline T sigmoid(T x) { return T(1) / (T(1) + vexp(-x)); }

// Row-major C (m×n) = A (m×k) · Wᵀ + beta·C with W (n×k) when `trans`, else A · W with W (k×n).
template <typename T>
void gemm(bool trans, i64 m, i64 n, i64 k, const T* A, const T* W, T* C, T beta) {
  const int M = int(m), N = int(n), K = int(k);
  const T one = T(1);
  // Column-major view: Cᵀ (n×m) = op(W) Aᵀ.
  const char* tw = trans ? "T" : "N";
  const int ldw = trans ? K : N;
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm_) return sgemm_(tw, "N", &N, &M, &K, &one, W, &ldw, A, &K, &beta, C, &N);
  } else {
    if (dgemm_) return dgemm_(tw, "N", &N, &M, &K, &one, W, &ldw, A, &K, &beta, C, &N);
  }
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  Tensor a = at::from_blob(const_cast<T*>(A), {m, k}, opts), c = at::from_blob(C, {m, n}, opts);
  Tensor w = trans ? at::from_blob(const_cast<T*>(W), {n, k}, opts).t() : at::from_blob(const_cast<T*>(W), {k, n}, opts);
  if (beta == T(0)) {
    at::mm_out(c, a, w);
  } else {
    c.mul_(beta).add_(at::mm(a, w));
  }
}

// oneDNN's fp32 matmul, the kernel behind torch.nn.LSTM on the CPU, reached through the op PyTorch
// registers for it: Y = X Wᵀ. On recent x86 cores it runs large per-step products at about twice
// MKL's rate; engine/native.py decides per sweep which of the two a step uses.
Tensor onednn_linear(const Tensor& X, const Tensor& W) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                       .typed<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&, c10::string_view,
                                     c10::List<std::optional<c10::Scalar>>, std::optional<c10::string_view>)>();
  return op.call(X, W, std::nullopt, "none", c10::List<std::optional<c10::Scalar>>(),
                 std::optional<c10::string_view>(""));
}

// The recurrent product of one step, Y (m×n) = X (m×k) · Wᵀ with W (n×k), by BLAS into Y or by oneDNN.
template <typename T>
const T* recurrent_product(bool onednn, i64 m, i64 n, i64 k, const T* X, const Tensor& W, T* Y, Tensor& hold) {
  if constexpr (std::is_same_v<T, float>) {
    if (onednn) {
      hold = onednn_linear(at::from_blob(const_cast<T*>(X), {m, k}, W.options()), W);
      return hold.data_ptr<T>();
    }
  }
  gemm<T>(true, m, n, k, X, W.data_ptr<T>(), Y, T(0));
  return Y;
}

// Rows of a step run in parallel when a step has enough elements to pay for waking the threads.
constexpr i64 kParallelElements = 4096;

// Slots of a (T+1, …) state buffer, as in engine/tape.py: the state after step t and before it.
inline i64 cur_slot(i64 t, bool reverse) { return reverse ? t : t + 1; }
inline i64 prev_slot(i64 t, bool reverse) { return reverse ? t + 1 : t; }
// The time position visited s-th by the forward sweep.
inline i64 position(i64 s, i64 T, bool reverse) { return reverse ? T - 1 - s : s; }

template <typename T>
inline T* ptr(const Tensor& x) { return x.numel() ? x.data_ptr<T>() : nullptr; }

// ---------------------------------------------------------------------------------------------
// Elman RNN: h_t = a(z_t), z_t = W_ih x_t + b + W_hh h_{t−1}
// ---------------------------------------------------------------------------------------------

enum Act : i64 { TANH = 0, RELU = 1, SIGMOID = 2, LINEAR = 3 };

template <typename T, int A>
void rnn_forward_impl(const Tensor& gx, const Tensor& w_hh, Tensor& h_buf, bool reverse) {
  const i64 T_ = gx.size(0), B = gx.size(1), H = gx.size(2), n = B * H;
  const T* gx0 = gx.data_ptr<T>();
  const T* W = w_hh.data_ptr<T>();
  T* hb = h_buf.data_ptr<T>();
  for (i64 s = 0; s < T_; ++s) {
    const i64 t = position(s, T_, reverse);
    T* h = hb + cur_slot(t, reverse) * n;
    gemm<T>(true, B, H, H, hb + prev_slot(t, reverse) * n, W, h, T(0));  // W_hh h_{t−1}
    const T* gx_t = gx0 + t * n;
#pragma omp simd
    for (i64 k = 0; k < n; ++k) {
      const T z = h[k] + gx_t[k];  // z_t = W_ih x_t + b + W_hh h_{t−1}
      if constexpr (A == TANH) h[k] = vtanh(z);  // h_t = a(z_t)
      else if constexpr (A == RELU) h[k] = z > T(0) ? z : (z == z ? T(0) : z);  // NaN stays NaN
      else if constexpr (A == SIGMOID) h[k] = sigmoid(z);
      else h[k] = z;
    }
  }
}

template <typename T, int A>
void rnn_backward_impl(const Tensor& grad_out, const Tensor& dh_n, const Tensor& w_hh, const Tensor& h_buf,
                       Tensor& dh, Tensor& dgx, Tensor& dh0, bool reverse) {
  const i64 T_ = grad_out.size(0), B = grad_out.size(1), H = grad_out.size(2), n = B * H;
  dh0.copy_(dh_n);  // ∂L/∂h_t through the steps after t, updated in place
  T* dhn = dh0.data_ptr<T>();
  const T *go0 = grad_out.data_ptr<T>(), *hb = h_buf.data_ptr<T>(), *W = w_hh.data_ptr<T>();
  T *dh_0 = dh.data_ptr<T>(), *dz_0 = dgx.data_ptr<T>();
  for (i64 s = T_ - 1; s >= 0; --s) {
    const i64 t = position(s, T_, reverse);
    const T *go = go0 + t * n, *h = hb + cur_slot(t, reverse) * n;
    T *dht = dh_0 + t * n, *dz = dz_0 + t * n;
#pragma omp simd
    for (i64 k = 0; k < n; ++k) {
      const T d = go[k] + dhn[k];  // ∂L/∂h_t = ∂ℓ/∂h_t + ∂L/∂h_t via step t+1
      dht[k] = d;
      T da;  // a'(z_t) from h_t
      if constexpr (A == TANH) da = T(1) - h[k] * h[k];
      else if constexpr (A == RELU) da = h[k] > T(0) ? T(1) : T(0);
      else if constexpr (A == SIGMOID) da = h[k] * (T(1) - h[k]);
      else da = T(1);
      dz[k] = d * da;  // ∂L/∂z_t = ∂L/∂h_t ⊙ a'(z_t)
    }
    gemm<T>(false, B, H, H, dz, W, dhn, T(0));  // ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂z_t
  }
}

// ---------------------------------------------------------------------------------------------
// GRU (reset-after): r, z = σ(gx + gh), n = tanh(gx_n + r ⊙ gh_n), h = n + z ⊙ (h_{t−1} − n)
// ---------------------------------------------------------------------------------------------

template <typename T>
inline void gru_row_forward(i64 H, const T* zx, const T* zh, const T* bh, const T* hp, T* a, T* g, T* h) {
#pragma omp simd
  for (i64 j = 0; j < H; ++j) {
    const T ghr = zh[j] + (bh ? bh[j] : T(0)), ghz = zh[H + j] + (bh ? bh[H + j] : T(0));
    const T ghn = zh[2 * H + j] + (bh ? bh[2 * H + j] : T(0));  // W_hn h_{t−1} + b_hn
    const T r = sigmoid(zx[j] + ghr);                           // r_t = σ(W_ir x + b_ir + W_hr h + b_hr)
    const T z = sigmoid(zx[H + j] + ghz);                       // z_t = σ(W_iz x + b_iz + W_hz h + b_hz)
    const T n = vtanh(zx[2 * H + j] + r * ghn);                 // n_t = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    a[j] = r;
    a[H + j] = z;
    a[2 * H + j] = n;
    g[j] = ghn;
    h[j] = n + z * (hp[j] - n);  // h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}
  }
}

template <typename T>
void gru_forward_impl(const Tensor& gx, const Tensor& w_hh, const Tensor& b_hh, Tensor& h_buf, Tensor& gates_buf,
                      Tensor& ghn, bool reverse) {
  const i64 T_ = gx.size(0), B = gx.size(1), H = h_buf.size(2);
  Tensor gh = at::empty({B, 3 * H}, gx.options());
  const T *gx0 = gx.data_ptr<T>(), *W = w_hh.data_ptr<T>(), *bh = ptr<T>(b_hh);
  T *hb = h_buf.data_ptr<T>(), *ab = gates_buf.data_ptr<T>(), *gb = ghn.data_ptr<T>(), *zh0 = gh.data_ptr<T>();
  for (i64 s = 0; s < T_; ++s) {
    const i64 t = position(s, T_, reverse), prev = prev_slot(t, reverse), cur = cur_slot(t, reverse);
    const T* hp0 = hb + prev * B * H;
    gemm<T>(true, B, 3 * H, H, hp0, W, zh0, T(0));  // gh_t = W_hh h_{t−1} (b_hh added per row)
    const T* zx0 = gx0 + t * B * 3 * H;
    T *a0 = ab + cur * B * 3 * H, *g0 = gb + t * B * H, *h0 = hb + cur * B * H;
#pragma omp parallel for schedule(static) if (B * H >= kParallelElements)
    for (i64 b = 0; b < B; ++b)
      gru_row_forward<T>(H, zx0 + b * 3 * H, zh0 + b * 3 * H, bh, hp0 + b * H, a0 + b * 3 * H, g0 + b * H, h0 + b * H);
  }
}

template <typename T>
inline void gru_row_backward(i64 H, const T* go, T* dhn, T* dht, const T* hp, const T* a, const T* ghn, T* dx, T* dr) {
#pragma omp simd
  for (i64 j = 0; j < H; ++j) {
    const T r = a[j], z = a[H + j], n = a[2 * H + j];
    const T d = go[j] + dhn[j];  // ∂L/∂h_t
    dht[j] = d;
    const T dzz = d * (hp[j] - n) * z * (T(1) - z);  // ∂L/∂z_z = ∂L/∂h_t ⊙ (h_{t−1} − n_t) ⊙ σ'
    const T dzn = d * (T(1) - z) * (T(1) - n * n);   // ∂L/∂z_n = ∂L/∂h_t ⊙ (1 − z_t) ⊙ tanh'
    const T dzr = dzn * ghn[j] * r * (T(1) - r);     // ∂L/∂z_r = ∂L/∂z_n ⊙ (W_hn h + b_hn) ⊙ σ'
    dx[j] = dzr;
    dx[H + j] = dzz;
    dx[2 * H + j] = dzn;
    dr[j] = dzr;
    dr[H + j] = dzz;
    dr[2 * H + j] = dzn * r;  // ∂L/∂(W_hn h + b_hn) = ∂L/∂z_n ⊙ r_t
    dhn[j] = d * z;           // the direct path ∂h_t/∂h_{t−1} ⊃ diag(z_t); W_hhᵀ ∂L/∂gh_t is added next
  }
}

template <typename T>
void gru_backward_impl(const Tensor& grad_out, const Tensor& dh_n, const Tensor& w_hh, const Tensor& h_buf,
                       const Tensor& gates_buf, const Tensor& ghn, Tensor& dh, Tensor& dgx, Tensor& dgh, Tensor& dh0,
                       bool reverse) {
  const i64 T_ = grad_out.size(0), B = grad_out.size(1), H = grad_out.size(2);
  dh0.copy_(dh_n);
  T* dhn0 = dh0.data_ptr<T>();
  const T *go0 = grad_out.data_ptr<T>(), *hb = h_buf.data_ptr<T>(), *ab = gates_buf.data_ptr<T>(),
          *gb = ghn.data_ptr<T>(), *W = w_hh.data_ptr<T>();
  T *dh_0 = dh.data_ptr<T>(), *dx_0 = dgx.data_ptr<T>(), *dr_0 = dgh.data_ptr<T>();
  for (i64 s = T_ - 1; s >= 0; --s) {
    const i64 t = position(s, T_, reverse);
    const T *go = go0 + t * B * H, *hp = hb + prev_slot(t, reverse) * B * H, *a = ab + cur_slot(t, reverse) * B * 3 * H,
            *g = gb + t * B * H;
    T *dht = dh_0 + t * B * H, *dx = dx_0 + t * B * 3 * H, *dr = dr_0 + t * B * 3 * H;
#pragma omp parallel for schedule(static) if (B * H >= kParallelElements)
    for (i64 b = 0; b < B; ++b)
      gru_row_backward<T>(H, go + b * H, dhn0 + b * H, dht + b * H, hp + b * H, a + b * 3 * H, g + b * H,
                          dx + b * 3 * H, dr + b * 3 * H);
    gemm<T>(false, B, H, 3 * H, dr, W, dhn0, T(1));  // ∂L/∂h_{t−1} = z_t ⊙ ∂L/∂h_t + W_hhᵀ ∂L/∂gh_t
  }
}

// ---------------------------------------------------------------------------------------------
// LSTM family (cells/lstm.py). A variant is a set of flags; each named variant is instantiated.
// ---------------------------------------------------------------------------------------------

enum : int {
  HAS_I = 1,
  HAS_F = 2,
  HAS_O = 4,
  PEEP = 8,
  CIFG = 16,  // f = 1 − i
  GACT = 32,  // g = tanh(z_g)
  CACT = 64,  // m = o ⊙ tanh(c)
  FGR = 128,  // gates read [i, f, o]_{t−1}
};

template <int FL>
struct Layout {  // column block of each gate among those present, in the order i, f, g, o
  static constexpr bool I = FL & HAS_I, F = FL & HAS_F, O = FL & HAS_O, P = FL & PEEP, C = FL & CIFG,
                        G_ACT = FL & GACT, C_ACT = FL & CACT, R = FL & FGR;
  static constexpr i64 ii = 0, fi = I, gi = I + F, oi = I + F + 1, n_gates = I + F + 1 + O;
};

template <typename T, int FL>
inline void lstm_row_forward(i64 H, const T* zx, const T* zh, const T* rec, const T* pi, const T* pf,
                             const T* po, const T* cp, T* a, T* c, T* m) {
  using L = Layout<FL>;
#pragma omp simd
  for (i64 j = 0; j < H; ++j) {
    T i = T(1), f = T(1), o = T(1);
    if constexpr (L::I) {
      T z = zx[L::ii * H + j] + zh[L::ii * H + j];  // z_i = W_ii x + b_i + W_hi h_{t−1}
      if constexpr (L::R) z += rec[j];              //     + R_g [i, f, o]_{t−1}
      if constexpr (L::P) z += pi[j] * cp[j];       //     + p_i ⊙ c_{t−1}
      i = sigmoid(z);                               // i_t = σ(z_i)
      a[L::ii * H + j] = i;
    }
    if constexpr (L::F) {
      T z = zx[L::fi * H + j] + zh[L::fi * H + j];
      if constexpr (L::R) z += rec[H + j];
      if constexpr (L::P) z += pf[j] * cp[j];
      f = sigmoid(z);  // f_t = σ(z_f + p_f ⊙ c_{t−1})
      a[L::fi * H + j] = f;
    } else if constexpr (L::C) {
      f = T(1) - i;  // CIFG: f_t = 1 − i_t
    }
    const T zg = zx[L::gi * H + j] + zh[L::gi * H + j];
    const T g = L::G_ACT ? vtanh(zg) : zg;  // g_t = tanh(z_g)
    a[L::gi * H + j] = g;
    const T cc = f * cp[j] + i * g;  // c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    c[j] = cc;
    if constexpr (L::O) {
      T z = zx[L::oi * H + j] + zh[L::oi * H + j];
      if constexpr (L::R) z += rec[2 * H + j];
      if constexpr (L::P) z += po[j] * cc;
      o = sigmoid(z);  // o_t = σ(z_o + p_o ⊙ c_t)
      a[L::oi * H + j] = o;
    }
    m[j] = o * (L::C_ACT ? vtanh(cc) : cc);  // m_t = o_t ⊙ tanh(c_t)
  }
}

template <typename T, int FL>
inline void lstm_row_backward(i64 H, const T* go, const T* dhn, T* dht, const T* dm_in, const T* a, const T* c,
                              const T* cp, const T* pi, const T* pf, const T* po, const T* da, T* dcs, T* dcc,
                              T* dz) {
  using L = Layout<FL>;
#pragma omp simd
  for (i64 j = 0; j < H; ++j) {
    T dm;
    if (dm_in) {
      dm = dm_in[j];  // with a projection: ∂L/∂m_t = W_hrᵀ ∂L/∂h_t, computed before this loop
    } else {
      dm = go[j] + dhn[j];  // ∂L/∂h_t = ∂ℓ/∂h_t + ∂L/∂h_t via step t+1 (= ∂L/∂m_t)
      dht[j] = dm;
    }
    const T i = L::I ? a[L::ii * H + j] : T(1);
    const T f = L::F ? a[L::fi * H + j] : (L::C ? T(1) - i : T(1));
    const T g = a[L::gi * H + j];
    const T o = L::O ? a[L::oi * H + j] : T(1);
    const T cc = c[j];
    const T ac = L::C_ACT ? vtanh(cc) : cc;
    T dc = dm * o * (L::C_ACT ? T(1) - ac * ac : T(1));  // ∂L/∂m_t ⊙ o_t ⊙ tanh'(c_t)
    if constexpr (L::O) {
      T dov = dm * ac;  // ∂L/∂o_t = ∂L/∂m_t ⊙ tanh(c_t)
      if constexpr (L::R) dov += da[2 * H + j];
      const T dzo = dov * o * (T(1) - o);  // ∂L/∂z_o = ∂L/∂o_t ⊙ σ'
      dz[L::oi * H + j] = dzo;
      if constexpr (L::P) dc += po[j] * dzo;  // o_t reads c_t through p_o
    }
    dc += dcc[j];  // + ∂L/∂c_t via step t+1
    dcs[j] = dc;
    const T dg = L::I ? dc * i : dc;  // ∂L/∂g_t = ∂L/∂c_t ⊙ i_t
    dz[L::gi * H + j] = L::G_ACT ? dg * (T(1) - g * g) : dg;
    T dzi = T(0), dzf = T(0);
    if constexpr (L::I) {
      T di = dc * g;  // ∂L/∂i_t = ∂L/∂c_t ⊙ g_t
      if constexpr (L::C) di -= dc * cp[j];  // CIFG: f_t = 1 − i_t
      if constexpr (L::R) di += da[j];
      dzi = di * i * (T(1) - i);
      dz[L::ii * H + j] = dzi;
    }
    if constexpr (L::F) {
      T df = dc * cp[j];  // ∂L/∂f_t = ∂L/∂c_t ⊙ c_{t−1}
      if constexpr (L::R) df += da[H + j];
      dzf = df * f * (T(1) - f);
      dz[L::fi * H + j] = dzf;
    }
    T dcp = dc * f;  // ∂L/∂c_{t−1} = f_t ⊙ ∂L/∂c_t + p_i ⊙ ∂L/∂z_i + p_f ⊙ ∂L/∂z_f
    if constexpr (L::P && L::I) dcp += pi[j] * dzi;
    if constexpr (L::P && L::F) dcp += pf[j] * dzf;
    dcc[j] = dcp;
  }
}

// [i, f, o] columns of a (B, 4H) gate tensor into a contiguous (B, 3H) one (FGR only).
template <typename T>
void gather_ifo(const T* src, T* dst, i64 B, i64 H) {
  for (i64 b = 0; b < B; ++b)
    for (i64 k = 0; k < 3; ++k) {
      const T* s = src + b * 4 * H + (k == 2 ? 3 : k) * H;
      T* d = dst + b * 3 * H + k * H;
      for (i64 j = 0; j < H; ++j) d[j] = s[j];
    }
}

template <typename T, int FL>
void lstm_forward_impl(const Tensor& gx, const Tensor& w_hh, const Tensor& w_hr, const Tensor& w_gg,
                       const Tensor& w_ci, const Tensor& w_cf, const Tensor& w_co, Tensor& h_buf, Tensor& c_buf,
                       Tensor& gates_buf, Tensor& m_buf, bool onednn, bool reverse) {
  using L = Layout<FL>;
  const i64 T_ = gx.size(0), B = gx.size(1), H = c_buf.size(2), P = h_buf.size(2), GH = L::n_gates * H;
  const bool proj = m_buf.numel() > 0;
  Tensor gh = at::empty({B, GH}, gx.options());
  Tensor a_prev = at::empty({L::R ? B : 0, 3 * H}, gx.options()), rec = at::empty({L::R ? B : 0, 3 * H}, gx.options());
  const T *gx0 = gx.data_ptr<T>(), *Wr = ptr<T>(w_hr);
  const T *pi = ptr<T>(w_ci), *pf = ptr<T>(w_cf), *po = ptr<T>(w_co);
  T *hb = h_buf.data_ptr<T>(), *cb = c_buf.data_ptr<T>(), *ab = gates_buf.data_ptr<T>(), *mb = ptr<T>(m_buf);
  T *gh0 = gh.data_ptr<T>(), *ap0 = ptr<T>(a_prev), *rec0 = ptr<T>(rec);
  Tensor hold, hold_r;
  for (i64 s = 0; s < T_; ++s) {
    const i64 t = position(s, T_, reverse), prev = prev_slot(t, reverse), cur = cur_slot(t, reverse);
    const T* zh0 = recurrent_product<T>(onednn, B, GH, P, hb + prev * B * P, w_hh, gh0, hold);  // gh_t = W_hh h_{t−1}
    const T* rc0 = nullptr;
    if constexpr (L::R) {  // FGR: R_g [i, f, o]_{t−1}
      gather_ifo(ab + prev * B * GH, ap0, B, H);
      rc0 = recurrent_product<T>(onednn, B, 3 * H, 3 * H, ap0, w_gg, rec0, hold_r);
    }
    const T *zx0 = gx0 + t * B * GH, *cp0 = cb + prev * B * H;
    T *a0 = ab + cur * B * GH, *c0 = cb + cur * B * H, *m0 = proj ? mb + t * B * H : hb + cur * B * P;
#pragma omp parallel for schedule(static) if (B * H >= kParallelElements)
    for (i64 b = 0; b < B; ++b)
      lstm_row_forward<T, FL>(H, zx0 + b * GH, zh0 + b * GH, L::R ? rc0 + b * 3 * H : nullptr, pi, pf, po,
                              cp0 + b * H, a0 + b * GH, c0 + b * H, m0 + b * H);
    if (proj) gemm<T>(true, B, P, H, m0, Wr, hb + cur * B * P, T(0));  // h_t = W_hr m_t
  }
}

template <typename T, int FL>
void lstm_backward_impl(const Tensor& grad_out, const Tensor& dh_n, const Tensor& dc_n, const Tensor& w_hh,
                        const Tensor& w_hr, const Tensor& w_gg, const Tensor& w_ci, const Tensor& w_cf,
                        const Tensor& w_co, const Tensor& c_buf, const Tensor& gates_buf, Tensor& dh, Tensor& dc,
                        Tensor& dgx, Tensor& dh0, Tensor& dc0, bool onednn, bool reverse) {
  using L = Layout<FL>;
  const i64 T_ = grad_out.size(0), B = grad_out.size(1), P = grad_out.size(2), H = c_buf.size(2);
  const i64 GH = L::n_gates * H;
  const bool proj = w_hr.numel() > 0;
  dh0.copy_(dh_n);  // ∂L/∂h_t via the steps after t
  dc0.copy_(dc_n);  // ∂L/∂c_t via the steps after t
  Tensor dm = at::empty({proj ? B : 0, H}, grad_out.options());
  Tensor dz_ifo = at::empty({L::R ? B : 0, 3 * H}, grad_out.options());
  Tensor da = at::zeros({L::R ? B : 0, 3 * H}, grad_out.options());  // ∂L/∂[i, f, o]_t via step t+1
  const T *go0 = grad_out.data_ptr<T>(), *W = w_hh.data_ptr<T>(), *Wr = ptr<T>(w_hr), *Wg = ptr<T>(w_gg);
  const T *pi = ptr<T>(w_ci), *pf = ptr<T>(w_cf), *po = ptr<T>(w_co);
  const T *cb = c_buf.data_ptr<T>(), *ab = gates_buf.data_ptr<T>();
  T *dhn0 = dh0.data_ptr<T>(), *dcc0 = dc0.data_ptr<T>(), *dh_0 = dh.data_ptr<T>(), *dc_0 = dc.data_ptr<T>();
  T *dz_0 = dgx.data_ptr<T>(), *dm0 = ptr<T>(dm), *dzi0 = ptr<T>(dz_ifo), *da0 = ptr<T>(da);
  const Tensor w_hh_t = onednn ? w_hh.t().contiguous() : w_hh;  // ∂L/∂h_{t−1} = ∂L/∂z_t W_hh = ∂L/∂z_t (W_hhᵀ)ᵀ
  const Tensor w_gg_t = onednn && L::R ? w_gg.t().contiguous() : w_gg;
  Tensor hold, hold_r;
  for (i64 s = T_ - 1; s >= 0; --s) {
    const i64 t = position(s, T_, reverse), prev = prev_slot(t, reverse), cur = cur_slot(t, reverse);
    const T* go = go0 + t * B * P;
    T* dht = dh_0 + t * B * P;
    if (proj) {
      const i64 n = B * P;
#pragma omp simd
      for (i64 k = 0; k < n; ++k) dht[k] = go[k] + dhn0[k];  // ∂L/∂h_t
      gemm<T>(false, B, H, P, dht, Wr, dm0, T(0));           // ∂L/∂m_t = W_hrᵀ ∂L/∂h_t
    }
    const T *a0 = ab + cur * B * GH, *c0 = cb + cur * B * H, *cp0 = cb + prev * B * H;
    T *dcs0 = dc_0 + t * B * H, *dz0 = dz_0 + t * B * GH;
#pragma omp parallel for schedule(static) if (B * H >= kParallelElements)
    for (i64 b = 0; b < B; ++b)
      lstm_row_backward<T, FL>(H, go + b * P, dhn0 + b * P, dht + b * P, proj ? dm0 + b * H : nullptr, a0 + b * GH,
                               c0 + b * H, cp0 + b * H, pi, pf, po, L::R ? da0 + b * 3 * H : nullptr, dcs0 + b * H,
                               dcc0 + b * H, dz0 + b * GH);
    if constexpr (L::R) {  // ∂L/∂[i, f, o]_{t−1} = R_gᵀ ∂L/∂z_{i,f,o}
      gather_ifo(dz0, dzi0, B, H);
      if (onednn) {
        const T* y = recurrent_product<T>(true, B, 3 * H, 3 * H, dzi0, w_gg_t, da0, hold_r);
        std::copy(y, y + B * 3 * H, da0);
      } else {
        gemm<T>(false, B, 3 * H, 3 * H, dzi0, Wg, da0, T(0));
      }
    }
    // ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂z_t
    if (onednn) {
      const T* y = recurrent_product<T>(true, B, P, GH, dz0, w_hh_t, dhn0, hold);
      std::copy(y, y + B * P, dhn0);
    } else {
      gemm<T>(false, B, P, GH, dz0, W, dhn0, T(0));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Dispatch on dtype and variant
// ---------------------------------------------------------------------------------------------

#define BPTT_LSTM_VARIANTS(X)          \
  X(HAS_I | HAS_F | HAS_O | GACT | CACT)        /* vanilla, np */ \
  X(HAS_I | HAS_F | HAS_O | PEEP | GACT | CACT) /* peephole */    \
  X(HAS_I | HAS_O | GACT | CACT)                /* original */    \
  X(HAS_F | HAS_O | PEEP | GACT | CACT)         /* nig */         \
  X(HAS_I | HAS_O | PEEP | GACT | CACT)         /* nfg */         \
  X(HAS_I | HAS_F | PEEP | GACT | CACT)         /* nog */         \
  X(HAS_I | HAS_F | HAS_O | PEEP | CACT)        /* niaf */        \
  X(HAS_I | HAS_F | HAS_O | PEEP | GACT)        /* noaf */        \
  X(HAS_I | HAS_O | PEEP | CIFG | GACT | CACT)  /* cifg */        \
  X(HAS_I | HAS_F | HAS_O | PEEP | GACT | CACT | FGR) /* fgr */

template <typename F>
void by_dtype(const Tensor& x, F&& f) {
  if (x.scalar_type() == at::kFloat) f(float{});
  else if (x.scalar_type() == at::kDouble) f(double{});
  else TORCH_CHECK(false, "bptt native sweeps take float32 or float64, got ", x.scalar_type());
}

void lstm_forward(const Tensor& gx, const Tensor& w_hh, const Tensor& w_hr, const Tensor& w_gg, const Tensor& w_ci,
                  const Tensor& w_cf, const Tensor& w_co, Tensor h_buf, Tensor c_buf, Tensor gates_buf, Tensor m_buf,
                  i64 flags, bool onednn, bool reverse) {
  by_dtype(gx, [&](auto zero) {
    using T = decltype(zero);
    switch (flags) {
#define X(FL)                                                                                                   \
  case (FL):                                                                                                    \
    return lstm_forward_impl<T, (FL)>(gx, w_hh, w_hr, w_gg, w_ci, w_cf, w_co, h_buf, c_buf, gates_buf, m_buf, \
                                      onednn, reverse);
      BPTT_LSTM_VARIANTS(X)
#undef X
      default:
        TORCH_CHECK(false, "bptt native sweeps: no LSTM variant with flags ", flags);
    }
  });
}

void lstm_backward(const Tensor& grad_out, const Tensor& dh_n, const Tensor& dc_n, const Tensor& w_hh,
                   const Tensor& w_hr, const Tensor& w_gg, const Tensor& w_ci, const Tensor& w_cf, const Tensor& w_co,
                   const Tensor& c_buf, const Tensor& gates_buf, Tensor dh, Tensor dc, Tensor dgx, Tensor dh0,
                   Tensor dc0, i64 flags, bool onednn, bool reverse) {
  by_dtype(grad_out, [&](auto zero) {
    using T = decltype(zero);
    switch (flags) {
#define X(FL)                                                                                                 \
  case (FL):                                                                                                  \
    return lstm_backward_impl<T, (FL)>(grad_out, dh_n, dc_n, w_hh, w_hr, w_gg, w_ci, w_cf, w_co, c_buf,       \
                                       gates_buf, dh, dc, dgx, dh0, dc0, onednn, reverse);
      BPTT_LSTM_VARIANTS(X)
#undef X
      default:
        TORCH_CHECK(false, "bptt native sweeps: no LSTM variant with flags ", flags);
    }
  });
}

void gru_forward(const Tensor& gx, const Tensor& w_hh, const Tensor& b_hh, Tensor h_buf, Tensor gates_buf, Tensor ghn,
                 bool reverse) {
  by_dtype(gx, [&](auto zero) { gru_forward_impl<decltype(zero)>(gx, w_hh, b_hh, h_buf, gates_buf, ghn, reverse); });
}

void gru_backward(const Tensor& grad_out, const Tensor& dh_n, const Tensor& w_hh, const Tensor& h_buf,
                  const Tensor& gates_buf, const Tensor& ghn, Tensor dh, Tensor dgx, Tensor dgh, Tensor dh0,
                  bool reverse) {
  by_dtype(grad_out, [&](auto zero) {
    gru_backward_impl<decltype(zero)>(grad_out, dh_n, w_hh, h_buf, gates_buf, ghn, dh, dgx, dgh, dh0, reverse);
  });
}

template <typename F>
void by_activation(i64 act, F&& f) {
  switch (act) {
    case TANH: return f(std::integral_constant<int, TANH>{});
    case RELU: return f(std::integral_constant<int, RELU>{});
    case SIGMOID: return f(std::integral_constant<int, SIGMOID>{});
    case LINEAR: return f(std::integral_constant<int, LINEAR>{});
    default: TORCH_CHECK(false, "bptt native sweeps: no activation ", act);
  }
}

void rnn_forward(const Tensor& gx, const Tensor& w_hh, Tensor h_buf, i64 act, bool reverse) {
  by_dtype(gx, [&](auto zero) {
    by_activation(act, [&](auto a) { rnn_forward_impl<decltype(zero), decltype(a)::value>(gx, w_hh, h_buf, reverse); });
  });
}

void rnn_backward(const Tensor& grad_out, const Tensor& dh_n, const Tensor& w_hh, const Tensor& h_buf, Tensor dh,
                  Tensor dgx, Tensor dh0, i64 act, bool reverse) {
  by_dtype(grad_out, [&](auto zero) {
    by_activation(act, [&](auto a) {
      rnn_backward_impl<decltype(zero), decltype(a)::value>(grad_out, dh_n, w_hh, h_buf, dh, dgx, dh0, reverse);
    });
  });
}

// The floor of a sweep: its recurrent products alone, T forward (h W_hhᵀ) and T backward (∂z W_hh).
void recurrent_products(const Tensor& h, const Tensor& w_hh, i64 steps, bool onednn) {
  by_dtype(h, [&](auto zero) {
    using T = decltype(zero);
    const i64 B = h.size(0), P = h.size(1), GH = w_hh.size(0);
    Tensor y = at::empty({B, GH}, h.options()), d = at::empty({B, P}, h.options()), hold;
    const Tensor w_hh_t = w_hh.t().contiguous(), y_in = at::zeros({B, GH}, h.options());
    for (i64 s = 0; s < steps; ++s) recurrent_product<T>(onednn, B, GH, P, h.data_ptr<T>(), w_hh, y.data_ptr<T>(), hold);
    for (i64 s = 0; s < steps; ++s) {
      if (onednn) recurrent_product<T>(true, B, P, GH, y_in.data_ptr<T>(), w_hh_t, d.data_ptr<T>(), hold);
      else gemm<T>(false, B, P, GH, y_in.data_ptr<T>(), w_hh.data_ptr<T>(), d.data_ptr<T>(), T(0));
    }
  });
}

// The LSTM flag sets compiled above: the Python side runs only these natively.
std::vector<i64> lstm_variant_flags() {
  std::vector<i64> out;
#define X(FL) out.push_back(FL);
  BPTT_LSTM_VARIANTS(X)
#undef X
  return out;
}

}  // namespace

TORCH_LIBRARY(bptt_native, m) {
  m.def("lstm_variant_flags() -> int[]", &lstm_variant_flags);
  m.def(
      "lstm_forward(Tensor gx, Tensor w_hh, Tensor w_hr, Tensor w_gg, Tensor w_ci, Tensor w_cf, Tensor w_co, "
      "Tensor(a!) h_buf, Tensor(b!) c_buf, Tensor(c!) gates_buf, Tensor(d!) m_buf, int flags, bool onednn, "
      "bool reverse) -> ()",
      &lstm_forward);
  m.def(
      "lstm_backward(Tensor grad_out, Tensor dh_n, Tensor dc_n, Tensor w_hh, Tensor w_hr, Tensor w_gg, Tensor w_ci, "
      "Tensor w_cf, Tensor w_co, Tensor c_buf, Tensor gates_buf, Tensor(a!) dh, Tensor(b!) dc, Tensor(c!) dgx, "
      "Tensor(d!) dh0, Tensor(e!) dc0, int flags, bool onednn, bool reverse) -> ()",
      &lstm_backward);
  m.def(
      "gru_forward(Tensor gx, Tensor w_hh, Tensor b_hh, Tensor(a!) h_buf, Tensor(b!) gates_buf, Tensor(c!) ghn, "
      "bool reverse) -> ()",
      &gru_forward);
  m.def(
      "gru_backward(Tensor grad_out, Tensor dh_n, Tensor w_hh, Tensor h_buf, Tensor gates_buf, Tensor ghn, "
      "Tensor(a!) dh, Tensor(b!) dgx, Tensor(c!) dgh, Tensor(d!) dh0, bool reverse) -> ()",
      &gru_backward);
  m.def("recurrent_products(Tensor h, Tensor w_hh, int steps, bool onednn) -> ()", &recurrent_products);
  m.def("rnn_forward(Tensor gx, Tensor w_hh, Tensor(a!) h_buf, int act, bool reverse) -> ()", &rnn_forward);
  m.def(
      "rnn_backward(Tensor grad_out, Tensor dh_n, Tensor w_hh, Tensor h_buf, Tensor(a!) dh, Tensor(b!) dgx, "
      "Tensor(c!) dh0, int act, bool reverse) -> ()",
      &rnn_backward);
}
