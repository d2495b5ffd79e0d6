"""The cffi modules: each ffi/*_build.py compiled in API mode, its extension put in firmware/."""

from __future__ import annotations

import shutil
from pathlib import Path

from buildkit.log import log
from buildkit.paths import CACHE, ROOT, VENV_PYTHON
from buildkit.shell import run
from buildkit.stamps import Stamp, digest
from buildkit.venv import venv_python_version, venv_version

# Run by the venv's python for one script: compile it, copy the extension to where its
# set_source name says (inside firmware), print the copy's path.
COMPILE_PROGRAM = """\
import runpy, shutil, sys
from pathlib import Path
builder = runpy.run_path({script!r}, run_name='ffi_build')['ffibuilder']
out = Path(builder.compile(tmpdir={workdir!r}, verbose=False))
name = builder._assigned_source[0]
assert name.startswith('firmware.'), f'{{name}}: cffi modules belong in firmware'
dest = Path(*name.split('.')[:-1]) / out.name
dest.parent.mkdir(parents=True, exist_ok=True)
shutil.copy2(out, dest)
print(dest.resolve())
"""


def compile_ffi_modules() -> None:
    """Compile each ffi/*_build.py whose script, Python or cffi changed, or whose output is gone."""
    for script in sorted((ROOT / "ffi").glob("*_build.py")):
        key = digest(script.read_bytes(), venv_python_version(), venv_version("cffi"))
        stamp = Stamp(f"ffi-{script.stem}", key)
        built = stamp.path.with_suffix(".out")
        if stamp.fresh() and built.exists() and Path(built.read_text().strip()).exists():
            continue
        log(f"compiling {script.relative_to(ROOT)}")
        workdir = CACHE / "ffi" / script.stem
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        program = COMPILE_PROGRAM.format(script=str(script), workdir=str(workdir))
        result = run([VENV_PYTHON, "-c", program], cwd=ROOT, capture=True)
        stamp.record()
        built.write_text(result.stdout.strip().splitlines()[-1] + "\n")
