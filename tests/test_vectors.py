import numpy as np
import pytest
import scipy.sparse as sp

from semhash.vectors import unit_rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unit_rows_dense_and_sparse_agree_and_zero_rows_stay_zero(dtype):
    X = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [0.0, -2.0, 0.0]])
    dense, sparse = unit_rows(X, dtype), unit_rows(sp.csr_matrix(X), dtype)
    expected = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    assert dense.dtype == dtype and sparse.dtype == dtype and sp.isspmatrix_csr(sparse)
    np.testing.assert_allclose(dense, expected, rtol=1e-6)
    np.testing.assert_allclose(sparse.toarray(), expected, rtol=1e-6)
    np.testing.assert_array_equal(X[1], 0)  # the input is not changed
