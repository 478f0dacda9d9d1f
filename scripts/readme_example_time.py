"""Time the README's Python example of the diagnostics (exact Jacobian norms, Lyapunov spectrum, bounds).

python scripts/readme_example_time.py   # prints the time of each slow call and of the whole example
"""

import time

import torch

import bptt


def main() -> None:
    t0 = time.perf_counter()
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(2, 64)
    x = torch.randn(200, 32, 2)  # (T, B, features)
    tr = bptt.trace(lstm, x, lambda out, state: out[-1].pow(2).mean())
    tr.contribution_norms()
    a = time.perf_counter()
    bptt.diagnostics.jacobian_norms(tr, of="state")
    b = time.perf_counter()
    bptt.diagnostics.jacobian_norms(tr, of="cec")
    c = time.perf_counter()
    lam = bptt.diagnostics.lyapunov(tr).max
    d = time.perf_counter()
    bptt.diagnostics.bounds(lstm)
    e = time.perf_counter()
    print(
        f"jacobian_norms {b - a:.2f} s, lyapunov {d - c:.2f} s (λ_max {lam:.4f}), whole example {e - t0:.2f} s"
    )


if __name__ == "__main__":
    main()
