"""`import spn_tf` alone is enough: public submodules are attributes and every saved model loads
in a fresh process."""

import os
import subprocess
import sys

import numpy as np

from spn_tf import models

SCRIPT = """
import sys
import keras
import numpy as np
import spn_tf

for name in ("data", "distributions", "grid", "hparams", "inputs", "layers", "orderings",
             "sampling", "exactness"):
    getattr(spn_tf, name)
images = np.zeros((1, 4, 4, 1), np.int32)
for path in sys.argv[1:]:
    print(float(keras.saving.load_model(path).log_prob(images)[0]))
"""

KINDS = {"raster": {}, "spn": {}, "upscaling": {"msb_bits": 1},
         "multiscale": {"base_size": 2}}


def test_import_spn_tf_reaches_submodules_and_loads_every_saved_model_kind(tmp_path):
    images = np.zeros((1, 4, 4, 1), np.int32)
    paths, expected = [], []
    for kind, overrides in KINDS.items():
        model = models.build(kind, 4, channels=1, bits=2, preset="tiny", **overrides)
        expected.append(float(model.log_prob(images)[0]))
        paths.append(str(tmp_path / f"{kind}.keras"))
        model.save(paths[-1])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # Nothing but `import spn_tf` runs before the files load: no model is built first.
    result = subprocess.run([sys.executable, "-c", SCRIPT, *paths], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    got = [float(line) for line in result.stdout.strip().splitlines()[-len(KINDS):]]
    assert got == [float(np.float32(value)) for value in expected]


def test_import_spn_tf_imports_no_test_code():
    result = subprocess.run(
        [sys.executable, "-c", "import sys, spn_tf; print(sorted(m for m in sys.modules if "
         "m == 'pytest' or m.startswith(('_pytest', 'spn_tf.testing', 'helpers'))))"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_the_readme_fit_example_runs_and_prints_nothing_to_stderr(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md")) as f:
        readme = f.read()
    start = readme.index("## Using the models in your own code")
    code = readme[readme.index("```python\n", start) + 10:readme.index("```\n", start + 40)]
    assert "model.fit(ds, steps_per_epoch=100, epochs=3)" in code
    # The same program, shorter: one step, the tiny preset, files in tmp_path.
    code = (code.replace("steps_per_epoch=100, epochs=3", "steps_per_epoch=1, epochs=1")
            .replace('preset="small"', 'preset="tiny"').replace('"model.keras"',
                                                                 repr(str(tmp_path / "m.keras"))))
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                            "SPN_TF_VERBOSE")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""


def test_a_model_answers_in_a_few_objects():
    """`DensityModel` keeps its verbs, the Keras overrides and the properties that return a
    kind's objects (ordering, export module, coding plan): at most 20 public methods; every
    shipped kind's export module is its own, in its own package (a kind registered from
    outside the package, as tests/test_new_kind.py does, may reuse one)."""
    public = [name for name, value in vars(models.DensityModel).items()
              if not name.startswith("_") and not isinstance(value, type)
              and (callable(value) or isinstance(value, (property, staticmethod)))]
    assert len(public) <= 20, public
    shipped = {kind: cls for kind, cls in models.MODELS.items()
               if cls.__module__.startswith("spn_tf.models.")}
    assert len(shipped) >= 5, sorted(shipped)
    for kind, cls in shipped.items():
        package = cls.__module__.rsplit(".", 1)[0]
        assert cls.export_class.__module__ == package + ".export", kind
