/* HS97's memory-block LSTM (bptt.cells.hs97): one online step of K independent networks.
 *
 * For each trial k: run the network over its sequence x[:, k], compute E = ½ Σ_o (y_o − target_o)²
 * at the last step and, if learning[k], take w ← w − lr ∂E/∂w with HS97's truncated gradient.
 * The equations and the closed form of the truncated gradient are those of bptt/cells/hs97.py
 * (`block_forward`, `truncated_grad`); tests/test_hs97.py checks this file against them.
 *
 * Layout (row-major, float64): x (T, K, I); target (K, O); W (K, N, M) with N = C + 2B hidden units
 * (cells block by block, input gates, output gates) and M = I + N + 1 (input, hidden, bias);
 * Wo (K, O, C + 1). Plain C, so that it builds in a second with any C compiler.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double sig(double z) { return 1.0 / (1.0 + exp(-z)); }

int hs97_online_step(const double *x, const double *target, int T, int K, int I, int B, int S, int O,
                     double *W, double *Wo, const unsigned char *learning, double lr, double *E) {
    const int C = B * S, N = C + 2 * B, M = I + N + 1;
    double *u = malloc(sizeof(double) * (size_t)T * M);    /* u_t = [x_t, y(t−1), 1] */
    double *g_sig = malloc(sizeof(double) * (size_t)T * C); /* σ(net_c(t)) */
    double *y_in = malloc(sizeof(double) * (size_t)T * B);  /* y^in_j(t) */
    double *dW = malloc(sizeof(double) * (size_t)N * M);
    double *y = malloc(sizeof(double) * N), *net = malloc(sizeof(double) * N), *s = malloc(sizeof(double) * C);
    double *yk = malloc(sizeof(double) * O), *dk = malloc(sizeof(double) * O);
    double *e_c = malloc(sizeof(double) * C), *d_s = malloc(sizeof(double) * C), *d_out = malloc(sizeof(double) * B);
    if (!u || !g_sig || !y_in || !dW || !y || !net || !s || !yk || !dk || !e_c || !d_s || !d_out) return 1;
    for (int k = 0; k < K; k++) {
        double *Wk = W + (size_t)k * N * M, *Wok = Wo + (size_t)k * O * (C + 1);
        memset(y, 0, sizeof(double) * N);
        memset(s, 0, sizeof(double) * C);
        for (int t = 0; t < T; t++) {
            double *ut = u + (size_t)t * M;
            for (int i = 0; i < I; i++) ut[i] = x[((size_t)t * K + k) * I + i];
            memcpy(ut + I, y, sizeof(double) * N);
            ut[I + N] = 1.0;
            for (int n = 0; n < N; n++) { /* net_n = W_n · u_t */
                const double *w = Wk + (size_t)n * M;
                double z = 0.0;
                for (int m = 0; m < M; m++) z += w[m] * ut[m];
                net[n] = z;
            }
            for (int j = 0; j < B; j++) {
                double in = sig(net[C + j]), out = sig(net[C + B + j]);
                y_in[t * B + j] = in;
                for (int c = j * S; c < (j + 1) * S; c++) {
                    double g = sig(net[c]);
                    g_sig[(size_t)t * C + c] = g;
                    s[c] += in * (4.0 * g - 2.0);          /* s_c(t) = s_c(t−1) + y^in_j g(net_c) */
                    y[c] = out * (2.0 * sig(s[c]) - 1.0);  /* y^c(t) = y^out_j h(s_c(t)) */
                }
                y[C + j] = in;
                y[C + B + j] = out;
            }
        }
        double err2 = 0.0;
        for (int o = 0; o < O; o++) { /* y^k = σ(W_k · [y^c, 1]) */
            const double *w = Wok + (size_t)o * (C + 1);
            double z = w[C];
            for (int c = 0; c < C; c++) z += w[c] * y[c];
            yk[o] = sig(z);
            double e = yk[o] - target[(size_t)k * O + o];
            err2 += e * e;
            dk[o] = e * yk[o] * (1.0 - yk[o]); /* ∂E/∂net_k */
        }
        E[k] = 0.5 * err2;
        if (!learning[k]) continue;
        for (int c = 0; c < C; c++) { /* ∂E/∂y^c(T) */
            double z = 0.0;
            for (int o = 0; o < O; o++) z += Wok[(size_t)o * (C + 1) + c] * dk[o];
            e_c[c] = z;
        }
        const double *u_last = u + (size_t)(T - 1) * M;
        for (int j = 0; j < B; j++) {
            double out = y[C + B + j], acc = 0.0;
            for (int c = j * S; c < (j + 1) * S; c++) {
                double hs = sig(s[c]);
                acc += e_c[c] * (2.0 * hs - 1.0);
                d_s[c] = e_c[c] * out * 2.0 * hs * (1.0 - hs); /* ∂E/∂s_c, the same at every t */
            }
            d_out[j] = acc * out * (1.0 - out);
        }
        memset(dW, 0, sizeof(double) * (size_t)N * M);
        for (int t = 0; t < T; t++) {
            const double *ut = u + (size_t)t * M;
            for (int j = 0; j < B; j++) {
                double in = y_in[t * B + j], d_in = 0.0;
                for (int c = j * S; c < (j + 1) * S; c++) {
                    double g = g_sig[(size_t)t * C + c];
                    double d_net_c = d_s[c] * in * 4.0 * g * (1.0 - g); /* ∂E/∂net_c(t) */
                    double *row = dW + (size_t)c * M;
                    for (int m = 0; m < M; m++) row[m] += d_net_c * ut[m];
                    d_in += d_s[c] * (4.0 * g - 2.0);
                }
                d_in *= in * (1.0 - in); /* ∂E/∂net_in,j(t) */
                double *row = dW + (size_t)(C + j) * M;
                for (int m = 0; m < M; m++) row[m] += d_in * ut[m];
            }
        }
        for (int j = 0; j < B; j++) { /* the output gates: only at the last step */
            double *row = dW + (size_t)(C + B + j) * M;
            for (int m = 0; m < M; m++) row[m] = d_out[j] * u_last[m];
        }
        for (size_t n = 0; n < (size_t)N * M; n++) Wk[n] -= lr * dW[n];
        for (int o = 0; o < O; o++) {
            double *w = Wok + (size_t)o * (C + 1);
            for (int c = 0; c < C; c++) w[c] -= lr * dk[o] * y[c];
            w[C] -= lr * dk[o];
        }
    }
    free(u); free(g_sig); free(y_in); free(dW); free(y); free(net); free(s);
    free(yk); free(dk); free(e_c); free(d_s); free(d_out);
    return 0;
}
