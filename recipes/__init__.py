"""Built-in rehearsal recipes. Each registers through the `forgetbench.recipes` entry points in
pyproject.toml, exactly as a third-party recipe would."""
