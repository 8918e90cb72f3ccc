"""The direct-layout assembly of the closed-form Hessian (``deqlab.implicit.hessian._assemble``)
against the dense generic closed form and autodiff through an unrolled solve, in float64.

Every non-empty subset of the five parameter groups (so every dynamic/readout block and their cross
blocks), with the terms kept apart and summed in one pass, several ``n_y`` so the readout blocks
are not scalars.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deqlab.implicit.checks import relative_error, symmetry_error, unrolled_hessian
from deqlab.implicit.hessian import deq_hessian, deq_hessian_parts, tanh_generic_pieces
from deqlab.implicit.params import GROUPS, flatten
from tests.test_hessian import make_problem

#: assembled H vs the dense generic closed form (same maths, unstructured code): round-off only.
ASSEMBLY_RTOL = 1e-12
#: assembled H vs torch.func.hessian through a converged 300-step unroll (test_hessian.UNROLL_RTOL).
ASSEMBLY_UNROLL_RTOL = 1e-10
#: the in-place pass H = Y + Yᵀ makes H symmetric to the last bit.
ASSEMBLY_SYM_TOL = 0.0

SUBSETS = [tuple(g for i, g in enumerate(GROUPS) if mask >> i & 1) for mask in range(1, 32)]


@pytest.mark.parametrize("groups", SUBSETS, ids=["+".join(g) for g in SUBSETS])
def test_assembly_matches_generic_form_for_every_group_subset(groups):
    params, x, y = make_problem(n_z=5, n_x=3, n_y=2, batch=4, seed=len(groups))
    parts = deq_hessian_parts(**params, x=x, y=y, groups=groups)
    H_ref = tanh_generic_pieces(params, groups, x, y, parts.z_star).hessian()
    assert parts.H.shape == (flatten(params, groups).numel(),) * 2
    assert relative_error(parts.H, H_ref) <= ASSEMBLY_RTOL
    assert symmetry_error(parts.H) <= ASSEMBLY_SYM_TOL
    # one assembly of the summed terms == the three assemblies added up
    H_one = deq_hessian(**params, x=x, y=y, groups=groups, z_star=parts.z_star)
    assert relative_error(H_one, parts.H) <= ASSEMBLY_RTOL
    assert symmetry_error(H_one) <= ASSEMBLY_SYM_TOL


def test_assembly_terms_are_the_generic_terms():
    """Term A = Zᵀ∇²ₕℓZ, Term R = the readout blocks, Term B the rest, each on its own."""
    params, x, y = make_problem(n_z=4, n_x=2, n_y=3, batch=3, seed=7)
    parts = deq_hessian_parts(**params, x=x, y=y, groups=GROUPS)
    pc = tanh_generic_pieces(params, GROUPS, x, y, parts.z_star)
    Pd = pc.Z.shape[1]
    term_a = pc.Z.T @ pc.l_hh @ pc.Z
    assert relative_error(parts.term_a[:Pd, :Pd], term_a) <= ASSEMBLY_RTOL
    assert float(parts.term_a[Pd:].abs().max()) == 0.0 and float(parts.term_a[:, Pd:].abs().max()) == 0.0
    rd = pc.l_rh @ pc.Z
    assert relative_error(parts.term_r[Pd:, :Pd], rd) <= ASSEMBLY_RTOL
    assert relative_error(parts.term_r[Pd:, Pd:], pc.l_rr) <= ASSEMBLY_RTOL
    assert float(parts.term_r[:Pd, :Pd].abs().max()) == 0.0


@pytest.mark.parametrize("groups", [GROUPS, ("W_z", "U_z", "b_y"), ("b_z", "W_y")])
def test_assembly_matches_unrolled_autodiff_with_wide_readout(groups):
    params, x, y = make_problem(n_z=6, n_x=2, n_y=3, batch=5, seed=3)
    H = deq_hessian(**params, x=x, y=y, groups=groups)
    assert relative_error(H, unrolled_hessian(params, groups, x, y, steps=300)) <= ASSEMBLY_UNROLL_RTOL


def test_assembly_is_discriminating():
    """Dropping the bilinear K + Kᵀ term (μ = 0 in the assembly) is measurably wrong: the test above
    would catch an assembly that lost it."""
    from deqlab.implicit import hessian as hm
    from deqlab.implicit.params import group_slices

    params, x, y = make_problem(n_z=5, n_x=3, n_y=2, batch=4, seed=1)
    parts = deq_hessian_parts(**params, x=x, y=y, groups=GROUPS)
    h = parts.z_star
    H_b = parts.term_b
    s1 = 1 - h * h
    M = torch.linalg.inv(torch.eye(5, dtype=h.dtype) - params["W_z"] * s1[:, None, :])
    Q_b = M.transpose(1, 2) @ ((parts.lam * (-2 * h * s1))[:, :, None] * M)
    without_k = hm._assemble(group_slices(params, GROUPS), h, x, Q=Q_b)
    assert relative_error(without_k, H_b) >= 1e-3


@pytest.mark.parametrize("split_terms", [False, True])
def test_phase_timing_changes_nothing_and_times_every_phase(split_terms):
    """``phases=`` (what ``deqlab bench hessian`` reports as multiples of its floor) returns the same
    ``H`` bit for bit and fills every phase of ``PHASES`` with a positive time."""
    from deqlab.implicit.hessian import PHASES

    params, x, y = make_problem(n_z=6, n_x=3, n_y=2, batch=5, seed=2)
    plain = deq_hessian_parts(**params, x=x, y=y, groups=GROUPS, split_terms=split_terms, diagnostics=False)
    phases = {}
    timed = deq_hessian_parts(**params, x=x, y=y, groups=GROUPS, z_star=plain.z_star, split_terms=split_terms,
                              diagnostics=False, phases=phases)
    assert torch.equal(timed.H, plain.H)
    assert set(phases) == set(PHASES) and all(t > 0 for t in phases.values())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])   # (bfloat16: torch's tiles, not NumPy's)
@pytest.mark.parametrize("P, strips", [(1, 8), (7, 8), (64, 8), (100, 3), (257, 8)])
def test_both_symmetrisations_give_exactly_h_plus_h_transpose(P, strips, dtype):
    """The CPU's tiled pass and the GPU's strip pass (both run here, on the CPU) give exactly ``Y + Yᵀ``
    (bit for bit: ``fl(a + b)`` commutes), for sizes that do and do not divide into tiles and strips, through
    NumPy's views of the tiles and, for a dtype NumPy lacks, torch's."""
    from deqlab.implicit.hessian import _symmetrise, _symmetrise_strips

    Y = torch.randn(P, P, generator=torch.Generator().manual_seed(P), dtype=torch.float64).to(dtype)
    expected = Y + Y.T
    assert torch.equal(_symmetrise(Y.clone(), tile=16), expected)
    assert torch.equal(_symmetrise_strips(Y.clone(), strips=strips), expected)


@pytest.mark.parametrize("batched", [False, True], ids=["mm per index", "bmm per chunk"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_assembly_in_chunks_of_row_indices_gives_the_same_hessian(chunk, batched, monkeypatch):
    """The row indices ``i`` taken ``chunk`` at a time (the last chunk shorter where ``chunk`` does not
    divide ``n_z = 7``, or all of them in one), multiplied index by index (the CPU's products) or a
    chunk at a time (the GPU's, run here on the CPU), give the whole-batch assembly's ``H``, every group
    and every term, to round-off, and exactly symmetric."""
    from deqlab.implicit import hessian as hm

    params, x, y = make_problem(n_z=7, n_x=3, n_y=2, batch=5, seed=4)
    whole = deq_hessian_parts(**params, x=x, y=y, groups=GROUPS)
    monkeypatch.setattr(hm, "assembly_chunk", lambda *args, **kwargs: chunk)
    monkeypatch.setattr(hm, "products_batched", lambda device: batched)
    parts = deq_hessian_parts(**params, x=x, y=y, groups=GROUPS, z_star=whole.z_star)
    for name in ("H", "term_a", "term_b", "term_r"):
        assert relative_error(getattr(parts, name), getattr(whole, name)) <= ASSEMBLY_RTOL, name
    H_one = deq_hessian(**params, x=x, y=y, groups=GROUPS, z_star=whole.z_star)
    assert relative_error(H_one, whole.H) <= ASSEMBLY_RTOL
    assert symmetry_error(H_one) <= ASSEMBLY_SYM_TOL


def test_assembly_chunk_fits_its_budget():
    """On the CPU a chunk's operands fit the cache budget (at least one row index, at most all ``N``);
    on a GPU they take at most the set fraction of ``H``."""
    from deqlab.implicit.hessian import ASSEMBLY_CHUNK_BYTES, ASSEMBLY_CHUNK_GPU_FRACTION, assembly_chunk

    assert assembly_chunk(16, 64, 400, 8) == ASSEMBLY_CHUNK_BYTES // (64 * 400 * 8) == 5
    assert assembly_chunk(32, 64, 1312, 8) == 1             # one (B, P) operand (0.67 MB) fills most of it
    assert assembly_chunk(96, 64, 10080, 8) == 1           # one (B, P) operand is over the budget
    assert assembly_chunk(4, 2, 28, 8) == 4                 # small problems: every i at once
    c = assembly_chunk(96, 64, 10080, 8, "cuda")
    assert 1 < c <= 96 and c * 64 * 10080 * 8 <= ASSEMBLY_CHUNK_GPU_FRACTION * 10080**2 * 8


#: A P = 18 Hessian with a 100000-wide readout that θ leaves out, under an address-space cap of 1 GiB over what
#: the interpreter and torch hold once loaded (Linux: reads /proc).
WIDE_READOUT_OUTSIDE_THETA = """
import resource, sys
from deqlab.implicit.hessian import deq_hessian_parts
from tests.test_hessian import make_problem
params, x, y = make_problem(n_z=3, n_x=2, n_y=100_000, batch=2)
vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30 if hard == resource.RLIM_INFINITY else min(vm + 2**30, hard), hard))
print(tuple(deq_hessian_parts(**params, x=x, y=y, groups=("W_z", "b_z", "U_z")).H.shape))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the process's VmSize from /proc")
def test_a_wide_readout_outside_theta_costs_no_n_y_squared():
    """`deqlab hessian --n-y 100000 --groups W_z,b_z,U_z` (P = 54) died "out of memory": the readout term built
    an n_y × n_y identity (80 GB) that no block of H used, θ holding no readout group. Capped at 1 GiB above
    the loaded interpreter, the same shape of problem now assembles its (18, 18) Hessian."""
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", WIDE_READOUT_OUTSIDE_THETA], cwd=root, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")])})
    assert p.returncode == 0 and p.stdout.strip() == "(18, 18)", p.stderr[-2000:]
