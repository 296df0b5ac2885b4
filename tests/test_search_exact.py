"""Exact search in batches: the scan's top k (blocks, the running k-th best, either kernel, with
or without PyTorch) is the brute-force top k of the formula ``q . v``, ties ranked by row."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from text4vis.search import ExactBackend, _RunningTopK

D = 24
N = 1000  # not a multiple of the blocks below (64 rows, 7 rows)


def _reference(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The brute-force top k: every score, sorted by score (descending) then row."""
    scores = queries.astype(np.float32) @ vectors.astype(np.float32).T  # [Q, N]
    rows = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), order


def _tied(n: int, seed: int) -> np.ndarray:
    """Rows of small integers (exact in float16 and float32, and so are their inner products
    with integer queries, in any order of summation): many equal scores, and repeated rows."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(-2, 3, size=(n, D)).astype(np.float32)
    rows[n // 2 :: 3] = rows[7]  # a third of the second half repeats row 7
    return rows


def _queries(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-2, 3, size=(count, D)).astype(np.float32)


@pytest.fixture(params=["float32", "float16"])
def dtype(request) -> str:
    return request.param


@pytest.mark.parametrize("num_queries", [1, 3, 8, 64])
@pytest.mark.parametrize("k", [1, 10, N, N + 5])
def test_batches_are_the_brute_force_top_k_with_ties_by_row(
    monkeypatch, dtype: str, num_queries: int, k: int
):
    vectors = _tied(N, 0).astype(dtype)
    queries = _queries(num_queries, 1)
    expected_scores, expected_ids = _reference(queries, vectors, k)
    monkeypatch.setattr(ExactBackend, "BLOCK_BYTES", 4 * D * 64)  # blocks of 64 rows
    monkeypatch.setattr(ExactBackend, "SINGLE_ROWS", 64)
    scores, ids = ExactBackend(vectors).search(queries, k)
    assert ids.shape == (num_queries, min(k, N)) and ids.dtype == np.int64
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(scores, expected_scores)  # integers: exact in any order


@pytest.mark.parametrize("num_queries", [1, 3, 8, 64])
def test_batches_of_unit_vectors_match_the_brute_force_scores(dtype: str, num_queries: int):
    """Real-valued unit vectors, the default blocks: the same scores (to float32 rounding: the
    scan sums in another order), and each id is a row with its score."""
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((3001, 64)).astype(np.float32)
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(dtype)
    queries = rng.standard_normal((num_queries, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    expected_scores, _ = _reference(queries, vectors, 10)
    scores, ids = ExactBackend(vectors).search(queries, 10)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)
    rescored = (queries[:, None, :] * vectors[ids].astype(np.float32)).sum(-1)
    np.testing.assert_allclose(scores, rescored, atol=1e-6)


# One matrix product a block, or a GEMV a query (and for float16, PyTorch's fp16 GEMV)
@pytest.mark.parametrize("gemv_queries", [0, 64])
@pytest.mark.parametrize("block_rows", [7, 64, 5000])
def test_either_kernel_and_any_block_give_the_same_answer(
    monkeypatch, dtype: str, gemv_queries: int, block_rows: int
):
    vectors = _tied(N, 3).astype(dtype)
    queries = _queries(8, 4)
    expected = _reference(queries, vectors, 10)
    monkeypatch.setattr(ExactBackend, "GEMV_QUERIES", gemv_queries)
    monkeypatch.setattr(ExactBackend, "HALF_GEMV_QUERIES", gemv_queries)
    monkeypatch.setattr(ExactBackend, "BLOCK_BYTES", 4 * D * block_rows)
    found = ExactBackend(vectors).search(queries, 10)
    np.testing.assert_array_equal(found[1], expected[1])
    np.testing.assert_array_equal(found[0], expected[0])


@pytest.mark.parametrize("num_queries", [1, 3, 8])
def test_without_pytorch_the_answer_is_the_same(monkeypatch, dtype: str, num_queries: int):
    """Where PyTorch does not import (an ONNX deployment), float16 widens with NumPy and a few
    float16 queries take the widened scan instead of the fp16 GEMV: the same rows and scores."""
    vectors = _tied(N, 5).astype(dtype)
    queries = _queries(num_queries, 6)
    monkeypatch.setattr(ExactBackend, "SINGLE_ROWS", 64)
    monkeypatch.setattr(ExactBackend, "BLOCK_BYTES", 4 * D * 64)
    with_torch = ExactBackend(vectors).search(queries, 10)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    without_torch = ExactBackend(vectors).search(queries, 10)
    np.testing.assert_array_equal(without_torch[1], with_torch[1])
    np.testing.assert_array_equal(without_torch[0], with_torch[0])
    np.testing.assert_array_equal(without_torch[1], _reference(queries, vectors, 10)[1])


def test_a_nan_score_ranks_last(dtype: str):
    vectors = _tied(50, 7).astype(dtype)
    vectors[3] = np.nan
    queries = _queries(5, 8)
    scores, ids = ExactBackend(vectors).search(queries, 50)
    assert (ids[:, -1] == 3).all() and np.isneginf(scores[:, -1]).all()
    expected = _reference(queries, np.delete(vectors, 3, 0), 49)[1]
    np.testing.assert_array_equal(ids[:, :-1], expected + (expected >= 3))


def test_the_running_top_k_merges_only_scores_above_the_kth():
    """After the first block, a block's scores at or below each query's k-th best so far are
    never kept aside (an equal score of a later row ranks after the k-th)."""
    top = _RunningTopK(num_queries=2, k=2)
    top.add(np.array([[5.0, 4.0, 1.0], [0.0, 3.0, 3.0]], np.float32), first_row=0)
    top.add(np.array([[4.0, 4.0, 0.0], [3.0, 2.0, 9.0]], np.float32), first_row=3)
    assert [len(p[0]) for p in top._pending] == [1]  # only 9 > 3; 4 = 4 and 3 = 3 are not
    scores, ids = top.result()
    np.testing.assert_array_equal(ids, [[0, 1], [5, 1]])
    np.testing.assert_array_equal(scores, [[5, 4], [9, 3]])


def test_no_queries_or_k_zero_give_empty_answers(dtype: str):
    backend = ExactBackend(_tied(30, 9).astype(dtype))
    for queries, k, shape in [
        (np.zeros((0, D), np.float32), 5, (0, 5)),
        (_queries(3, 1), 0, (3, 0)),
    ]:
        scores, ids = backend.search(queries, k)
        assert scores.shape == ids.shape == shape and ids.dtype == np.int64


@pytest.mark.parametrize("threads", [2, 3, 7])
@pytest.mark.parametrize("num_queries", [1, 3, 8])
@pytest.mark.parametrize("k", [1, 10, N])
def test_rows_split_across_threads_give_the_one_thread_answer(
    monkeypatch, dtype: str, threads: int, num_queries: int, k: int
):
    """Parts of 100-200 rows scanned at once (parts smaller than k too), merged: the brute-force
    top k, ties by row across the parts' boundaries (repeated rows span them)."""
    vectors = _tied(N, 3).astype(dtype)
    queries = _queries(num_queries, 4)
    expected_scores, expected_ids = _reference(queries, vectors, k)
    monkeypatch.setattr(ExactBackend, "PART_ROWS", 100)
    monkeypatch.setattr(ExactBackend, "BLOCK_BYTES", 4 * D * 64)
    monkeypatch.setattr(ExactBackend, "SINGLE_ROWS", 64)
    backend = ExactBackend(vectors, threads=threads)
    scores, ids = backend.search(queries, k)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(scores, expected_scores)


def test_threads_default_to_omp_num_threads_and_are_checked(monkeypatch):
    from text4vis.errors import UsageError

    vectors = _tied(10, 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert ExactBackend(vectors).threads == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert ExactBackend(vectors).threads >= 1
    assert ExactBackend(vectors, threads=2).threads == 2
    with pytest.raises(UsageError, match="at least 1"):
        ExactBackend(vectors, threads=0)
