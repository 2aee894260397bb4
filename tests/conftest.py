"""The test session's one piece of set-up: a persistent XLA compilation cache in a temporary
folder, shared by the tests and the processes they start (through JAX's environment
variables), so that the many tiny runs which compile the same programs (a run, its killed copy
and its resumption; one plan, then the other) compile each program once. Removed at the end.
"""

import os
import shutil
import tempfile

import jax

_CACHE = tempfile.mkdtemp(prefix="hparams_jax_tests_xla_cache_")
_SETTINGS = {"jax_compilation_cache_dir": _CACHE,
             "jax_persistent_cache_min_compile_time_secs": 0,
             "jax_persistent_cache_min_entry_size_bytes": -1}
for _name, _value in _SETTINGS.items():
    os.environ[_name.upper()] = str(_value)
    jax.config.update(_name, _value)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)
