"""Derive before coding: a released stub states its contract, never the formula it asks for.

For every graded function of the catalogs, the student edition's answer cell (the one that
defines the function) is read from ``notebooks/``; its text, with all whitespace removed, must
contain none of the exercise's forbidden patterns (the formula, or the telling part of it).
The formula belongs in the markdown above, as the result of a derivation, behind a hint.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from grader.config import Course

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = Course.at(ROOT).catalog().functions

# Substrings, written without spaces (the stub text is compared with its whitespace removed).
FORBIDDEN: dict[str, list[str]] = {
    # 06_training_in_practice
    "perceptron_loss": ["max(0,-", "-y*f"],
    "multi_margin_loss": ["1-x[y]+x[j]", "margin-x[y]+x[j]"],
    "capped_inverse": ["min(0.1,100/t", "100/t"],
    "piecewise_constant": ["searchsorted", "values[i]"],
    "inverse_sqrt": ["/sqrt(t", "t**-0.5", "np.sqrt"],
    "rmsprop_nesterov_step": ["sqrt(r", "√r", "alpha*v-"],
    "clip_grad_norm": ["max_norm/(", "/(norm+1e-6"],
    "gradient_step_change": ["0.5*eps**2", "½ε²", "eps**2*g@H@g"],
    "best_step": ["g@g/", "gᵀg/gᵀHg", "g.T@g/"],
    "standard_error": ["/sqrt(n", "/√n", "std/"],
    "terminal_velocity": ["/(1-alpha", "/(1−α"],
    "equivalent_weights": ["W/alpha", "alpha*W"],
    "mlp_backward": ["W.T@delta", "Wᵀδ"],
    "numerical_gradient": ["f(x+eps", "/(2*eps)", "/(2eps)", "2*x.size"],
    "topological_order": ["reversing", "post-order", "postorder"],
    "vjp_add": ["(g,g)", "ga=g", "gb=g"],
    "vjp_mul": ["g*b", "g*a"],
    "vjp_matmul": ["g@B", "A^T@g", "A.T@g", "B^T", "B.T"],
    "vjp_exp": ["g*exp(a)", "g*np.exp"],
    "vjp_log": ["g/a"],
    "vjp_relu": ["gwherea>0", "g*(a>0)", "1[a>0]"],
    "vjp_sum": ["gbroadcast", "expand_dims", "broadcast_to"],
    "backward": ["fn.vjp(node.grad", "addsupwhatitreceives"],
    "batchnorm_forward": ["sqrt(var+eps)", "(x-mean)", "((x-mean)**2)"],
    "batchnorm_backward_graph": ["sum(dy", "dy*xhat"],
    "batchnorm_backward": ["N*dy", "sum(dy*xhat)", "gamma/(N", "dbeta=sum(dy)"],
    "update_running_stats": ["(1-momentum)*", "n/(n-1)", "*momentum*"],
    "fold_batchnorm": ["gamma/sqrt", "beta-a*", "sqrt(running_var+eps)"],
    "fans": ["shape[1]*", "prod(shape[2:])", "shape[0]*"],
    "calculate_gain": ["sqrt(2", "5/3", "1+a^2", "1+a**2", "1+a*a"],
    "xavier_normal": ["2/(fan_in+fan_out)", "fan_in+fan_out"],
    "xavier_uniform": ["sqrt(6", "fan_in+fan_out"],
    "kaiming_normal": ["sqrt(2/fan", "gain^2/fan", "gain**2/fan", "gain/sqrt(fan"],
    "kaiming_uniform": ["sqrt(3", "sqrt(6", "gain*sqrt"],
    "sgd_step": ["momentum*b", "(1-dampening)*g", "lr*d", "weight_decay*p"],
    "adagrad_step": ["sqrt(r)", "g*g", "(t-1)*lr_decay", "r+g"],
    "rmsprop_step": ["(1-alpha)", "sqrt(r)", "g*g", "momentum*b"],
    "adam_step": ["1-beta1**t", "1-beta2**t", "sqrt(v_hat)", "(1-beta1)*g", "g*g"],
    "newton_step": ["(H+damping*I)", "H+damping", "lr*delta"],
    "linear_decay": ["(1-a)*lr0", "t/tau", "a*lr_tau"],
    "dropout_mask": ["1/(1-p)"],
    "dropout": ["(1-p)*x", "x*dropout_mask"],
    "l2_penalty": ["2*lam*w", "sum(w**2)", "lam*sum"],
    "early_stopping_epoch": ["best_epoch+patience", "patienceepochsafter"],
}
GENERIC = ["<-"]  # an update rule written out (p <- p - lr * d) is the formula, whatever it is


def _stub_cell(ex) -> str:
    """The released answer cell that defines ``ex.function``."""
    path = ROOT / "notebooks" / ex.assignment / f"{ex.notebook}.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and re.search(rf"^def {ex.function}\(", cell.source, re.M):
            return cell.source
    raise AssertionError(f"{path}: no cell defines {ex.function}(); run python -m grader build")


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


@pytest.mark.parametrize("pattern", ["sqrt(v_hat)", "1 - beta1**t"])
def test_patterns_catch_the_old_adam_docstring(pattern):
    """The check is not vacuous: the docstring Adam had before this test existed is caught."""
    old = ("p <- p - lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - beta1**t),  "
           "v_hat = v / (1 - beta2**t)")
    assert re.sub(r"\s+", "", pattern) in re.sub(r"\s+", "", old)
    assert re.sub(r"\s+", "", pattern) in FORBIDDEN["adam_step"]
