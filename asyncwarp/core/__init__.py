"""Backend-neutral core: types, IR, frontend, passes, interpreter, kernel cache."""
