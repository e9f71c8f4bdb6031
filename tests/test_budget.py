"""The budget policy (selection/budget.py): one meaning of --budget_images for every row
kind and every command."""

import numpy as np

from sjft_tf.selection import budget

# unions: k0=1 {0,1} 2; k0=2 {0,1,4} 3; k0=3 {0,1,2,4,5,7} 6; k0=4 {..,3,6} 8
NEIGHBOURS = np.array([[0, 1, 2, 3], [0, 4, 5, 6], [1, 4, 7, -1]])


def test_k0_for_images_is_the_smallest_k0_whose_pools_reach_it():
  assert [budget.k0_for_images(NEIGHBOURS, b) for b in (1, 2, 3, 4, 6, 7, 8)] == [
      1, 1, 2, 3, 3, 4, 4]
  assert budget.k0_for_images(NEIGHBOURS, 100) == 4  # never reached: every column


def test_plan_sizes_ranked_and_uniform_rows_alike():
  # A budget: every budget-sized row uses that many images, the ranked bank its K0.
  assert budget.plan(NEIGHBOURS, k0=2, selected_images=3, budget=6) == budget.Budget(6, 3)
  # No budget: the bank keeps its K0 and the uniform rows match what it selects.
  assert budget.plan(NEIGHBOURS, k0=2, selected_images=3, budget=0) == budget.Budget(3, 2)


def test_random_rows_are_the_seeds_draw_without_replacement():
  rows = budget.random_rows(100, 10, seed=3)
  assert rows.dtype == np.int64 and len(np.unique(rows)) == 10
  assert (np.diff(rows) > 0).all() and rows.max() < 100
  np.testing.assert_array_equal(rows, budget.random_rows(100, 10, seed=3))
  assert not np.array_equal(rows, budget.random_rows(100, 10, seed=4))
  np.testing.assert_array_equal(budget.random_rows(5, 10, seed=0), np.arange(5))
