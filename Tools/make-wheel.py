#!/usr/bin/env python3
"""make-wheel.py OUTDIR [--console-script NAME]

Writes OUTDIR/tinypkg-1.0-py3-none-any.whl, a pure-Python wheel made without the network
(`import tinypkg; tinypkg.VALUE == 42`), for the writable-layer tests and benchmarks that
pip-install a package into a mount. With --console-script NAME, the wheel also declares
NAME = tinypkg:main (prints 42). Prints the wheel's path.
"""
import argparse, base64, hashlib, os, zipfile

ap = argparse.ArgumentParser(description=__doc__.splitlines()[2])
ap.add_argument("outdir")
ap.add_argument("--console-script")
a = ap.parse_args()
os.makedirs(a.outdir, exist_ok=True)
info = "tinypkg-1.0.dist-info/"
files = {
    "tinypkg/__init__.py": b"VALUE = 42\ndef main():\n    print(VALUE)\n",
    info + "METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
    info + "WHEEL": b"Wheel-Version: 1.0\nGenerator: envmount\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
if a.console_script:
    files[info + "entry_points.txt"] = f"[console_scripts]\n{a.console_script} = tinypkg:main\n".encode()
record = [p + ",sha256=" + base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode() + f",{len(b)}"
          for p, b in files.items()]
files[info + "RECORD"] = ("\n".join(record + [info + "RECORD,,"]) + "\n").encode()
path = os.path.join(a.outdir, "tinypkg-1.0-py3-none-any.whl")
with zipfile.ZipFile(path, "w") as z:
    for p, b in files.items():
        z.writestr(p, b)
print(path)
