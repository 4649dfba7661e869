"""Build step that pyproject.toml cannot express: ship experiments/ in the wheel.

The shipped experiment configs live at the top of the repository
(``experiments/*.toml``, where ``make figures`` and the README point). A wheel
copies them into ``gradflow/experiments/`` so ``gradflow run NAME`` finds them
from any folder; an editable install and a source checkout read the top-level
folder itself (see ``gradflow/_experiments.py``).
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithExperiments(build_py):
    """``build_py`` that also copies ``experiments/*.toml`` into the package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the repository's experiments/
        target = Path(self.build_lib) / "gradflow" / "experiments"
        self.mkpath(str(target))
        for config in sorted((HERE / "experiments").glob("*.toml")):
            self.copy_file(str(config), str(target / config.name))


setup(cmdclass={"build_py": BuildPyWithExperiments})
