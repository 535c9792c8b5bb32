"""Self-checks for notebook 01's ``augment_observation`` (Section 3.1).

They test *properties* every correct answer has, never equality with one answer's
random stream: the crop box and the flip are the same on RGB and depth; the words
"left"/"right" swap exactly when the image flips; depth gets Gaussian noise of
std 0.01 and RGB none; the colour factors stay in 1 +- 0.2; and all of it changes
from call to call. Each check feeds inputs built so the property can be measured:

* a *geometry* input: the same textured ramp (brighter to the right) as grey RGB and
  as depth. The ramp tells the crop's width and position and whether the image was
  flipped; the texture tells whether RGB and depth still line up.
* a *colour* input: three horizontal bands (dark grey, light grey, a muted red) and a
  flat depth of 0.5. Crop and flip keep the bands; the band levels give the
  brightness, contrast and saturation factors; the flat depth shows the noise alone.

The grader runs the same checks, with more calls and inputs drawn at grading time,
outside your notebook's process. Passing here is necessary, not sufficient.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

SIZE = 224                 # the case study's image size (3.1)
JITTER = 0.2               # brightness/contrast/saturation factors in 1 +- 0.2
CROP_AREA = (0.8, 1.0)     # crop scale: fraction of the image kept
FLIP_P = 0.5
DEPTH_NOISE_STD = 0.01

# Tolerances (statistical or for interpolation), shared by the visible and hidden checks.
FACTOR_TOL = 0.05          # a measured colour factor may stray this far outside 1 +- 0.2
MIN_FACTOR_SPREAD = 0.25   # over >= 30 calls, uniform factors in [0.8, 1.2] span more than this
WIDTH_RANGE = (0.74, 1.08)  # measured crop width / image width (area 0.8 at aspect 3/4: 0.775; +-0.05 error)
NOISE_STD_RANGE = (0.0055, 0.0145)  # noise before a bilinear resize is smoothed to ~0.007
RGB_NOISE_MAX = 0.003      # std along a flat band of RGB: 0 without noise, 0.01 with
PAIRED_MIN_CORR = 0.6      # high-pass correlation of RGB and depth when they line up
PAIRED_MIN_FRACTION = 0.9  # ... on at least this fraction of calls

INSTRUCTIONS = (
    "pick up the red bottle on the left",
    "grasp the blue box to the right of the mug",
    "move the left cup next to the right bowl",
    "take the small green pouch",
    "pick the item on the right, not the one on the left",
)

AugmentFn = Callable[[torch.Tensor, torch.Tensor, str], tuple]


@dataclass
class CheckResult:
    """One property: passed or not, a message naming the likely mistake, measurements."""

    name: str
    passed: bool
    message: str
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.message}"


# ----------------------------------------------------------------------------- inputs

def _texture(gen: torch.Generator, size: int) -> torch.Tensor:
    """(size, size) smooth random texture, unit std, correlation length ~2 px."""
    noise = torch.randn(1, 1, size + 12, size + 12, generator=gen)
    x = torch.arange(-6, 7, dtype=torch.float32)
    kernel = torch.exp(-x ** 2 / (2 * 2.0 ** 2))
    kernel = kernel / kernel.sum()
    smooth = F.conv2d(F.conv2d(noise, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))[0, 0]
    return (smooth - smooth.mean()) / smooth.std()


def geometry_input(gen: torch.Generator, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey RGB (3, S, S) and depth (1, S, S): one textured left-to-right ramp in [0.05, 0.95]."""
    ramp = torch.linspace(0.25, 0.75, size).expand(size, size)
    image = (ramp + 0.07 * _texture(gen, size)).clamp(0.05, 0.95)
    return image.expand(3, size, size).clone(), image[None].clone()


BANDS = (0.35, 0.60, (0.62, 0.42, 0.38))  # dark grey, light grey, muted red (top to bottom)


def colour_input(size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB of three horizontal bands and a flat depth of 0.5."""
    rgb = torch.empty(3, size, size)
    third = size // 3
    rgb[:, :third] = BANDS[0]
    rgb[:, third:2 * third] = BANDS[1]
    rgb[:, 2 * third:] = torch.tensor(BANDS[2])[:, None, None]
    return rgb, torch.full((1, size, size), 0.5)


# ----------------------------------------------------------------------- measurements

def _contract_problem(out, size: int) -> str | None:
    """None if ``out`` is (rgb (3,S,S), depth (1,S,S), str) as float tensors, else what is wrong."""
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        return f"expected a tuple (rgb, depth, language), got {type(out).__name__}" + (
            f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
    rgb, depth, language = out
    for name, value, shape in (("rgb", rgb, (3, size, size)), ("depth", depth, (1, size, size))):
        if not isinstance(value, torch.Tensor):
            return f"expected {name} to be a torch.Tensor, got {type(value).__name__}"
        if tuple(value.shape) != shape:
            return (f"expected {name} of shape {shape}, got {tuple(value.shape)}: after cropping, "
                    f"resize back to the input's size (resized_crop / RandomResizedCrop do both)")
        if not value.is_floating_point():
            return f"expected {name} to be a float tensor, got {value.dtype}"
        if not torch.isfinite(value).all():
            return f"{name} contains NaN or inf"
    if not isinstance(language, str):
        return f"expected language to be a str, got {type(language).__name__}"
    return None


def _range_problem(rgb: torch.Tensor, depth: torch.Tensor) -> str | None:
    for name, value in (("rgb", rgb), ("depth", depth)):
        low, high = float(value.min()), float(value.max())
        if low < 0.0 or high > 1.0:
            return (f"{name} values must stay in [0, 1], got min {low:.3f}, max {high:.3f}: clamp after "
                    f"jitter or noise (torchvision's adjust_* functions clamp for you)")
    return None


def _highpass(image: torch.Tensor) -> torch.Tensor:
    """(S, S) band-passed, border trimmed: the texture without the ramp (9x9 blur removed)
    and with less pixel noise (3x3 blur), so depth noise does not hide the alignment."""
    def blur(x: torch.Tensor, k: int) -> torch.Tensor:
        return F.avg_pool2d(x[None, None], k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
    return (blur(image, 3) - blur(image, 9))[8:-8, 8:-8]


def measure_geometry(rgb: torch.Tensor, depth: torch.Tensor) -> dict:
    """From the outputs for a :func:`geometry_input`: flipped?, crop width and centre
    (fractions of the input's width), and how well RGB and depth line up."""
    size = depth.shape[-1]
    columns = depth[0].mean(0)                                # ramp level per output column
    u = torch.arange(size, dtype=torch.float32)
    slope = float(((u - u.mean()) * (columns - columns.mean())).sum() / ((u - u.mean()) ** 2).sum())
    a, b = _highpass(rgb[0]).flatten(), _highpass(depth[0]).flatten()
    a, b = a - a.mean(), b - b.mean()
    corr = float((a * b).sum() / ((a.norm() * b.norm()) + 1e-12))
    return {"flipped": slope < 0, "width": abs(slope) * size / 0.5,
            "centre": (float(columns.mean()) - 0.25) / 0.5, "corr": corr}


def _band_rows(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row medians (S, 3) and masks of grey rows and of red rows."""
    rows = rgb.median(dim=2).values.T                         # (S, 3): robust to noise and edges
    chroma = rows[:, 0] - rows[:, 1]
    peak = float(chroma.max())
    return rows, chroma < 0.1 * max(peak, 1e-3), chroma > 0.5 * peak


def measure_colour(rgb: torch.Tensor, depth: torch.Tensor) -> dict:
    """From the outputs for a :func:`colour_input`: the brightness, contrast and
    saturation factors, RGB noise along flat bands, and the depth noise's std and mean.

    Order-free: brightness scales the mean; contrast pivots on a mean and saturation on
    each pixel's grey, so neither moves the mean, and the factors multiply the band
    differences (contrast x brightness for grey, all three for the red's chroma)."""
    rows, grey, red = _band_rows(rgb)
    levels = rows[grey, 1]
    cut = (levels.min() + levels.max()) / 2
    dark, light = levels[levels < cut], levels[levels >= cut]
    if len(dark) == 0 or len(light) == 0 or not red.any():
        return {"bands_found": False}
    contrast_x_brightness = float(light.median() - dark.median()) / (BANDS[1] - BANDS[0])
    red_chroma = float((rows[red, 0] - rows[red, 1]).median()) / (BANDS[2][0] - BANDS[2][1])
    fractions = torch.tensor([len(dark), len(light), int(red.sum())], dtype=torch.float32)
    fractions = fractions / fractions.sum()
    mean_in = float(fractions @ torch.tensor([BANDS[0], BANDS[1], sum(BANDS[2]) / 3]))
    brightness = float(rgb.mean()) / mean_in
    flat = rgb[1][grey][:, 8:-8]                               # grey rows, off the left/right edges
    noise = depth[0] - 0.5
    return {"bands_found": True, "brightness": brightness, "contrast": contrast_x_brightness / brightness,
            "saturation": red_chroma / max(contrast_x_brightness, 1e-6),
            "rgb_noise": float(flat.std(dim=1).median()) if flat.numel() else 0.0,
            "depth_noise_std": float(noise.std()), "depth_noise_mean": float(noise.mean()), "noise": noise}


def words_follow_flip(original: str, returned: str, flipped: bool) -> str | None:
    """None if ``returned`` is ``original`` with every whole word "left"/"right"
    exchanged when ``flipped`` (and unchanged otherwise), else what differs."""
    before, after = re.split(r"(\W+)", original), re.split(r"(\W+)", returned)
    if len(before) != len(after):
        return f"the instruction changed beyond left/right: {original!r} -> {returned!r}"
    for old, new in zip(before, after):
        side = old.lower() in ("left", "right")
        other = {"left": "right", "right": "left"}.get(old.lower())
        if side and flipped and new.lower() != other:
            return (f"the image was flipped but {old!r} stayed {new!r} in {original!r} -> {returned!r}: "
                    f"swap left/right exactly when you flip (and check that a second replace does "
                    f"not undo the first)")
        if side and not flipped and new.lower() != old.lower():
            return f"the words were swapped but the image was not flipped: {original!r} -> {returned!r}"
        if not side and new != old:
            return f"the instruction changed beyond left/right: {original!r} -> {returned!r}"
    return None


# --------------------------------------------------------------------------- checks

Call = Callable[[torch.Tensor, torch.Tensor, str], tuple]


def _outputs(call: Call, inputs: list[tuple]) -> tuple[list, CheckResult | None]:
    """Call on every input; stop at the first output that breaks the contract."""
    outs = []
    for rgb, depth, language in inputs:
        out = call(rgb, depth, language)
        problem = _contract_problem(out, rgb.shape[-1])
        if problem:
            return outs, CheckResult("contract", False, problem)
        outs.append(out)
    return outs, None


def check_contract(call: Call, gen: torch.Generator, calls: int = 20) -> CheckResult:
    """Types, shapes and value ranges on random images; inputs left unchanged."""
    inputs = [(torch.rand(3, SIZE, SIZE, generator=gen), 0.1 + 0.8 * torch.rand(1, SIZE, SIZE, generator=gen),
               INSTRUCTIONS[i % len(INSTRUCTIONS)]) for i in range(calls)]
    copies = [(r.clone(), d.clone()) for r, d, _ in inputs]
    outs, failed = _outputs(call, inputs)
    if failed:
        return failed
    for rgb, depth, _ in outs:
        problem = _range_problem(rgb, depth)
        if problem:
            return CheckResult("contract", False, problem)
    note = ""
    if any(not (r.equal(c[0]) and d.equal(c[1])) for (r, d, _), c in zip(inputs, copies)):
        note = " (note: your function changed its input tensors in place; a data loader would then " \
               "augment already-augmented images - return new tensors instead)"
    return CheckResult("contract", True, f"shapes, dtypes and ranges right on {calls} calls{note}")


def check_paired_geometry(call: Call, gen: torch.Generator, calls: int = 40) -> CheckResult:
    """The same crop and the same flip on RGB and depth."""
    outs, failed = _outputs(call, [(*geometry_input(gen), INSTRUCTIONS[0]) for _ in range(calls)])
    if failed:
        return failed
    corr = torch.tensor([measure_geometry(r, d)["corr"] for r, d, _ in outs])
    aligned = float((corr > PAIRED_MIN_CORR).float().mean())
    details = {"aligned_fraction": aligned, "median_corr": float(corr.median())}
    if aligned < PAIRED_MIN_FRACTION:
        return CheckResult("paired geometry", False,
                           f"RGB and depth no longer line up on {int(round((1 - aligned) * calls))} of {calls} "
                           f"calls (texture correlation {float(corr.median()):.2f}, expected > {PAIRED_MIN_CORR} "
                           f"on {PAIRED_MIN_FRACTION:.0%} of calls): draw the crop box and the flip once per call "
                           f"and apply the same ones to both images", details)
    return CheckResult("paired geometry", True, f"RGB and depth line up on {aligned:.0%} of {calls} calls", details)


def check_crop(call: Call, gen: torch.Generator, calls: int = 40) -> CheckResult:
    """A random crop of scale 0.8-1.0 (width 0.775-1.0 of the image), at random positions."""
    outs, failed = _outputs(call, [(*geometry_input(gen), INSTRUCTIONS[3]) for _ in range(calls)])
    if failed:
        return failed
    geo = [measure_geometry(r, d) for r, d, _ in outs]
    width = torch.tensor([g["width"] for g in geo])
    centre = torch.tensor([g["centre"] for g in geo])
    details = {"width_min": float(width.min()), "width_max": float(width.max()),
               "width_mean": float(width.mean()), "centre_std": float(centre.std())}
    low, high = WIDTH_RANGE
    if width.min() < low or width.max() > high:
        return CheckResult("crop", False, f"crop width {float(width.min()):.2f}-{float(width.max()):.2f} of the "
                           f"image, expected {low:.2f}-1.0 for a scale of 0.8-1.0", details)
    if width.mean() > 0.975:
        return CheckResult("crop", False, f"the images are not cropped (mean width {float(width.mean()):.3f} of "
                           f"the image): crop a random box of 80-100 % of the area and resize it back", details)
    if centre.std() < 0.004:
        return CheckResult("crop", False, "the crop is always in the same place: pick its corner at random too "
                           "(RandomResizedCrop.get_params does)", details)
    return CheckResult("crop", True, f"widths {float(width.min()):.2f}-{float(width.max()):.2f}, positions vary",
                       details)


def check_flip_language(call: Call, gen: torch.Generator, calls: int = 60) -> CheckResult:
    """Flip with p = 0.5, and left/right swapped in the instruction exactly when flipped."""
    inputs = [(*geometry_input(gen), INSTRUCTIONS[i % len(INSTRUCTIONS)]) for i in range(calls)]
    outs, failed = _outputs(call, inputs)
    if failed:
        return failed
    flips = [measure_geometry(r, d)["flipped"] for r, d, _ in outs]
    for (_, _, said), (_, _, got), flipped in zip(inputs, outs, flips):
        problem = words_follow_flip(said, got, flipped)
        if problem:
            return CheckResult("flip and words", False, problem)
    rate = sum(flips) / calls
    tolerance = 4.5 * (FLIP_P * (1 - FLIP_P) / calls) ** 0.5
    if abs(rate - FLIP_P) > tolerance:
        hint = (" - the same flip on every call: draw it inside the function, on every call" if rate in (0.0, 1.0)
                else "")
        return CheckResult("flip and words", False, f"flipped on {sum(flips)} of {calls} calls, expected about "
                           f"half (p = {FLIP_P}, tolerance +-{tolerance:.2f}){hint}", {"rate": rate})
    return CheckResult("flip and words", True, f"flipped on {sum(flips)} of {calls} calls, words always followed",
                       {"rate": rate})


def check_depth_noise(call: Call, gen: torch.Generator, calls: int = 30) -> CheckResult:
    """Gaussian noise of std 0.01 on depth, new on every call; none on RGB."""
    outs, failed = _outputs(call, [(*colour_input(), INSTRUCTIONS[3]) for _ in range(calls)])
    if failed:
        return failed
    colour = [measure_colour(r, d) for r, d, _ in outs]
    std = torch.tensor([c["depth_noise_std"] for c in colour])
    rgb_noise = max(c.get("rgb_noise", 0.0) for c in colour)
    details = {"depth_noise_std": float(std.median()), "rgb_noise": rgb_noise}
    if rgb_noise > RGB_NOISE_MAX:
        return CheckResult("depth noise", False, f"RGB has pixel noise (std {rgb_noise:.4f} along flat bands, "
                           f"expected < {RGB_NOISE_MAX}): sensor noise belongs on the depth map only", details)
    low, high = NOISE_STD_RANGE
    if not low <= float(std.median()) <= high:
        return CheckResult("depth noise", False, f"depth noise std {float(std.median()):.4f}, expected "
                           f"{DEPTH_NOISE_STD} (accepted {low}-{high}; std, not variance)", details)
    mean = max(abs(c["depth_noise_mean"]) for c in colour)
    if mean > 0.003:
        return CheckResult("depth noise", False, f"depth noise has mean {mean:.4f}, expected zero-mean "
                           f"Gaussian noise", details)
    a, b = colour[0]["noise"].flatten(), colour[1]["noise"].flatten()
    if float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.5:
        return CheckResult("depth noise", False, "the same noise pattern on every call: draw new noise inside "
                           "the function each time", details)
    return CheckResult("depth noise", True, f"depth noise std {float(std.median()):.4f}, no noise on RGB", details)


def check_colour_jitter(call: Call, gen: torch.Generator, calls: int = 40) -> CheckResult:
    """Brightness, contrast and saturation factors in 1 +- 0.2, drawn on every call."""
    outs, failed = _outputs(call, [(*colour_input(), INSTRUCTIONS[3]) for _ in range(calls)])
    if failed:
        return failed
    colour = [measure_colour(r, d) for r, d, _ in outs]
    if not all(c["bands_found"] for c in colour):
        return CheckResult("colour jitter", False, "could not find the grey and red bands in the output: is RGB "
                           "still an image of the input (channels in R, G, B order, not overwritten)?")
    details = {}
    for factor in ("brightness", "contrast", "saturation"):
        values = torch.tensor([c[factor] for c in colour])
        low, high, spread = float(values.min()), float(values.max()), float(values.max() - values.min())
        details[factor] = {"min": low, "max": high}
        if low < 1 - JITTER - FACTOR_TOL or high > 1 + JITTER + FACTOR_TOL:
            return CheckResult("colour jitter", False, f"{factor} factor measured {low:.2f}-{high:.2f}, expected "
                               f"within {1 - JITTER:.1f}-{1 + JITTER:.1f} (+-{FACTOR_TOL} tolerance)", details)
        if spread < MIN_FACTOR_SPREAD:
            what = "never changes" if spread < 0.02 else f"only spans {spread:.2f}"
            return CheckResult("colour jitter", False, f"the {factor} factor {what} over {calls} calls; a factor "
                               f"drawn uniformly in {1 - JITTER:.1f}-{1 + JITTER:.1f} on every call spans more "
                               f"than {MIN_FACTOR_SPREAD}", details)
    return CheckResult("colour jitter", True, "brightness, contrast and saturation factors in range and random",
                       details)


CHECKS = {
    "augment_contract": check_contract,
    "augment_paired_geometry": check_paired_geometry,
    "augment_crop": check_crop,
    "augment_flip_language": check_flip_language,
    "augment_depth_noise": check_depth_noise,
    "augment_colour_jitter": check_colour_jitter,
}


def check_augment_observation(fn: AugmentFn, seed: int = 0, calls: int = 30) -> list[CheckResult]:
    """Run every property check on ``fn`` in this process and print one line each.

    Raises AssertionError naming the first failure (after printing all of them)."""
    gen = torch.Generator().manual_seed(seed)
    results = []
    for name, check in CHECKS.items():
        try:
            results.append(check(fn, gen, calls))
        except NotImplementedError:
            results.append(CheckResult(name, False, "not implemented yet (NotImplementedError)"))
        except Exception as err:  # noqa: BLE001 - report the student's error as a failed check
            results.append(CheckResult(name, False, f"raised {type(err).__name__}: {err}"))
    for result in results:
        print(result)
    failed = [r for r in results if not r.passed]
    if failed:
        raise AssertionError(f"{len(failed)} of {len(results)} checks failed; first: {failed[0]}")
    print(f"All {len(results)} visible checks passed. The grader runs the same properties with more calls "
          f"on inputs drawn at grading time.")
    return results
