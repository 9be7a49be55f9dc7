"""The README's int8 case: nuclei fields as a fluorescence camera writes them (16-bit, the signal in
the lowest 5% of the range, a dozen hot pixels near full scale), from an ``edgeseg data synth``
folder.

    edgeseg data synth --kind nuclei --n 240 --size 256 --out hot8
    python docs/hot_pixels.py hot8 hot16 --seed 3
    edgeseg data synth --kind nuclei --n 200 --size 256 --seed 99 --out hot8t
    python docs/hot_pixels.py hot8t hot16test --seed 4
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("source")
parser.add_argument("out")
parser.add_argument("--seed", type=int, default=3)
args = parser.parse_args()
source, out = Path(args.source), Path(args.out)
(out / "images").mkdir(parents=True)
(out / "masks").mkdir()
rng = np.random.default_rng(args.seed)
for image_path in sorted((source / "images").glob("*.png")):
    image = np.asarray(Image.open(image_path).convert("L"), np.float64)
    field = (image / 255 * 0.05 * 65535 + rng.normal(100, 10, image.shape)).clip(0, 65535)
    ys, xs = rng.integers(0, image.shape[0], 12), rng.integers(0, image.shape[1], 12)
    field[ys, xs] = rng.uniform(30000, 65535, 12)  # hot pixels
    Image.fromarray(field.astype(np.uint16)).save(out / "images" / f"{image_path.stem}.tif")
    (out / "masks" / image_path.name).write_bytes((source / "masks" / image_path.name).read_bytes())
if (source / "classes.txt").exists():
    (out / "classes.txt").write_text((source / "classes.txt").read_text())
print(f"wrote {len(list((out / 'images').iterdir()))} 16-bit fields to {out}")
