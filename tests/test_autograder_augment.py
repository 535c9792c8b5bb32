"""Notebook 01's checks accept every correct answer and catch the common wrong ones.

Two independent correct implementations (not the reference: one with torchvision's
ColorJitter and RandomResizedCrop.get_params, one by hand with the crop's scale read as
a side length and noise added before cropping) must earn every hidden item over
several grading seeds; each common mistake must lose its own item(s). The hidden checks
run here through a session that calls the function directly (the sandboxed path is in
test_autograder_grade.py).
"""
from __future__ import annotations

import random
import socket
import threading

import pytest
import torch

from autograder.hidden import ASSIGNMENTS
from autograder.judge import Judge, SubmissionError
from novapick.checks import protocol
from novapick.checks.augmentation import check_augment_observation

HIDDEN = ASSIGNMENTS["01_augmentation"]

TORCHVISION_IMPL = '''
import random
import re

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF

_JITTER = T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)


def augment_observation(rgb, depth, language):
    rgb = _JITTER(rgb)
    top, left, h, w = T.RandomResizedCrop.get_params(rgb, scale=(0.8, 1.0), ratio=(3 / 4, 4 / 3))
    size = list(rgb.shape[1:])
    rgb = TF.resized_crop(rgb, top, left, h, w, size, antialias=True)
    depth = TF.resized_crop(depth, top, left, h, w, size, antialias=True)
    if random.random() < 0.5:
        rgb, depth = TF.hflip(rgb), TF.hflip(depth)
        language = re.sub(r"left|right", lambda m: {"left": "right", "right": "left"}[m.group(0)], language)
    depth = depth + 0.01 * torch.randn_like(depth)
    return rgb.clamp(0, 1), depth.clamp(0, 1), language
'''

HAND_IMPL = '''
import re

import torch
import torch.nn.functional as F

_GREY = torch.tensor([0.299, 0.587, 0.114])[:, None, None]


def augment_observation(rgb, depth, language):
    _, H, W = rgb.shape
    depth = depth + torch.normal(0.0, 0.01, size=depth.shape)   # noise first, on every pixel
    flip = bool(torch.rand(()) < 0.5)
    side = 0.8 + 0.2 * float(torch.rand(()))                      # "scale" read as side length
    h, w = int(H * side), int(W * side)
    top, left = int(torch.randint(0, H - h + 1, ())), int(torch.randint(0, W - w + 1, ()))

    def geometry(x, mode):
        x = F.interpolate(x[None, :, top:top + h, left:left + w], size=(H, W), mode=mode)[0]
        return x.flip(-1) if flip else x

    rgb, depth = geometry(rgb, "bilinear"), geometry(depth, "nearest")
    s, c, b = (0.8 + 0.4 * torch.rand(3)).tolist()               # saturation, contrast, brightness
    grey = (rgb * _GREY).sum(0, keepdim=True)
    rgb = ((rgb - grey) * s + grey).clamp(0, 1)
    mean = (rgb * _GREY).sum(0).mean()
    rgb = ((rgb - mean) * c + mean).clamp(0, 1)
    rgb = (rgb * b).clamp(0, 1)
    if flip:
        language = re.sub(r"\\b(left|right)\\b", lambda m: "right" if m.group(1) == "left" else "left", language)
    return rgb, depth.clamp(0, 1), language
'''

# Common mistakes: one template, one flag each.
WRONG_IMPL = '''
import random

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF

_FIXED_FLIP = random.random() < 0.5  # drawn once, when the cell runs


def augment_observation(rgb, depth, language, mistake=MISTAKE):
    jitter = 0.5 if mistake == "jitter_too_strong" else 0.2
    rgb = T.ColorJitter(jitter, jitter, jitter)(rgb)
    size = list(rgb.shape[1:])
    box = T.RandomResizedCrop.get_params(rgb, scale=(0.8, 1.0), ratio=(3 / 4, 4 / 3))
    rgb = TF.resized_crop(rgb, *box, size, antialias=True)
    if mistake == "different_crops":
        box = T.RandomResizedCrop.get_params(rgb, scale=(0.8, 1.0), ratio=(3 / 4, 4 / 3))
    depth = TF.resized_crop(depth, *box, size, antialias=True)
    flip = _FIXED_FLIP if mistake == "same_flip_every_call" else random.random() < 0.5
    if flip:
        rgb, depth = TF.hflip(rgb), TF.hflip(depth)
        if mistake == "naive_replace":
            language = language.replace("left", "right").replace("right", "left")
        elif mistake != "flip_without_words":
            language = language.replace("left", "@").replace("right", "left").replace("@", "right")
    noise = 0.1 if mistake == "variance_for_std" else 0.01
    if mistake == "noise_on_rgb":
        rgb = rgb + noise * torch.randn_like(rgb)
    else:
        depth = depth + noise * torch.randn_like(depth)
    if mistake == "no_clamp":
        return rgb * 1.1, depth, language
    return rgb.clamp(0, 1), depth.clamp(0, 1), language
'''

# mistake -> the hidden items it must lose (and no others)
MISTAKES = {
    "different_crops": {"augment_paired_geometry"},
    "flip_without_words": {"augment_flip_language"},
    "naive_replace": {"augment_flip_language"},
    "same_flip_every_call": {"augment_flip_language"},
    "noise_on_rgb": {"augment_depth_noise"},
    "variance_for_std": {"augment_depth_noise"},
    "jitter_too_strong": {"augment_colour_jitter"},
    "no_clamp": {"augment_contract", "augment_colour_jitter"},
}


def load(source: str, mistake: str | None = None):
    namespace: dict = {}
    exec(compile(source.replace("MISTAKE", repr(mistake)), "<submission>", "exec"), namespace)
    return namespace["augment_observation"]


class DirectSession:
    """The judge's Session, minus the socket: seeds the global RNGs like the kernel does
    and sends values through the same encoding."""

    def __init__(self, fn, seed: int):
        self.fn, self.seed, self._seeds = fn, seed, random.Random(seed)

    def call(self, target: str, *args, timeout_s: float = 10.0, **kwargs):
        protocol._seed(self._seeds.randrange(1 << 31))
        try:
            value = self.fn(*args, **kwargs)
        except Exception as err:
            raise SubmissionError(f"{target} raised {type(err).__name__}: {err}") from None
        return protocol.decode(protocol.encode(protocol.portable(value)))


def failed_items(fn, seed: int) -> set[str]:
    failed = set()
    for grade_id, check in HIDDEN.items():
        try:
            if not check(DirectSession(fn, seed)).passed:
                failed.add(grade_id)
        except SubmissionError:
            failed.add(grade_id)
    return failed


@pytest.mark.parametrize("name", ["reference", "torchvision", "hand"])
@pytest.mark.parametrize("seed", [11, 12])
def test_correct_implementations_get_every_item(name, seed):
    if name == "reference":
        from solutions.augmentation import augment_observation as fn
    else:
        fn = load(TORCHVISION_IMPL if name == "torchvision" else HAND_IMPL)
    assert failed_items(fn, seed) == set()


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_common_mistakes_lose_their_items(mistake):
    assert failed_items(load(WRONG_IMPL, mistake), seed=5) == MISTAKES[mistake]


def test_the_mistake_template_without_a_mistake_is_correct():
    assert failed_items(load(WRONG_IMPL, None), seed=6) == set()


def test_visible_checks_pass_correct_and_name_the_mistake(capsys):
    check_augment_observation(load(HAND_IMPL), seed=3)
    assert "All 6 visible checks passed" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="line up"):
        check_augment_observation(load(WRONG_IMPL, "different_crops"), seed=3)
    with pytest.raises(AssertionError, match="swap left/right"):
        check_augment_observation(load(WRONG_IMPL, "flip_without_words"), seed=3)
    with pytest.raises(AssertionError, match="depth map only"):
        check_augment_observation(load(WRONG_IMPL, "noise_on_rgb"), seed=3)
    with pytest.raises(AssertionError, match="same flip on every call"):
        check_augment_observation(load(WRONG_IMPL, "same_flip_every_call"), seed=3)
    with pytest.raises(AssertionError, match="not implemented"):
        check_augment_observation(lambda *a: (_ for _ in ()).throw(NotImplementedError()), seed=3)


def test_visible_checks_name_shape_range_and_randomness_mistakes():
    def no_resize(rgb, depth, language):
        return rgb[:, :200, :200], depth[:, :200, :200], language

    def fixed(rgb, depth, language):
        return rgb, depth, language

    with pytest.raises(AssertionError, match=r"shape \(3, 224, 224\), got \(3, 200, 200\)"):
        check_augment_observation(no_resize, seed=3)
    with pytest.raises(AssertionError, match="must stay in"):
        check_augment_observation(load(WRONG_IMPL, "no_clamp"), seed=3)
    with pytest.raises(AssertionError, match="not cropped|never changes|about half"):
        check_augment_observation(fixed, seed=3)


# ------------------------------------------------------------- the protocol itself

def _kernel_side(tmp_path, monkeypatch, targets: dict, check: str):
    monkeypatch.setenv(protocol.SOCKET_ENV, str(tmp_path / "judge.sock"))
    return protocol.submit(check, **targets)


def test_protocol_round_trip_and_verdict_record(tmp_path, monkeypatch):
    def check(session):
        state = session.call("model.state_dict", timeout_s=5)
        out = session.call("model", torch.ones(2, 3), timeout_s=5)
        ok = set(state) == {"weight", "bias"} and out.shape == (2, 4)
        return type("R", (), {"passed": ok, "message": f"{len(state)} tensors, output {tuple(out.shape)}"})()

    with Judge(tmp_path / "judge.sock", {"linear": check}, seed=1) as judge:
        assert _kernel_side(tmp_path, monkeypatch, {"model": torch.nn.Linear(3, 4)}, "linear") is True
    assert judge.verdicts["linear"].passed and judge.verdicts["linear"].calls == 2


def test_protocol_failures_are_verdicts_not_crashes(tmp_path, monkeypatch):
    import numpy as np

    def check(session):
        session.call("fn", timeout_s=1)
        raise AssertionError("unreachable")

    def slow():
        while True:
            pass

    cases = {"numpy": (lambda: np.zeros(3), "returned a numpy.ndarray"),
             "raises": (lambda: 1 / 0, "raised ZeroDivisionError"),
             "exits": (lambda: __import__("sys").exit(3), "raised SystemExit"),
             "slow": (slow, "exceeded its 1 s limit")}
    for name, (fn, expected) in cases.items():
        with Judge(tmp_path / f"{name}.sock", {name: check}) as judge:
            monkeypatch.setenv(protocol.SOCKET_ENV, str(tmp_path / f"{name}.sock"))
            with pytest.raises(AssertionError):
                protocol.submit(name, fn=fn)
        assert not judge.verdicts[name].passed and expected in judge.verdicts[name].message, name


def test_judge_refuses_oversized_messages_and_unknown_checks(tmp_path):
    with Judge(tmp_path / "j.sock", {}) as judge:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(tmp_path / "j.sock"))
            sock.sendall(protocol._HEADER.pack(1 << 40))  # a 1 TB "hello"
            sock.settimeout(5)
            assert sock.recv(1) == b""  # dropped
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(tmp_path / "j.sock"))
            protocol.send(sock, {"op": "hello", "check": "nope", "targets": []})
            reply = protocol.recv(sock)
        assert reply["op"] == "verdict" and not reply["passed"]
    assert judge.verdicts == {} and any("limit" in e for e in judge.events)


def test_submit_outside_grading_only_says_so(monkeypatch, capsys):
    monkeypatch.delenv(protocol.SOCKET_ENV, raising=False)
    assert protocol.submit("augment_crop", augment_observation=None) is None
    assert "runs when your notebook is graded" in capsys.readouterr().out


def test_protocol_threads_do_not_leak():
    assert not [t for t in threading.enumerate() if t.name == "judge"]
