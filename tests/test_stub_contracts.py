"""Derive before coding: a released stub states its contract, never the formula it asks for.

For every graded function of the catalogs, the student edition's answer cell (the one that
defines the function) is read from ``notebooks/``; its text, with all whitespace removed, must
contain none of the exercise's forbidden patterns (the formula, or the telling part of it).
The same holds for the exercise's released test cell (the one graded under its id): a visible
test checks literal numbers and facts, and its messages name the mistake, not the formula.
The formula belongs in the markdown above, as the result of a derivation, behind a hint: the
exercise's task markdown must hold a ``<details>`` hint, and the same patterns (plus their
LaTeX forms, read through ``flat_math``) may appear in that markdown only inside ``<details>``.
A number exercise's answer (``ANSWERS``) appears in no markdown of its notebook outside
``<details>`` and not in its test cell.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from grader.config import Course
from grader.nb import split_hidden

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = Course.at(ROOT).catalog().functions
VALUES = [ex for ex in Course.at(ROOT).catalog().exercises if ex.kind == "value"]

# Substrings, written without spaces (the stub text is compared with its whitespace removed).
FORBIDDEN: dict[str, list[str]] = {
    # 06_training_in_practice
    "perceptron_loss": ["max(0,-", "-y*f", "relu(-(input", "max(axis=1)-"],
    "multi_margin_loss": [
        "1-x[y]+x[j]", "margin-x[y]+x[j]", "margin-s_y+s_j", "margin-true_score", "relu(margin-"],
    "capped_inverse": ["100/t", "min(eta_max,c/", "c/t)"],
    "piecewise_constant": ["searchsorted", "values[i]", "sum(m<=t", "bisect", "values[sum("],
    "inverse_sqrt": ["/sqrt(t", "t**-0.5", "np.sqrt", "lr0/math.sqrt(t)"],
    "rmsprop_nesterov_step": ["sqrt(r", "√r", "alpha*v-", "(1-alpha)*", "momentum*b"],
    "clip_grad_norm": [
        "max_norm/(", "/(norm+1e-6", "min(1.0,max_norm", "min(1,max_norm", "sqrt(sum(", "linalg.norm"],
    "gradient_step_change": [
        "0.5*eps**2", "½ε²", "eps**2*g@H@g", "0.5*lr**2", "lr**2*", "grad@hessian@grad", "lr*float(grad@grad)",
        "0.5*0.25*8", "-lrg^Tg"],
    "best_step": ["g@g/", "gᵀg/gᵀHg", "g.T@g/", "(grad@grad)/", "/float(grad@hessian", "g^Tg/g^THg"],
    "standard_error": [
        "/sqrt(n", "/√n", "std/", "std(axis=0)/", "/sqrt(batch_size", "/np.sqrt(batch_size"],
    "terminal_velocity": ["/(1-alpha", "/(1−α", "/(1-momentum)", "linalg.norm(grad)*", "1/(1-a)"],
    "equivalent_weights": ["W/alpha", "alpha*W", "[:,perm]", "w2/c", "w2/scale", ")[perm]"],
    "mlp_backward": [
        "W.T@delta", "Wᵀδ", "delta.T@", "delta@weights", "delta.sum(axis=0)", "1-np.tanh", "delta^Tv"],
    "numerical_gradient": ["f(x+eps", "/(2*eps)", "/(2eps)", "2*x.size", "epse_iandx-eps"],
    "topological_order": ["reversing", "post-order", "postorder"],
    "vjp_add": ["(g,g)", "ga=g", "gb=g", "g.sum(axis"],
    "vjp_mul": ["g*b", "g*a"],
    "vjp_matmul": ["g@B", "A^T@g", "A.T@g", "B^T", "B.T", "tile(B.sum", "tile(A.sum"],
    "vjp_exp": ["g*exp(a)", "g*np.exp"],
    "vjp_log": ["g/a"],
    "vjp_relu": ["gwherea>0", "g*(a>0)", "1[a>0]", "passeswherea>0"],
    "vjp_sum": ["gbroadcast", "expand_dims", "broadcast_to"],
    "backward": ["fn.vjp(node.grad", "addsupwhatitreceives"],
    "batchnorm_forward": ["sqrt(var+eps)", "(x-mean)", "((x-mean)**2)", "var/(var+"],
    "batchnorm_backward_graph": ["sum(dy", "dy*xhat", "thesumofdy"],
    "batchnorm_backward": ["N*dy", "sum(dy*xhat)", "gamma/(N", "dbeta=sum(dy)", "thesumofdy"],
    "update_running_stats": ["(1-momentum)*", "n/(n-1)", "*momentum*", "*4/3", "*10/9"],
    "fold_batchnorm": ["gamma/sqrt", "beta-a*", "sqrt(running_var+eps)"],
    "fans": ["shape[1]*", "prod(shape[2:])", "shape[0]*"],
    "calculate_gain": ["sqrt(2", "5/3", "1+a^2", "1+a**2", "1+a*a"],
    "xavier_normal": ["2/(fan_in+fan_out)", "fan_in+fan_out", "/(200+600)", "/(144+1152)"],
    "xavier_uniform": ["sqrt(6", "fan_in+fan_out"],
    "kaiming_normal": ["sqrt(2/fan", "gain^2/fan", "gain**2/fan", "gain/sqrt(fan", "2/600", "2/144", "**2/600"],
    "kaiming_uniform": ["sqrt(3", "sqrt(6", "gain*sqrt", "2/600", "2/(1.25*"],
    "sgd_step": ["momentum*b", "(1-dampening)*g", "lr*d", "weight_decay*p", "0.9b+g", "p-lrb", "g+0.1p", "(1-dampening)g"],
    "adagrad_step": ["sqrt(r)", "g*g", "(t-1)*lr_decay", "r+g"],
    "rmsprop_step": ["(1-alpha)", "sqrt(r)", "g*g", "momentum*b"],
    "adam_step": ["1-beta1**t", "1-beta2**t", "sqrt(v_hat)", "(1-beta1)*g", "g*g", "/(np.sqrt(v"],
    "newton_step": ["(H+damping*I)", "H+damping", "lr*delta", "(H+I)delta"],
    "linear_decay": ["(1-a)*lr0", "t/tau", "a*lr_tau"],
    "dropout_mask": ["1/(1-p)"],
    "dropout": ["(1-p)*x", "x*dropout_mask", "(1-p)x"],
    "l2_penalty": ["2*lam*w", "sum(w**2)", "lam*sum"],
    "early_stopping_epoch": ["best_epoch+patience", "patienceepochsafter"],
}
GENERIC = ["<-"]  # an update rule written out (p <- p - lr * d) is the formula, whatever it is

# The same formulas as the markdown writes them in the notes' notation, after flat_math (LaTeX
# commands spelled out, \frac{a}{b} -> (a)/(b), \sqrt x -> sqrt(x), ** -> ^, no spaces):
# juxtaposed products have no "*", so the code patterns above miss them.
LATEX: dict[str, list[str]] = {
    "numerical_gradient": ["(f(x+epse_i)-f(x-epse_i))/(2eps)"],
    "topological_order": ["thenreverse"],
    "vjp_matmul": ["barYB^T", "A^TbarY"],
    "vjp_exp": ["bary*e^a"],
    "vjp_log": ["bary/a"],
    "vjp_sum": ["expand_dims"],
    "sgd_step": ["mub+(1-tau)g", "p<-p-lr*b", "g<-g+lamp", "mub+g", "g+mub"],
    "adagrad_step": ["(lr)/(1+(t-1)", "r<-r+g*g"],
    "rmsprop_step": ["alphar+(1-alpha)", "mub+s"],
    "adam_step": ["beta1m+(1-beta1)", "beta2v+(1-beta2)", "(m)/(1-beta1^t)"],
    "newton_step": ["(H+damping*I)Delta=g"],
    "linear_decay": ["(1-alpha)eps0+alphaeps_tau", "alpha=(k)/(tau)"],
    "fans": ["prod_(dge2)", "(in,out)"],
    "calculate_gain": ["sqrt(2/(1+a^2))", "sqrt(2)|"],
    "xavier_normal": ["(2)/(fan_in+fan_out)", "gsqrt(2/(fan_in+fan_out))"],
    "batchnorm_forward": ["(x_(ij)-mu_j)/(sqrt(sigma_j^2+eps))", "(1)/(N)sum_i(x_(ij)-mu_j)^2"],
    "batchnorm_backward_graph": ["dx_i+=dmu/N", "dv=ds/(2s)", "ds=-dr/s^2"],
    "update_running_stats": ["(1-m)running_mean+mmu_B", "m(N)/(N-1)sigma_B^2"],
    "fold_batchnorm": ["a=(gamma)/(sqrt(V+eps))", "b=beta-aE"],
    "dropout_mask": ["m_ih_i/(1-p)", "1/0.7", "(1-p)h_i"],
    "dropout": ["(1-p)h_i", "(1-p)x"],
    "l2_penalty": ["2lamW", "(1-2etalam)W"],
    "standard_error": ["sigma^2/n", "sigma/sqrt(n)"],
    "terminal_velocity": ["tentimesfaster"],
}
# Facts the text must state although a stub may not: conventions, not results to derive.
STATED: dict[str, list[str]] = {
    "numerical_gradient": ["f(x+eps"],      # the notes' one-sided quotient, the starting point
    "adagrad_step": ["(t-1)*lr_decay"],     # PyTorch's definition of lr_decay
    "calculate_gain": ["5/3"],              # PyTorch's rounded tanh gain: empirical, not derived
    "rmsprop_nesterov_step": ["sqrt(r"],    # the notes' algorithm, which the exercise rewrites
    "piecewise_constant": ["values[i]"],    # the definitions of the schedules: nothing to derive
    "inverse_sqrt": ["/sqrt(t"],
}

# Number exercises: what would answer them, as regular expressions on flat_math text (the value,
# the expression that computes it, or the formula it comes from). Searched in every markdown cell
# of the released notebook outside <details> and in the exercise's own test cell.
ANSWERS: dict[str, list[str]] = {
    "answer_fd_evals": [r"159,?020", r"2\*79,?510", r"twiceper(parameter|entry|weight)", r"2\*x\.size"],
    "answer_jacobian_passes": [r"(?<!\d)10backwardpasses", r"onebackwardpassper(output|logit|row)"],
    "slip_std": [r"1/sqrt\(?5", r"\(1\)/\(sqrt\(?5", r"1/√5", r"0\.447"],
    "running_var": [r"(?<![\d.])1\.30?(?![\d%])", r"3\.5\*8/7"],
    "answer_leaky_he_var": [r"g\^2/fan_in", r"\(1\+a\^2\)/\(?2", r"2/\(\(1\+a\^2\)", r"0\.0047", r"1\.0625"],
    "answer_he_uniform_bound": [r"gsqrt\(3/fan_in\)", r"sqrt\(6/fan_in\)", r"sqrt\(6/64\)", r"0\.306"],
    "condition_number": [r"3\+2sqrt\(?2", r"3\+2√2", r"5\.828?"],
    "adam_first_step": [r"lr/11", r"0\.01/11", r"9\.09e-4", r"0\.000909", r"g/\(\|g\|\+eps\)", r"aboutlr\*sign\(g\)"],
    "symmetry_count": [r"13,?824", r"\(4!\)\^3", r"24\^3"],
    "initial_losses": [r"ln\(?10", r"log\(10\)", r"2\.30[23]?", r"\(C-1\)/C", r"1-1/C", r"lnC"],
    "dropout_variance": [r"p/\(1-p\)", r"\(p\)/\(1-p\)", r"(?<![\d.])0\.25(?!\d)"],
    "weight_decay": [r"weight_decay=2(λ|lam)(?!/n)", r"(λ|lam)'=2(λ|lam)(?!/n)", r"(?<![\d.e])1e-3",
                     r"10\^\(-3\)", r"(?<![\d.])0\.001(?!\d)"],
}
# Number exercises whose answer has no telling written form (a small count, a set of letters).
NO_PATTERN = {"answer_distinct_units", "convergent_schedules"}


def _released(ex) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / ex.assignment / f"{ex.notebook}.ipynb", as_version=4)


def _stub_cell(ex) -> str:
    """The released answer cell that defines ``ex.function``."""
    for cell in _released(ex).cells:
        if cell.cell_type == "code" and re.search(rf"^def {ex.function}\(", cell.source, re.M):
            return cell.source
    raise AssertionError(f"{ex.key}: no cell defines {ex.function}(); run python -m grader build")


def _test_cell(ex) -> str:
    """The visible part of the released code cell graded under ``ex.id`` (the catalog's id is
    the cell's nbgrader grade_id)."""
    cells = [c.source for c in _released(ex).cells if c.cell_type == "code"
             and c.metadata.get("nbgrader", {}).get("grade") and c.metadata["nbgrader"].get("grade_id") == ex.id]
    assert len(cells) == 1, f"{ex.key}: expected one graded code cell, found {len(cells)}; run python -m grader build"
    return "\n".join(split_hidden(cells[0])[0])


def _docstring(source: str, name: str) -> str | None:
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return ast.get_docstring(fn)


def test_every_catalogued_function_has_patterns():
    missing = sorted({ex.function for ex in FUNCTIONS} - set(FORBIDDEN))
    assert not missing, f"add forbidden patterns for {missing} to FORBIDDEN"


@pytest.mark.parametrize("ex", FUNCTIONS, ids=lambda ex: f"{ex.assignment}:{ex.id}")
def test_stub_states_contract_not_formula(ex):
    source = _stub_cell(ex)
    doc = _docstring(source, ex.function)
    assert doc and len(doc.split()) >= 12, (
        f"{ex.function}: the stub needs a docstring stating its contract (arguments, shapes, "
        f"dtype, what it returns, what it must not do)")
    flat = re.sub(r"\s+", "", source)
    leaked = [p for p in FORBIDDEN[ex.function] + GENERIC if p in flat]
    assert not leaked, (
        f"{ex.function}: the released stub gives away the formula ({leaked}); state the "
        f"contract in the docstring and let the markdown above guide the derivation")


@pytest.mark.parametrize("ex", FUNCTIONS, ids=lambda ex: f"{ex.assignment}:{ex.id}")
def test_visible_tests_do_not_spell_the_formula(ex):
    flat = re.sub(r"\s+", "", _test_cell(ex))
    leaked = [p for p in FORBIDDEN[ex.function] + GENERIC if p in flat]
    assert not leaked, (
        f"{ex.id}: the released test cell writes out the formula ({leaked}); compare with literal "
        f"expected numbers or facts, and let messages name the mistake rather than the formula")


def test_every_number_exercise_has_patterns():
    missing = sorted({ex.id for ex in VALUES} - set(ANSWERS) - NO_PATTERN)
    assert not missing, f"add the patterns that would answer {missing} to ANSWERS"


@pytest.mark.parametrize("ex", [ex for ex in VALUES if ex.id in ANSWERS], ids=lambda ex: f"{ex.assignment}:{ex.id}")
def test_number_exercise_is_not_answered_outside_the_hint(ex):
    texts = {f"markdown cell {i}": flat_math(c.source) for i, c in enumerate(_released(ex).cells)
             if c.cell_type == "markdown"}
    texts["its test cell"] = flat_math(_test_cell(ex))
    leaked = [(where, p) for where, text in texts.items() for p in ANSWERS[ex.id] if re.search(p, text)]
    assert not leaked, (
        f"{ex.id}: the released notebook gives the answer away ({leaked}); ask for it, and put the value "
        f"or the formula it follows from inside a <details> hint, or phrase the text so that it does not answer it")


def _graded_function_cells(nb, assignment: str) -> list[int]:
    ids = {ex.id for ex in FUNCTIONS if ex.assignment == assignment}
    return [i for i, c in enumerate(nb.cells)
            if c.metadata.get("nbgrader", {}).get("grade") and c.metadata["nbgrader"].get("grade_id") in ids]


def _task_markdown(ex) -> list[str]:
    """The markdown a student reads before writing ``ex.function``: the ungraded markdown cells
    between the previous function exercise's test cell and the answer cell. An exercise introduced
    together with the one before it (no markdown of its own) shares that one's markdown."""
    path = ROOT / "notebooks" / ex.assignment / f"{ex.notebook}.ipynb"
    nb = nbformat.read(path, as_version=4)
    answer = next(i for i, c in enumerate(nb.cells)
                  if c.cell_type == "code" and re.search(rf"^def {ex.function}\(", c.source, re.M))
    graded = _graded_function_cells(nb, ex.assignment)
    end = answer
    while True:
        start = max((i for i in graded if i < end), default=-1)
        md = [c.source for c in nb.cells[start + 1:end] if c.cell_type == "markdown"
              and not c.metadata.get("nbgrader", {}).get("grade")]
        if md or start < 0:
            return md
        end = start


_WRAPPERS = re.compile(r"\\(?:text|mathrm|operatorname|texttt|mathit|mathbf|boldsymbol|mathcal)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\(?:left(?![a-z])|right(?![a-z])|[bB]igg?[lr]?(?![a-z])|qquad|quad|[,;:! ])")
_GROUP = re.compile(r"([_^])\{([^{}]*)\}")
_FRAC = re.compile(r"\\[td]?frac\s*(?:\{([^{}]*)\}|(\w))\s*(?:\{([^{}]*)\}|(\w))")
_SQRT = re.compile(r"\\sqrt\s*(?:\{([^{}]*)\}|(\\?\w+))")
_SYMBOLS = {r"\varepsilon": "eps", r"\epsilon": "eps", r"\lambda": "lam", r"\cdot": "*",
            r"\odot": "*", r"\times": "*", r"\leftarrow": "<-", r"\gets": "<-", r"\top": "T",
            r"\mathrel{+}=": "+=", r"\_": "_"}


def flat_math(markdown: str) -> str:
    """Markdown outside ``<details>``, flattened for pattern search: LaTeX spelled out in code-like
    form (\\frac{a}{b} -> (a)/(b), \\sqrt x -> sqrt(x), \\lambda -> lam, \\odot -> *), ``**`` as
    ``^``, subscript digits joined (beta_1 -> beta1), no whitespace, $ or backticks."""
    s = re.sub(r"<details>.*?</details>", " ", markdown, flags=re.S).replace("$", "").replace("`", "")
    for latex, plain in _SYMBOLS.items():
        s = s.replace(latex, plain)
    s = _SPACING.sub("", s)
    for _ in range(8):                       # innermost groups first, until nothing changes
        before = s
        s = _WRAPPERS.sub(r"\1", s)
        s = _GROUP.sub(lambda m: m[1] + (m[2] if len(m[2].strip()) <= 1 else f"({m[2]})"), s)
        s = _FRAC.sub(lambda m: f"({m[1] or m[2]})/({m[3] or m[4]})", s)
        s = _SQRT.sub(lambda m: f"sqrt({m[1] or m[2]})", s)
        if s == before:
            break
    s = re.sub(r"\\([A-Za-z]+)", r"\1", s).replace("{", "").replace("}", "")
    s = re.sub(r"\s+", "", s).replace("**", "^")
    return re.sub(r"([A-Za-z])_(\d)", r"\1\2", s)


@pytest.mark.parametrize("ex", FUNCTIONS, ids=lambda ex: f"{ex.assignment}:{ex.id}")
def test_task_markdown_has_a_hint(ex):
    assert any("<details>" in m and "</details>" in m for m in _task_markdown(ex)), (
        f"{ex.function}: the markdown above the exercise needs a collapsible hint "
        f"(<details><summary>Hint</summary> ... </details>) holding the formula the questions lead to")


@pytest.mark.parametrize("ex", FUNCTIONS, ids=lambda ex: f"{ex.assignment}:{ex.id}")
def test_task_markdown_keeps_the_formula_in_the_hint(ex):
    flat = flat_math("\n".join(_task_markdown(ex)))
    patterns = [p for p in FORBIDDEN[ex.function] + LATEX.get(ex.function, [])
                if p not in STATED.get(ex.function, [])]
    leaked = [p for p in patterns if re.sub(r"\s+", "", p).replace("**", "^") in flat]
    assert not leaked, (
        f"{ex.function}: the markdown above the exercise states the formula outside the hint "
        f"({leaked}); ask for it with guiding questions and move the result into <details>")


@pytest.mark.parametrize("latex, flat", [
    (r"$\hat m = \frac{m}{1-\beta_1^{\,t}}$", "hatm=(m)/(1-beta1^t)"),
    (r"$p \leftarrow p - \mathrm{lr}\,\frac{g}{\sqrt{r} + \mathrm{eps}}$", "p<-p-lr(g)/(sqrt(r)+eps)"),
    (r"$\sqrt 2$, $\tfrac12 \lambda\lVert w\rVert^2$", "sqrt(2),(1)/(2)lamlVertwrVert^2"),
    (r"$g\odot g$ <details>$r + g$</details> `lr * d`", "g*glr*d"),
])
def test_flat_math(latex, flat):
    assert flat_math(latex) == flat


def test_hint_check_catches_the_old_adagrad_cell():
    """Not vacuous: the AdaGrad paragraph as it stood before the hints is caught."""
    old = (r"$$ t \leftarrow t+1,\quad g \leftarrow g + \lambda p,\quad r \leftarrow r + g\odot g,\quad "
           r"p \leftarrow p - \mathrm{lr}_t\, \frac{g}{\sqrt{r} + \mathrm{eps}} $$")
    flat = flat_math(old)
    assert [p for p in FORBIDDEN["adagrad_step"] + LATEX["adagrad_step"] if p in flat]
    assert not [p for p in FORBIDDEN["adagrad_step"] if p in flat_math(f"<details>{old}</details>")]


@pytest.mark.parametrize("pattern", ["sqrt(v_hat)", "1 - beta1**t"])
def test_patterns_catch_the_old_adam_docstring(pattern):
    """The check is not vacuous: the docstring Adam had before this test existed is caught."""
    old = ("p <- p - lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - beta1**t),  "
           "v_hat = v / (1 - beta2**t)")
    assert re.sub(r"\s+", "", pattern) in re.sub(r"\s+", "", old)
    assert re.sub(r"\s+", "", pattern) in FORBIDDEN["adam_step"]


@pytest.mark.parametrize("text, caught", [
    ("The notes' $\\lambda$ is therefore `weight_decay = 2λ` *when the penalty is added*", True),
    ("so $\\lambda' = 2\\lambda$ when the penalty is added to a mean loss", True),
    ("with a mean loss the notes' $\\lambda$ is `weight_decay = 2λ/n`", False),   # the erratum stays
    ("<details>the notes' $\\lambda$ is `weight_decay = 2λ`</details>", False),
])
def test_weight_decay_patterns_catch_the_answer_not_the_erratum(text, caught):
    flat = flat_math(text)
    assert any(re.search(p, flat) for p in ANSWERS["weight_decay"]) == caught
