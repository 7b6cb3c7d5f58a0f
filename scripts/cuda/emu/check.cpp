// Runs every kernel of host/kernels/retort.cu on the CPU under simt.h, with the launch shapes the
// host uses, against straightforward double-precision references. `scripts/cuda/emu/run.sh`.
#include "simt.h"
#include "../../../host/kernels/retort.cu"

#include <cstdio>
#include <random>

static int failures = 0;
static void expect(bool ok, const char *what, double got, double want) {
    if (!ok) {
        failures++;
        std::printf("FAIL %s: got %.7g want %.7g\n", what, got, want);
    }
}
static bool close(double a, double b, double tol) {
    return (std::isnan(a) && std::isnan(b)) || std::fabs(a - b) <= tol * (1 + std::fabs(b));
}
static unsigned rows_grid(int64_t n) { return (unsigned)((n + 3) / 4 > 0 ? (n + 3) / 4 : 1); }
static unsigned elem_grid(int64_t n) { return (unsigned)std::min<int64_t>(std::max<int64_t>((n + 255) / 256, 1), 65535); }

// log softmax(x * it) of a row, in double.
static std::vector<double> log_softmax(const float *x, int64_t c, double it) {
    double m = -INFINITY;
    for (int64_t j = 0; j < c; j++) m = std::max(m, x[j] * it);
    double s = 0;
    for (int64_t j = 0; j < c; j++) s += std::exp(x[j] * it - m);
    std::vector<double> out(c);
    for (int64_t j = 0; j < c; j++) out[j] = x[j] * it - m - std::log(s);
    return out;
}

static void kl(int64_t n, int64_t c, float tau, bool mask) {
    std::mt19937 rng(n * 1000 + c);
    std::normal_distribution<float> N(0, 3);
    std::vector<float> p(n * c), q(n * c), g(n), out(n), gp(n * c), gq(n * c);
    for (auto &v : p) v = N(rng);
    for (auto &v : q) v = N(rng);
    for (auto &v : g) v = N(rng);
    if (mask)
        for (int64_t r = 0; r < n; r++) p[r * c + (r % c)] = -INFINITY;
    float it = 1 / tau;
    launch(rows_grid(n), 128, [&] { retort_kl_rows_f32(p.data(), q.data(), out.data(), n, c, it); });
    launch(rows_grid(n), 128, [&] { retort_kl_rows_grad_f32(p.data(), q.data(), g.data(), gp.data(), n, c, it, 1); });
    launch(rows_grid(n), 128, [&] { retort_kl_rows_grad_f32(p.data(), q.data(), g.data(), gq.data(), n, c, it, 0); });
    for (int64_t r = 0; r < n; r++) {
        auto lp = log_softmax(&p[r * c], c, it), lq = log_softmax(&q[r * c], c, it);
        double k = 0;
        for (int64_t j = 0; j < c; j++)
            if (std::isfinite(lp[j])) k += std::exp(lp[j]) * (lp[j] - lq[j]);
        expect(close(out[r], k, 1e-5), "kl value", out[r], k);
        for (int64_t j = 0; j < c; j++) {
            double wq = g[r] * it * (std::exp(lq[j]) - std::exp(lp[j]));
            double wp = std::isfinite(lp[j]) ? g[r] * it * std::exp(lp[j]) * (lp[j] - lq[j] - k) : 0;
            expect(close(gq[r * c + j], wq, 1e-5), "kl grad q", gq[r * c + j], wq);
            expect(close(gp[r * c + j], wp, 1e-5), "kl grad p", gp[r * c + j], wp);
        }
    }
}

static void ce(int64_t n, int64_t c) {
    std::mt19937 rng(n + c);
    std::normal_distribution<float> N(0, 2);
    std::vector<float> z(n * c), g(n), out(n), gz(n * c);
    std::vector<int64_t> y(n);
    for (auto &v : z) v = N(rng);
    for (auto &v : g) v = N(rng);
    for (int64_t r = 0; r < n; r++) y[r] = r % 5 == 1 ? -100 : (r % 7 == 3 ? c : (r * 3) % c);
    launch(rows_grid(n), 128, [&] { retort_ce_rows_f32(z.data(), y.data(), out.data(), n, c); });
    launch(rows_grid(n), 128, [&] { retort_ce_rows_grad_f32(z.data(), y.data(), g.data(), gz.data(), n, c); });
    for (int64_t r = 0; r < n; r++) {
        auto lz = log_softmax(&z[r * c], c, 1);
        double want = y[r] < 0 ? 0 : (y[r] >= c ? NAN : -lz[y[r]]);
        expect(close(out[r], want, 1e-5), "ce value", out[r], want);
        for (int64_t j = 0; j < c; j++) {
            double w = y[r] < 0 ? 0 : (y[r] >= c ? NAN : g[r] * (std::exp(lz[j]) - (j == y[r])));
            expect(close(gz[r * c + j], w, 1e-5), "ce grad", gz[r * c + j], w);
        }
    }
}

static void optimizers() {
    const int64_t n = 1000;
    std::vector<float> w(n), g(n), m(n, 0), v(n, 0);
    std::vector<double> rw(n), rm(n, 0), rv(n, 0);
    for (int64_t i = 0; i < n; i++) rw[i] = w[i] = std::sin(i * 0.37f);
    float lr = 0.01f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f;
    for (int t = 1; t <= 3; t++) {
        for (int64_t i = 0; i < n; i++) g[i] = std::cos(i * 0.11f + t);
        float c1 = 1 - std::pow(b1, t), c2 = 1 - std::pow(b2, t);
        launch(elem_grid(n), 256, [&] {
            retort_adamw_f32(w.data(), g.data(), m.data(), v.data(), n, b1, b2, eps, 1 - lr * wd, lr / c1, std::sqrt(c2));
        });
        for (int64_t i = 0; i < n; i++) {
            rm[i] = b1 * rm[i] + (1 - b1) * g[i];
            rv[i] = b2 * rv[i] + (1 - b2) * (double)g[i] * g[i];
            rw[i] = rw[i] * (1 - lr * wd) - lr * (rm[i] / c1) / (std::sqrt(rv[i] / c2) + eps);
        }
    }
    for (int64_t i = 0; i < n; i++) expect(close(w[i], rw[i], 1e-5), "adamw", w[i], rw[i]);
    // SGD, Nesterov, weight decay: PyTorch's buffer starts as the first gradient.
    std::vector<float> sw(n), buf(n, 7);
    std::vector<double> qw(n), qb(n);
    for (int64_t i = 0; i < n; i++) qw[i] = sw[i] = std::sin(i * 0.37f);
    float mu = 0.9f, swd = 1e-3f;
    for (int t = 1; t <= 3; t++) {
        for (int64_t i = 0; i < n; i++) g[i] = std::cos(i * 0.11f + t);
        launch(elem_grid(n), 256, [&] { retort_sgd_f32(sw.data(), g.data(), buf.data(), n, lr, mu, swd, t == 1, 1); });
        for (int64_t i = 0; i < n; i++) {
            double d = g[i] + swd * qw[i];
            qb[i] = t == 1 ? d : mu * qb[i] + d;
            qw[i] -= lr * (d + mu * qb[i]);
        }
    }
    for (int64_t i = 0; i < n; i++) expect(close(sw[i], qw[i], 1e-5), "sgd nesterov", sw[i], qw[i]);
    // Without momentum the buffer is never touched (the host passes null).
    std::vector<float> pw(n, 1);
    launch(elem_grid(n), 256, [&] { retort_sgd_f32(pw.data(), g.data(), nullptr, n, lr, 0, 0, 1, 0); });
    expect(close(pw[5], 1 - lr * g[5], 1e-6), "plain sgd", pw[5], 1 - lr * g[5]);
}

static void dropout() {
    const int64_t n = 1 << 14;
    std::vector<float> a(n), b(n);
    launch(elem_grid(n), 256, [&] { retort_dropout_mask_f32(a.data(), n, 0.75f, 1 / 0.75f, 7); });
    launch(elem_grid(n), 256, [&] { retort_dropout_mask_f32(b.data(), n, 0.75f, 1 / 0.75f, 8); });
    int64_t kept = 0, same = 0;
    for (int64_t i = 0; i < n; i++) {
        kept += a[i] > 0;
        same += a[i] == b[i];
        expect(a[i] == 0 || a[i] == 1 / 0.75f, "dropout value", a[i], 1 / 0.75f);
    }
    double frac = (double)kept / n;
    expect(std::fabs(frac - 0.75) < 0.015, "dropout kept fraction", frac, 0.75);
    expect(same < n * 0.7, "dropout seeds differ", same, n * 0.625);
}

int main() {
    kl(1, 1, 1, false);
    kl(7, 10, 4, false);
    kl(9, 33, 2, true);
    kl(5, 300, 20, true);
    ce(6, 37);
    ce(13, 10);
    optimizers();
    dropout();
    std::printf(failures ? "%d failures\n" : "all kernels match their references\n", failures);
    return failures != 0;
}
