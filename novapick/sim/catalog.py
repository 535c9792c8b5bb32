"""The procedurally generated object catalog: 50 known (training) and 50 novel objects.

Everything is derived from one seed, so every student, test and grader sees the same
100 objects. The split is designed so that "novel" really is new:

* **Geometry is disjoint.** Known objects are boxes, cylinders (bottles, cans) and
  spheres. Novel objects are procedurally generated convex meshes (hexagonal jars,
  tapered tubs, irregular pebble-like toys) and capsules — shapes no training episode
  contains.
* **Attribute combinations are held out.** Some (colour, category-family) pairs occur
  only in the novel split, e.g. no known object is a transparent box.

Each object carries the physical attributes the gripper logic uses (mass, friction,
material) and the derived labels a policy must learn to infer from vision and language:
``suction_friendly`` and ``best_mode``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

CATALOG_SEED = 2026
GRAVITY = 9.81

# ---- Gripper capacities (used both here, to label objects, and by the simulator) ------
SUCTION_HOLD_N = 10.0        # N: vacuum hold of the 30 mm cup, derated for leakage and peel
JAW_GRIP_N = 20.0            # squeeze force per finger (Panda hand)
JAW_MAX_WIDTH = 0.075        # widest graspable section; the aperture is 0.08 m
LIFT_MARGIN = 1.3            # extra load from accelerating the item upwards
FRAGILE_LIMIT_N = 12.0       # contact force above which a fragile item is damaged
SUCTION_MIN_FLAT = 0.028     # a flat (or gently curved) patch at least this wide is needed

MATERIALS = ("rigid", "deformable", "transparent", "fragile")
COLOURS = {  # name -> RGBA used for rendering
    "red": (0.85, 0.12, 0.10, 1), "green": (0.15, 0.65, 0.20, 1), "blue": (0.12, 0.30, 0.85, 1),
    "yellow": (0.95, 0.85, 0.10, 1), "orange": (0.98, 0.50, 0.05, 1),
    "purple": (0.55, 0.20, 0.70, 1), "white": (0.93, 0.93, 0.93, 1), "black": (0.08, 0.08, 0.08, 1),
    "pink": (0.95, 0.45, 0.65, 1), "brown": (0.50, 0.30, 0.12, 1),
    "clear": (0.80, 0.90, 0.95, 0.45),  # transparent items: pale, and invisible to depth
}
OPAQUE_COLOURS = [c for c in COLOURS if c != "clear"]

# category -> (split, geometry, allowed materials)
CATEGORIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "box": ("known", "box", ("rigid", "fragile")),
    "book": ("known", "box", ("rigid",)),
    "pouch": ("known", "box", ("deformable",)),
    "bottle": ("known", "cylinder", ("rigid", "transparent")),
    "can": ("known", "cylinder", ("rigid",)),
    "ball": ("known", "sphere", ("rigid", "deformable")),
    "jar": ("novel", "hexprism", ("rigid", "transparent", "fragile")),
    "tub": ("novel", "frustum", ("rigid", "transparent")),
    "tube": ("novel", "capsule", ("rigid", "deformable")),
    "toy": ("novel", "pebble", ("deformable", "rigid")),
    "case": ("novel", "box", ("transparent",)),  # held-out combination: a transparent box
}
# Colours that only appear in the novel split (held-out colour x category pairs).
NOVEL_ONLY_PAIRS = {("pink", "box"), ("purple", "bottle"), ("black", "ball")}
DENSITY = {"rigid": (250.0, 900.0), "deformable": (80.0, 300.0),
           "transparent": (400.0, 1100.0), "fragile": (200.0, 600.0)}


@dataclass(frozen=True)
class ObjectSpec:
    """One catalog object. Lengths in metres, mass in kg."""

    id: int
    name: str                 # unique, e.g. "small_red_bottle_07"
    split: str                # "known" (training) or "novel" (held out)
    category: str             # noun used in instructions: "bottle", "jar", ...
    geometry: str             # box | cylinder | sphere | hexprism | frustum | capsule | pebble
    dims: tuple[float, ...]   # geometry parameters, see `novapick.sim.objects`
    colour: str
    size: str                 # "small" | "medium" | "large" (by largest extent)
    mass: float
    friction: float
    material: str             # rigid | deformable | transparent | fragile
    suction_friendly: bool    # a sealable surface: non-porous and flat enough
    suction_ok: bool          # suction can seal AND hold the weight
    jaw_ok: bool              # fits in the jaw, friction holds the weight, not crushed
    best_mode: str            # "suction" or "parallel_jaw"
    mesh_seed: int = 0        # seed of the procedural mesh (pebbles)

    def describe(self) -> str:
        """Words a person would use: 'small red bottle'."""
        colour = "clear" if self.material == "transparent" else self.colour
        return f"{self.size} {colour} {self.category}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Catalog:
    """The 100 objects, indexable by id or name."""

    objects: list[ObjectSpec]
    seed: int = CATALOG_SEED
    _by_name: dict[str, ObjectSpec] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {o.name: o for o in self.objects}

    def split(self, name: str) -> list[ObjectSpec]:
        if name not in ("known", "novel"):
            raise ValueError(f"split must be 'known' or 'novel', got {name!r}")
        return [o for o in self.objects if o.split == name]

    def get(self, key: int | str) -> ObjectSpec:
        """Look an object up by id (int) or name (str)."""
        if isinstance(key, (int, np.integer)):
            if not 0 <= int(key) < len(self.objects):
                raise KeyError(f"object id must be in [0, {len(self.objects) - 1}], got {key}")
            return self.objects[int(key)]
        if key not in self._by_name:
            raise KeyError(f"unknown object {key!r}; names look like {self.objects[0].name!r} "
                           "(see Catalog.split('known') / Catalog.split('novel'))")
        return self._by_name[key]

    def to_json(self) -> str:
        return json.dumps([o.to_dict() for o in self.objects], indent=1)


# ---- generation -----------------------------------------------------------------------
def _sample_dims(rng: np.random.Generator, geometry: str, category: str) -> tuple[float, ...]:
    """Geometry parameters. Boxes: half extents (x, y, z); cylinders/capsules: (radius,
    height); spheres: (radius,); hexprism: (circumradius, height); frustum: (bottom
    radius, top radius, height); pebble: (mean radius, height scale)."""
    u = rng.uniform
    if geometry == "box":
        if category == "pouch":
            return (u(0.035, 0.07), u(0.022, 0.035), u(0.010, 0.018))
        if category == "book":
            return (u(0.05, 0.08), u(0.035, 0.055), u(0.012, 0.025))
        if category == "case":
            return (u(0.025, 0.06), u(0.022, 0.045), u(0.015, 0.035))
        return (u(0.02, 0.065), u(0.02, 0.05), u(0.015, 0.045))
    if geometry == "cylinder":
        if category == "can":
            return (u(0.025, 0.04), u(0.05, 0.10))
        return (u(0.018, 0.034), u(0.08, 0.16))
    if geometry == "sphere":
        return (u(0.022, 0.036),)
    if geometry == "hexprism":
        return (u(0.022, 0.045), u(0.04, 0.10))
    if geometry == "frustum":
        bottom = u(0.025, 0.045)
        return (bottom, bottom * u(1.1, 1.4), u(0.04, 0.08))
    if geometry == "capsule":
        return (u(0.015, 0.03), u(0.04, 0.10))
    if geometry == "pebble":
        return (u(0.02, 0.035), u(0.6, 0.9))
    raise ValueError(f"unknown geometry {geometry!r}")


def _volume(geometry: str, d: tuple[float, ...]) -> float:
    if geometry == "box":
        return 8 * d[0] * d[1] * d[2]
    if geometry in ("cylinder",):
        return np.pi * d[0] ** 2 * d[1]
    if geometry == "sphere":
        return 4 / 3 * np.pi * d[0] ** 3
    if geometry == "hexprism":
        return 1.5 * np.sqrt(3) * d[0] ** 2 * d[1]
    if geometry == "frustum":
        return np.pi * d[2] / 3 * (d[0] ** 2 + d[0] * d[1] + d[1] ** 2)
    if geometry == "capsule":
        return np.pi * d[0] ** 2 * d[1] + 4 / 3 * np.pi * d[0] ** 3
    if geometry == "pebble":
        return 4 / 3 * np.pi * d[0] ** 3 * d[1]
    raise ValueError(geometry)


def resting_extents(geometry: str, d: tuple[float, ...]) -> tuple[float, float, float]:
    """Full (long horizontal, short horizontal, height) extents in the resting pose the
    simulator spawns the object in (cylinders stand, capsules lie, boxes lie flat)."""
    if geometry == "box":
        a, b = sorted((2 * d[0], 2 * d[1]), reverse=True)
        return a, b, 2 * d[2]
    if geometry == "cylinder":
        return 2 * d[0], 2 * d[0], d[1]
    if geometry == "sphere":
        return 2 * d[0], 2 * d[0], 2 * d[0]
    if geometry == "hexprism":
        return 2 * d[0], np.sqrt(3) * d[0], d[1]
    if geometry == "frustum":
        return 2 * d[1], 2 * d[1], d[2]
    if geometry == "capsule":
        return d[1] + 2 * d[0], 2 * d[0], 2 * d[0]
    if geometry == "pebble":
        return 2 * d[0], 2 * d[0], 2 * d[0] * d[1]
    raise ValueError(geometry)


def _flat_top_width(geometry: str, d: tuple[float, ...]) -> float:
    """Width of the patch on top that a suction cup can seal on (0 for strongly curved)."""
    if geometry == "box":
        return 2 * min(d[0], d[1])
    if geometry == "cylinder":
        return 2 * d[0]
    if geometry == "hexprism":
        return np.sqrt(3) * d[0]
    if geometry == "frustum":
        return 2 * d[1]
    if geometry == "capsule":
        return 0.0 if d[0] < 0.028 else 2 * d[0] * 0.5   # a thin tube is too curved
    return 0.0  # spheres and pebbles: curved everywhere at the cup's scale


def _label(geometry: str, dims: tuple[float, ...], material: str, mass: float,
           friction: float) -> tuple[bool, bool, bool]:
    """(suction_friendly, suction_ok, jaw_ok) from physics, the same rules the simulator uses."""
    weight = mass * GRAVITY * LIFT_MARGIN
    friendly = material != "deformable" and _flat_top_width(geometry, dims) >= SUCTION_MIN_FLAT
    suction_ok = friendly and weight <= SUCTION_HOLD_N
    _, short_side, _ = resting_extents(geometry, dims)
    jaw_ok = (short_side <= JAW_MAX_WIDTH and material != "fragile"
              and weight <= 2 * friction * JAW_GRIP_N)
    return bool(friendly), bool(suction_ok), bool(jaw_ok)


def _size_word(geometry: str, dims: tuple[float, ...]) -> str:
    longest = max(resting_extents(geometry, dims))
    return "small" if longest < 0.06 else ("medium" if longest < 0.11 else "large")


def _make_object(rng: np.random.Generator, oid: int, category: str, counter: dict) -> ObjectSpec:
    split, geometry, materials = CATEGORIES[category]
    for _ in range(1000):  # rejection sampling: every object must be pickable somehow
        material = str(rng.choice(materials))
        colour = "clear" if material == "transparent" else str(rng.choice(OPAQUE_COLOURS))
        if split == "known" and (colour, category) in NOVEL_ONLY_PAIRS:
            continue
        dims = tuple(round(float(x), 4) for x in _sample_dims(rng, geometry, category))
        mass = round(float(_volume(geometry, dims) * rng.uniform(*DENSITY[material])), 3)
        mass = max(mass, 0.03)
        if rng.random() < 0.25:  # dense items (tools, liquids): heavy enough to defeat one mode
            mass = round(mass * rng.uniform(2.5, 4.0), 3)
        friction = round(float(rng.uniform(0.25, 1.0)), 2)
        friendly, suction_ok, jaw_ok = _label(geometry, dims, material, mass, friction)
        if not (suction_ok or jaw_ok):
            continue
        best = "suction" if suction_ok else "parallel_jaw"
        size = _size_word(geometry, dims)
        counter[category] = counter.get(category, 0) + 1
        name = f"{size}_{colour}_{category}_{counter[category]:02d}"
        return ObjectSpec(id=oid, name=name, split=split, category=category, geometry=geometry,
                          dims=dims, colour=colour, size=size, mass=mass, friction=friction,
                          material=material, suction_friendly=friendly, suction_ok=suction_ok,
                          jaw_ok=jaw_ok, best_mode=best, mesh_seed=int(rng.integers(1 << 30)))
    raise RuntimeError(f"could not sample a pickable {category}")


SHAPE_JITTER_MAX_HEIGHT = 0.16   # m: taller items would reach the wrist camera at its home pose


def jittered_spec(spec: ObjectSpec, rng: np.random.Generator, amount: float, tries: int = 10) -> ObjectSpec:
    """A copy of ``spec`` whose dimensions are each scaled by a factor in [1 - amount,
    1 + amount] (geometric domain randomisation of training scenes).

    The density is kept, so the mass follows the volume, and every derived label (suction
    and jaw feasibility, best mode, size word) is recomputed with the simulator's own
    rules, so the expert and the labels stay consistent with what the camera shows. Why:
    with only a handful of sizes per category a policy can memorise "a clear thing is a
    tall bottle" instead of reading height and width from the pixels. Draws that make
    the item unpickable or too tall are redrawn; after ``tries`` the original is kept.
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"shape jitter must be in [0, 1), got {amount}")
    if amount == 0.0:
        return spec
    for _ in range(tries):
        scale = rng.uniform(1.0 - amount, 1.0 + amount, len(spec.dims))
        if spec.geometry == "pebble":   # dims[1] is a height ratio, not a length
            scale[1] = 1.0
        dims = tuple(round(float(d * s), 4) for d, s in zip(spec.dims, scale))
        if resting_extents(spec.geometry, dims)[2] > SHAPE_JITTER_MAX_HEIGHT:
            continue
        mass = round(max(spec.mass * _volume(spec.geometry, dims) / _volume(spec.geometry, spec.dims), 0.03), 3)
        friendly, suction_ok, jaw_ok = _label(spec.geometry, dims, spec.material, mass, spec.friction)
        if not (suction_ok or jaw_ok):
            continue
        return dataclasses.replace(spec, dims=dims, mass=mass, size=_size_word(spec.geometry, dims),
                                   suction_friendly=friendly, suction_ok=suction_ok, jaw_ok=jaw_ok,
                                   best_mode="suction" if suction_ok else "parallel_jaw")
    return spec


def generate_catalog(seed: int = CATALOG_SEED, per_split: int = 50) -> Catalog:
    """Generate ``per_split`` known and ``per_split`` novel objects deterministically."""
    rng = np.random.default_rng(seed)
    objects: list[ObjectSpec] = []
    counter: dict[str, int] = {}
    for split in ("known", "novel"):
        categories = [c for c, (s, _, _) in CATEGORIES.items() if s == split]
        for i in range(per_split):
            category = categories[i % len(categories)]
            objects.append(_make_object(rng, len(objects), category, counter))
    return Catalog(objects=objects, seed=seed)


@lru_cache(maxsize=4)
def load_catalog(seed: int = CATALOG_SEED) -> Catalog:
    """The course catalog (cached). Same seed -> same 100 objects."""
    return generate_catalog(seed)


def catalog_summary(catalog: Catalog) -> dict:
    """Counts per split of categories, materials and best modes (for docs and EDA)."""
    out: dict = {}
    for split in ("known", "novel"):
        objs = catalog.split(split)
        out[split] = {
            "n": len(objs),
            "categories": sorted({o.category for o in objs}),
            "geometries": sorted({o.geometry for o in objs}),
            "materials": {m: sum(o.material == m for o in objs) for m in MATERIALS},
            "best_mode": {m: sum(o.best_mode == m for o in objs) for m in ("suction", "parallel_jaw")},
            "single_mode_only": sum(o.suction_ok != o.jaw_ok for o in objs),
        }
    return out


if __name__ == "__main__":
    print(json.dumps(catalog_summary(load_catalog()), indent=2))
