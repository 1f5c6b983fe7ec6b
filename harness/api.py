"""What a plugin imports: the one public module of forgetbench for packages that add recipes,
benchmarks or domains (registered under the entry-point groups `forgetbench.recipes`,
`forgetbench.benchmarks`, `forgetbench.domains`, exactly as the built-ins are). Everything else in
`harness` is the harness's own and may move.
"""
from __future__ import annotations

from harness.benchmark import Benchmark, BenchmarkContext, BenchmarkParams, LeaderboardNorm
from harness.domains import Domain, DomainFiles, file_domain
from harness.errors import ConfigError, DataError
from harness.generation import Sampling
from harness.hashing import hash_file, hash_json
from harness.recipe import DomainOnlyRecipe, Recipe, RecipeContext, RecipeOutput, RecipeParams
from harness.results import BenchmarkResult, ExampleResult, Score, proportion_score
from harness.subsets import paired_subset

__all__ = ["Benchmark", "BenchmarkContext", "BenchmarkParams", "BenchmarkResult", "ConfigError", "DataError", "Domain",
           "DomainFiles", "DomainOnlyRecipe", "ExampleResult", "LeaderboardNorm", "Recipe", "RecipeContext",
           "RecipeOutput", "RecipeParams", "Sampling", "Score", "file_domain", "hash_file", "hash_json",
           "paired_subset", "proportion_score"]
