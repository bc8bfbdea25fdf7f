"""``codegym import-v1``: environments in the original CodeGym release format -> a verified bank.

Two modules: :mod:`.importer` (static analysis of an original env file, the generated adapter, tasks,
verification, the bank and its report) and :mod:`.docstrings` (the ``Args:`` sections that give the
tools their parameter types). The runtime half of the adapter, which runs next to the env in a sandbox
worker, is :mod:`mcp_gyms.v1`; the original envs subclass ``gymnasium.Env``, so serving or verifying
them needs the ``v1`` extra (``pip install 'codegym-mcp[v1]'``).
"""

from .importer import (
    FileReport,
    ImportOptions,
    ImportReport,
    add_arguments,
    analyse_env,
    import_v1,
    main_examples,
    render_gym_file,
    run,
)

__all__ = ["FileReport", "ImportOptions", "ImportReport", "add_arguments", "analyse_env", "import_v1",
           "main_examples", "render_gym_file", "run"]
