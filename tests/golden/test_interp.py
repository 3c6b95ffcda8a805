"""The golden interpreter on cases worked by hand, and its documented behaviours."""

from __future__ import annotations

import numpy as np

import einsum
import golden


def test_inputs_are_not_modified_and_outputs_are_float64() -> None:
    q = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    k, v = q.copy(), q[:, :2].copy()
    before = q.copy()
    out = golden.run(einsum.library.get("attention_3pass"), {"Q": q, "K": k, "V": v})["AV"]
    assert out.dtype == np.float64
    np.testing.assert_array_equal(q, before)


def test_all_tensors_exposes_every_stage() -> None:
    rng = np.random.default_rng(3)
    q, k, v = rng.normal(size=(5, 4)), rng.normal(size=(6, 4)), rng.normal(size=(6, 2))
    t = golden.run(
        einsum.library.get("attention_1pass"), {"Q": q, "K": k, "V": v}, {"M0": 3}, all_tensors=True
    )
    s = q @ k.T / 2.0
    np.testing.assert_allclose(t["RM"][:, -1], s.max(axis=1), rtol=1e-14)  # running max, final
    np.testing.assert_allclose(
        t["RD"][:, -1], np.exp(s - s.max(axis=1, keepdims=True)).sum(axis=1), rtol=1e-13
    )
    assert t["RM"].shape == (5, 3) and np.all(t["RM"][:, 0] == -np.inf)


def test_causal_mask_with_indices_as_values() -> None:
    c = einsum.parse("""
        input Q[p, e], K[m, e], V[m, f]
        output AV
        S[p, m]  = where(p >= m, Q[p, e] * K[m, e], -inf)
        GM[p]    = max[m] S[p, m]
        SN[p, m] = exp(S[p, m] - GM[p])
        AV[p, f] = SN[p, m] * V[m, f] / (sum[m] SN[p, m])
    """)
    rng = np.random.default_rng(4)
    q, k, v = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    out = golden.run(c, {"Q": q, "K": k, "V": v})["AV"]
    np.testing.assert_allclose(out, golden.softmax_attention(q * np.sqrt(3), k, v, causal=True), rtol=1e-12)


def test_explicit_reductions() -> None:
    c = einsum.parse("""
        input X[i, j]
        output S, MX, MN, PR
        S[i] = sum[j] X[i, j]
        MX[j] = max[i] X[i, j]
        MN[] = min[i, j] X[i, j]
        PR[i] = prod[j] X[i, j]
    """)
    x = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])
    out = golden.run(c, {"X": x})
    np.testing.assert_array_equal(out["S"], [2.0, 3.0])
    np.testing.assert_array_equal(out["MX"], [4.0, 5.0, 3.0])
    assert out["MN"] == -6.0
    np.testing.assert_array_equal(out["PR"], [-6.0, -120.0])


def test_topk_ties_go_to_the_lower_index_per_fiber() -> None:
    c = einsum.parse("input S[p, m]\noutput KEEP\nKEEP[p, m] = topk[m; 2] S[p, m]")
    s = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(golden.run(c, {"S": s})["KEEP"], [[1, 1, 0, 0], [0, 1, 1, 0]])


def test_topk_k_larger_than_the_fiber_keeps_everything() -> None:
    c = einsum.parse("input S[m]\nparam k = 10\noutput KEEP\nKEEP[m] = topk[m; k] S[m]")
    np.testing.assert_array_equal(golden.run(c, {"S": np.array([3.0, 1.0])})["KEEP"], [1, 1])


def test_token_pruning_keeps_pruned_keys_at_zero() -> None:
    c = einsum.parse("""
        input S[m], K[m, e]
        param k = ceil(0.5 * M)
        output K2
        keep[m] = topk[m; k] S[m]
        K2[m, e] = K[m, e] * keep[m]
    """)
    k2 = golden.run(c, {"S": np.array([0.1, 0.9, 0.5, 0.2]), "K": np.ones((4, 2))})["K2"]
    np.testing.assert_array_equal(k2[:, 0], [0, 1, 1, 0])


def test_recurrence_of_two_tensors_in_one_step() -> None:
    # Fibonacci as a two-tensor recurrence: A' = B, B' = A + B.
    c = einsum.parse("""
        input X[i]
        output A
        init A[i = 0] = 0
        init B[i = 0] = 1
        A[i + 1] = B[i] + 0 * X[i]
        B[i + 1] = A[i] + B[i]
    """)
    a = golden.run(c, {"X": np.zeros(10)})["A"]
    np.testing.assert_array_equal(a, [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55])


def test_integer_inputs_are_converted() -> None:
    c = einsum.library.get("matmul")
    out = golden.run(c, {"A": np.array([[1, 2]]), "B": np.array([[3], [4]])})["Z"]
    assert out.dtype == np.float64 and out[0, 0] == 11.0


def test_causal_linear_attention_as_a_state_recurrence() -> None:
    c = einsum.parse("""
        input Q[m, e], K[m, e], V[m, f]
        output O
        init S[e, f, m = 0] = 0
        init Z[e, m = 0] = 0
        S[e, f, m + 1] = S[e, f, m] + relu(K[m, e]) * V[m, f]
        Z[e, m + 1] = Z[e, m] + relu(K[m, e])
        O[m, f] = relu(Q[m, e]) * S[e, f, m + 1] / (sum[e] relu(Q[m, e]) * Z[e, m + 1])
    """)
    rng = np.random.default_rng(5)
    q, k, v = rng.normal(size=(6, 3)) + 1, rng.normal(size=(6, 3)) + 1, rng.normal(size=(6, 2))
    out = golden.run(c, {"Q": q, "K": k, "V": v})["O"]
    fq, fk = np.maximum(q, 0), np.maximum(k, 0)
    ref = np.stack([fq[i] @ (fk[: i + 1].T @ v[: i + 1]) / (fq[i] @ fk[: i + 1].sum(0)) for i in range(6)])
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    assert einsum.passes(c, "M") == 1
