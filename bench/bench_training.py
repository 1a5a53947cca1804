"""Training speed: course vs PyTorch CPU vs hand-written NumPy, one thread each, side by side.

(a) training throughput of a 784-256-256-10 ReLU MLP, batch 128, float32, softmax
    cross-entropy, SGD (and Adam): target course >= 1.15x PyTorch's samples/s with SGD
    (>= 1.0x with Adam);
(b) BatchNorm1d forward + backward, N=256, D=1024, float32: target <= 0.8x PyTorch's time;
(c) one Adam step over 200 tensors of 64 floats: target faster than PyTorch's default
    per-tensor loop (``foreach=False``); over one tensor of 3M floats: target no slower than
    PyTorch's ``fused=True`` (the per-tensor loop where this torch has no fused CPU Adam);
(d) time to train the digits MLP to >= 95% test accuracy with course (the recipe of
    tests/test_claims.py): target under 30 s.

Every section first checks that the implementations compute the same numbers, then times
them in interleaved rounds. One thread everywhere (BLAS, PyTorch, Numba; ``_common``).
course runs with its compiled kernels (``course.fast.jit``) when Numba is installed; the
machine report says whether it is. Ratios and targets use median process CPU time (steady on a
shared, loaded machine; see ``_common.interleaved``); best rounds and wall time are shown
too. Benchmarks report; they never fail.

    python bench/bench_training.py [--quick] [--only abcd] [--no-torch]

``--no-torch`` measures course in a process without PyTorch, as students run it: importing
torch raises glibc's malloc thresholds for the whole process, which can change how much
NumPy code with megabyte-sized temporaries pays in page faults.
"""
from __future__ import annotations

import _common as C  # first: pins the thread pools before NumPy loads

import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from course import backend as B  # noqa: E402
from course import data as D  # noqa: E402
from course import functional as F  # noqa: E402
from course import losses, nn, optim  # noqa: E402
from course import train as T  # noqa: E402
from course.autodiff import Parameter, Tensor  # noqa: E402

F32 = np.float32
SIZES = [784, 256, 256, 10]
BATCH = 128
LR = 0.01
MLP_TARGETS = {"sgd": 1.15, "adam": 1.0}  # course's throughput over PyTorch's
BN_TARGET = 0.8  # course's BatchNorm1d time over PyTorch's


# -- (a) MLP training throughput -----------------------------------------------------------------

class NumpyMLP:
    """The NumPy floor: the 784-256-256-10 MLP's forward and backward written out by hand.

    Matmuls write into preallocated buffers, ReLU and its mask work in place, the softmax
    cross-entropy gradient is fused, (p − onehot(y))/N, and the update is in place.
    """

    def __init__(self, params: list[np.ndarray], batch: int) -> None:
        self.params = [p.copy() for p in params]  # W1, b1, W2, b2, W3, b3
        self.grads = [np.empty_like(p) for p in self.params]
        h, c = self.params[0].shape[0], self.params[4].shape[0]
        self.h1, self.h2 = np.empty((batch, h), F32), np.empty((batch, self.params[2].shape[0]), F32)
        self.dh1, self.dh2 = np.empty_like(self.h1), np.empty_like(self.h2)
        self.z, self.rows = np.empty((batch, c), F32), np.arange(batch)
        self.adam_state: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self.t = 0

    def forward_backward(self, x: np.ndarray, y: np.ndarray) -> float:
        W1, b1, W2, b2, W3, b3 = self.params
        gW1, gb1, gW2, gb2, gW3, gb3 = self.grads
        n = x.shape[0]
        h1 = np.matmul(x, W1.T, out=self.h1)
        h1 += b1
        np.maximum(h1, 0, out=h1)
        h2 = np.matmul(h1, W2.T, out=self.h2)
        h2 += b2
        np.maximum(h2, 0, out=h2)
        z = np.matmul(h2, W3.T, out=self.z)
        z += b3
        z -= z.max(axis=1, keepdims=True)
        zy = z[self.rows, y]
        np.exp(z, out=z)
        s = np.add.reduce(z, axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) - zy))
        z /= s  # softmax
        z[self.rows, y] -= 1
        z *= 1 / n  # dL/dz of the mean loss
        np.matmul(z.T, h2, out=gW3)
        np.add.reduce(z, axis=0, out=gb3)
        dh2 = np.matmul(z, W3, out=self.dh2)
        dh2 *= h2 > 0
        np.matmul(dh2.T, h1, out=gW2)
        np.add.reduce(dh2, axis=0, out=gb2)
        dh1 = np.matmul(dh2, W2, out=self.dh1)
        dh1 *= h1 > 0
        np.matmul(dh1.T, x, out=gW1)
        np.add.reduce(dh1, axis=0, out=gb1)
        return loss

    def sgd_step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss = self.forward_backward(x, y)
        for p, g in zip(self.params, self.grads):
            g *= LR
            p -= g
        return loss

    def adam_step(self, x: np.ndarray, y: np.ndarray, lr: float = 1e-3, b1: float = 0.9,
                  b2: float = 0.999, eps: float = 1e-8) -> float:
        loss = self.forward_backward(x, y)
        if self.adam_state is None:
            self.adam_state = [(np.zeros_like(p), np.zeros_like(p), np.empty_like(p)) for p in self.params]
        self.t += 1
        c1, c2 = 1 - b1 ** self.t, math.sqrt(1 - b2 ** self.t)
        for p, g, (m, v, tmp) in zip(self.params, self.grads, self.adam_state):
            m *= b1
            m += np.multiply(g, 1 - b1, out=tmp)
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp += eps * c2
            np.divide(m, tmp, out=tmp)
            tmp *= lr * c2 / c1
            p -= tmp
        return loss


def _course_params(model: nn.Module) -> list[np.ndarray]:
    return [p.data for p in model.parameters()]


def _torch_mlp(torch, params: list[np.ndarray]):
    tnn = torch.nn
    model = tnn.Sequential(tnn.Linear(784, 256), tnn.ReLU(), tnn.Linear(256, 256), tnn.ReLU(), tnn.Linear(256, 10))
    with torch.no_grad():
        for p, a in zip(model.parameters(), params):
            p.copy_(torch.from_numpy(a))
    return model


def section_a(torch, repeats: int, target: float) -> tuple[str, dict[str, bool | None]]:
    gen = np.random.default_rng(0)
    data = [(gen.standard_normal((BATCH, 784), dtype=F32), gen.integers(0, 10, BATCH)) for _ in range(8)]
    init = _course_params(nn.MLP(SIZES, rng=0))
    out = []

    # Same weights, same batch, one SGD step each: the losses and new weights must agree.
    x0, y0 = data[0]
    cm = nn.MLP(SIZES, rng=0)
    copt = optim.SGD(cm.parameters(), lr=LR)
    closs = T.train_step(cm, losses.cross_entropy, copt, Tensor(x0), Tensor(y0)).item()
    nm = NumpyMLP(init, BATCH)
    nloss = nm.sgd_step(x0, y0)
    agree = np.isclose(closs, nloss, rtol=1e-5) and np.allclose(cm[0].weight.data, nm.params[0], rtol=1e-4, atol=1e-6)
    if torch is not None:
        tm = _torch_mlp(torch, init)
        topt = torch.optim.SGD(tm.parameters(), lr=LR)
        tloss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x0)), torch.from_numpy(y0))
        tloss.backward()
        topt.step()
        agree = agree and np.isclose(closs, tloss.item(), rtol=1e-5) and np.allclose(
            cm[0].weight.data, tm[0].weight.detach().numpy(), rtol=1e-4, atol=1e-6)
    if not agree:
        raise AssertionError("(a): course, NumPy and PyTorch disagree after one SGD step")
    out.append("check: after one SGD step on the same batch the losses and weights agree (rtol 1e-4)\n")

    def course_runner(opt_name: str):
        model = nn.MLP(SIZES, rng=0)
        opt = optim.SGD(model.parameters(), lr=LR) if opt_name == "sgd" else optim.Adam(model.parameters(), lr=1e-3)
        batches = [(Tensor(x), Tensor(y)) for x, y in data]
        i = [0]

        def step():
            xb, yb = batches[i[0] % len(batches)]
            i[0] += 1
            opt.zero_grad()
            losses.cross_entropy(model(xb), yb).backward()
            opt.step()
        return step

    def torch_runner(opt_name: str):
        model = _torch_mlp(torch, init)
        opt = (torch.optim.SGD(model.parameters(), lr=LR) if opt_name == "sgd"
               else torch.optim.Adam(model.parameters(), lr=1e-3))
        batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
        ce = torch.nn.functional.cross_entropy
        i = [0]

        def step():
            xb, yb = batches[i[0] % len(batches)]
            i[0] += 1
            opt.zero_grad()
            ce(model(xb), yb).backward()
            opt.step()
        return step

    def numpy_runner(opt_name: str):
        m = NumpyMLP(init, BATCH)
        fn = m.sgd_step if opt_name == "sgd" else m.adam_step
        i = [0]

        def step():
            x, y = data[i[0] % len(data)]
            i[0] += 1
            fn(x, y)
        return step

    cases = {}
    for o in ("sgd", "adam"):
        cases[f"course/{o}"] = course_runner(o)
        if torch is not None:
            cases[f"torch/{o}"] = torch_runner(o)
        cases[f"numpy/{o}"] = numpy_runner(o)
    times = C.interleaved(cases, repeats, target)

    header = ["784-256-256-10 MLP, batch 128, float32", *C.RATE_COLUMNS, "throughput vs PyTorch"]
    verdicts = {}
    for o, label in (("sgd", "SGD"), ("adam", "Adam")):
        names = {f"course/{o}": f"course, {label}", f"torch/{o}": f"PyTorch CPU, {label}",
                 f"numpy/{o}": f"hand-written NumPy floor, {label}"}
        ref = f"torch/{o}" if torch is not None else f"numpy/{o}"
        rows = C.compare_rows(times, ref, names, batch=BATCH)
        if torch is None:
            rows.insert(1, [f"PyTorch CPU, {label}", C.TORCH_SKIPPED, "", "", "", ""])
            header[-1] = "throughput vs NumPy floor"
        out.append(C.table(header, rows) + "\n")
        if torch is not None:
            need = MLP_TARGETS[o]
            verdicts[f"(a) MLP throughput, {label}: course >= {need:.2f}x PyTorch"] = (
                C.cpu(times, f"course/{o}") * need <= C.cpu(times, f"torch/{o}"))
    return "\n".join(out), verdicts


# -- (b) BatchNorm1d forward + backward -----------------------------------------------------------

N_BN, D_BN, EPS = 256, 1024, 1e-5


def bn_naive(x, gamma, beta, dy, rm, rv):
    """Textbook NumPy, a fresh array for every intermediate."""
    n = x.shape[0]
    mean = x.mean(axis=0)
    xc = x - mean
    var = (xc * xc).mean(axis=0)
    inv = 1 / np.sqrt(var + EPS)
    xhat = xc * inv
    y = gamma * xhat + beta
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dx = (gamma * inv / n) * (n * dy - dbeta - xhat * dgamma)
    rm = 0.9 * rm + 0.1 * mean
    rv = 0.9 * rv + 0.1 * var * (n / (n - 1))
    return y, dx, dgamma, dbeta, rm, rv


class BNBuffered:
    """The NumPy floor: the same formulas with every N×D intermediate in a reused buffer."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.xhat, self.y, self.dx = (np.empty(shape, F32) for _ in range(3))

    def __call__(self, x, gamma, beta, dy, rm, rv):
        n = x.shape[0]
        mean = np.add.reduce(x, axis=0) / n
        xhat = np.subtract(x, mean, out=self.xhat)
        var = np.einsum("ij,ij->j", xhat, xhat) / n
        inv = 1 / np.sqrt(var + EPS)
        xhat *= inv
        y = np.multiply(xhat, gamma, out=self.y)
        y += beta
        dbeta = np.add.reduce(dy, axis=0)
        dgamma = np.einsum("ij,ij->j", dy, xhat)
        dx = np.multiply(xhat, dgamma / n, out=self.dx)
        dx += dbeta / n
        np.subtract(dy, dx, out=dx)
        dx *= gamma * inv
        rm *= 0.9
        rm += 0.1 * mean
        rv *= 0.9
        rv += (0.1 * n / (n - 1)) * var
        return y, dx, dgamma, dbeta, rm, rv


def section_b(torch, repeats: int, target: float) -> tuple[str, dict[str, bool | None]]:
    gen = np.random.default_rng(1)
    X = (gen.standard_normal((N_BN, D_BN), dtype=F32) * 2 + 0.5).astype(F32)
    G = gen.standard_normal((N_BN, D_BN), dtype=F32)
    gamma = (1 + 0.1 * gen.standard_normal(D_BN)).astype(F32)
    beta = (0.1 * gen.standard_normal(D_BN)).astype(F32)

    def course_bn():
        bn = nn.BatchNorm1d(D_BN)
        bn.weight.data[...], bn.bias.data[...] = gamma, beta
        g = Tensor(G)

        def run():
            x = Tensor(X, requires_grad=True)
            bn(x).backward(g)
            bn.zero_grad()
            return x.grad.data, bn
        return run

    def course_functional():
        rm, rv = np.zeros(D_BN, F32), np.ones(D_BN, F32)

        def run():
            y, mean, var = F.batchnorm_forward(X, gamma, beta, EPS)
            dx, dgamma, dbeta = F.batchnorm_backward(G, X, gamma, mean, var, EPS)
            F.update_running_stats(rm, rv, mean, var, N_BN)
            return dx
        return run

    def course_standard():
        inner = course_bn()

        def run():
            with B.standard_only():
                return inner()
        return run

    def torch_bn():
        bn = torch.nn.BatchNorm1d(D_BN)
        with torch.no_grad():
            bn.weight.copy_(torch.from_numpy(gamma))
            bn.bias.copy_(torch.from_numpy(beta))
        xt, g = torch.from_numpy(X), torch.from_numpy(G)

        def run():
            x = xt.detach().requires_grad_()
            bn(x).backward(g)
            bn.zero_grad()
            return x.grad
        return run

    def numpy_run(fn):
        rm, rv = np.zeros(D_BN, F32), np.ones(D_BN, F32)
        return lambda: fn(X, gamma, beta, G, rm, rv)[1]

    cases = {"course": course_bn(), "course_f": course_functional(), "course_std": course_standard()}
    if torch is not None:
        cases["torch"] = torch_bn()
    cases["numpy_naive"] = numpy_run(bn_naive)
    cases["numpy_buf"] = numpy_run(BNBuffered((N_BN, D_BN)))

    ref = bn_naive(X.astype(np.float64), gamma, beta, G.astype(np.float64), 0, 1)[1]
    for key, fn in cases.items():
        dx = fn()
        dx = dx[0] if isinstance(dx, tuple) else dx
        dx = dx.numpy() if hasattr(dx, "numpy") else np.asarray(dx)
        if not np.allclose(dx, ref, rtol=1e-3, atol=1e-5):
            raise AssertionError(f"(b): {key} computes a different dx than float64 NumPy")
    out = ["check: every implementation's dx matches a float64 reference (rtol 1e-3)\n"]

    times = C.interleaved(cases, repeats, target)
    names = {"course": "course BatchNorm1d module (fused graph node)",
             "torch": "PyTorch CPU BatchNorm1d",
             "numpy_buf": "hand-written NumPy floor (reused buffers)",
             "numpy_naive": "naive NumPy (fresh temporaries)",
             "course_f": "course functional kernels on arrays (no graph)",
             "course_std": "course module, standard-only fallback"}
    ref_key = "torch" if torch is not None else "numpy_buf"
    rows = C.compare_rows(times, ref_key, names)
    if torch is None:
        rows.insert(1, ["PyTorch CPU BatchNorm1d", C.TORCH_SKIPPED, "", "", ""])
    what = "PyTorch" if torch is not None else "NumPy floor"
    out.append(C.table([f"BatchNorm1d fwd+bwd, N={N_BN}, D={D_BN}, float32", *C.TIME_COLUMNS,
                        f"time vs {what}"], rows))
    verdicts = {}
    if torch is not None:
        verdicts[f"(b) BatchNorm1d fwd+bwd: course <= {BN_TARGET}x PyTorch time"] = (
            C.cpu(times, "course") <= BN_TARGET * C.cpu(times, "torch"))
    return "\n".join(out), verdicts


# -- (c) one Adam step -------------------------------------------------------------------------------

def numpy_adam_loop(params, grads, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """Textbook per-tensor NumPy Adam with fresh temporaries (the pure-rule cost, no framework)."""
    state = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    t = [0]

    def step():
        t[0] += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            m, v = state[i]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            state[i] = (m, v)
            p[...] = p - lr * (m / (1 - b1 ** t[0])) / (np.sqrt(v / (1 - b2 ** t[0])) + eps)
    return step


def own_adam(param, grad, state, **hyper):
    """A rule passed as ``update=`` like a student's: the class then calls it per tensor on
    parameter-shaped arrays (no flat buffer, no fused kernel), so this row is the pure-rule path."""
    return optim.adam_step(param, grad, state, **hyper)


def _host(p) -> np.ndarray:
    """A course Parameter's or a torch tensor's values as a NumPy array."""
    return p.data if isinstance(p, Tensor) else p.detach().numpy()


def section_c(torch, repeats: int, target: float) -> tuple[str, dict[str, bool | None]]:
    out, verdicts = [], {}
    for shapes, label in (([(64,)] * 200, "200 tensors x 64 floats"), ([(3_000_000,)], "1 tensor x 3M floats")):
        gen = np.random.default_rng(2)
        init = [gen.standard_normal(s, dtype=F32) for s in shapes]
        grads = [gen.standard_normal(s, dtype=F32) for s in shapes]

        def course_opt(**kw):
            params = [Parameter(p.copy()) for p in init]
            for p, g in zip(params, grads):
                p.grad = Tensor(g)
            return params, optim.Adam(params, lr=1e-3, **kw)

        def torch_opt(**kw):
            params = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in init]
            for p, g in zip(params, grads):
                p.grad = torch.from_numpy(g)
            return params, torch.optim.Adam(params, lr=1e-3, **kw)

        variants = {"course": lambda: course_opt(), "course_rule": lambda: course_opt(update=own_adam)}
        if torch is not None:
            variants["torch_loop"] = lambda: torch_opt(foreach=False)
            variants["torch_foreach"] = lambda: torch_opt(foreach=True)
            try:
                torch_opt(fused=True)[1].step()
                variants["torch_fused"] = lambda: torch_opt(fused=True)
            except (RuntimeError, ValueError):  # no fused CPU Adam in this torch
                pass

        # Three steps from the same start: every variant must land on the same parameters.
        finals = {}
        for key, make in variants.items():
            params, opt = make()
            for _ in range(3):
                opt.step()
            finals[key] = np.concatenate([_host(p).ravel() for p in params])
        for key, v in finals.items():
            if not np.allclose(v, finals["course"], rtol=1e-5, atol=1e-6):
                raise AssertionError(f"(c) {label}: {key} disagrees with course after 3 Adam steps")

        cases = {key: make()[1].step for key, make in variants.items()}
        cases["numpy"] = numpy_adam_loop([p.copy() for p in init], grads)
        times = C.interleaved(cases, repeats, target)
        names = {"course": "course Adam (default: flat buffer + fused kernel)",
                 "torch_loop": "PyTorch Adam, foreach=False (default per-tensor loop)",
                 "torch_foreach": "PyTorch Adam, foreach=True",
                 "torch_fused": "PyTorch Adam, fused=True",
                 "course_rule": "course Adam(update=<own rule>): pure adam_step per tensor",
                 "numpy": "textbook NumPy per tensor (fresh temporaries)"}
        peer = "torch_fused" if len(shapes) == 1 and "torch_fused" in times else "torch_loop"
        rows = C.compare_rows(times, peer if torch is not None else "course", names)
        if torch is None:
            rows.insert(1, ["PyTorch Adam", C.TORCH_SKIPPED, "", "", ""])
        what = f"PyTorch {names[peer].split(', ')[1]}" if torch is not None else "course"
        out.append(C.table([f"one Adam step, {label}, float32", *C.TIME_COLUMNS, f"time vs {what}"], rows) + "\n")
        if torch is not None:
            verdicts[f"(c) Adam step, {label}: course no slower than {what}"] = (
                C.cpu(times, "course") <= C.cpu(times, peer))
    out.insert(0, "check: after 3 steps from the same start every variant has the same parameters (rtol 1e-5)\n")
    return "\n".join(out), verdicts


# -- (d) digits to 95% -------------------------------------------------------------------------------

def digits_once() -> tuple[float, float, float]:
    """tests/test_claims.py's recipe, timed from loading the data to the test accuracy:
    returns (wall seconds, CPU seconds, test accuracy)."""
    t0, c0 = time.perf_counter(), time.process_time()
    X, y = D.load_digits()
    (Xtr, ytr), _, (Xte, yte) = D.split(X, y, val=0.15, test=0.15, rng=0, stratify=True)
    s = D.Standardizer().fit(Xtr)
    model = nn.MLP([64, 128, 10], rng=0)
    T.fit(model, losses.cross_entropy, optim.Adam(model.parameters(), lr=2e-3), (s.transform(Xtr), ytr),
          epochs=10, batch_size=32, rng=0, progress=False)
    acc = T.evaluate(model, s.transform(Xte), yte)["accuracy"]
    return time.perf_counter() - t0, time.process_time() - c0, acc


def section_d(repeats: int) -> tuple[str, dict[str, bool | None]]:
    runs = [digits_once() for _ in range(repeats)]
    wall, cpu = C.median([r[0] for r in runs]), C.median([r[1] for r in runs])
    acc = runs[0][2]
    ok = wall < 30 and acc >= 0.95
    rows = [["MLP 64-128-10, Adam lr 2e-3, 10 epochs, batch 32 (1,257 training images)",
             C.fmt_time(wall), C.fmt_time(cpu), f"{acc:.2%}", C.verdict(ok)]]
    text = C.table([f"course on the 8x8 digits, data loading to test accuracy ({repeats} runs)",
                    "wall time, median", "CPU time, median", "test accuracy", "target < 30 s and >= 95%"], rows)
    return text, {"(d) digits MLP to >= 95% test accuracy in < 30 s": ok}


def main() -> None:
    parser = C.parser(__doc__.splitlines()[0])
    parser.add_argument("--only", default="abcd", help="sections to run, e.g. --only ab")
    args = parser.parse_args()
    torch = C.load_torch(blocked=args.no_torch)
    repeats = args.repeats or (3 if args.quick else 7)
    target = 0.05 if args.quick else 0.25
    print("## Training speed: course vs PyTorch CPU vs hand-written NumPy\n")
    print(C.machine_report(torch), "\n")
    verdicts: dict[str, bool | None] = {}
    sections = {"a": ("(a) MLP training throughput", lambda: section_a(torch, repeats, target)),
                "b": ("(b) BatchNorm1d forward + backward", lambda: section_b(torch, repeats, target)),
                "c": ("(c) one Adam step", lambda: section_c(torch, repeats, target)),
                "d": ("(d) digits MLP to 95% test accuracy", lambda: section_d(1 if args.quick else 3))}
    for key, (title, run) in sections.items():
        if key not in args.only:
            continue
        print(f"### {title}\n")
        text, v = run()
        print(text, "\n")
        print(C.load_note(), "\n")
        verdicts.update(v)
    print("### Targets\n")
    if verdicts:
        print(C.table(["target", "result"], [[k, C.verdict(v)] for k, v in verdicts.items()]))
    if torch is None:
        print(f"\nPyTorch rows and their targets: {C.TORCH_SKIPPED}")


if __name__ == "__main__":
    main()
