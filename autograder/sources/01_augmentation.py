# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# {{COLAB_BADGE}}
#
# # Notebook 01 · Data augmentation for a picking robot
#
# **Learning goals.** After this notebook you can
# 1. say which changes to an RGB-D observation a picking policy should be *robust to*, and which
#    ones change what the observation *means*;
# 2. apply one random geometric transform to two modalities at once, so that colour and depth
#    still describe the same pixels;
# 3. keep the language instruction consistent with a mirrored image;
# 4. check a random function by its statistical properties rather than by one output.
#
# **Time:** about 45 minutes. **Runs on:** Colab (free GPU or CPU) or a laptop CPU, in about two
# minutes.

# %% [markdown]
# ## Setup
# On Colab the first cell installs the course package `novapick`; on your own machine it uses the
# environment you installed it in. It also fixes the random seeds so your plots match a rerun.

# %% role="readonly"
import os
import random
import subprocess
import sys

try:  # only on Colab: install the course package (nothing else: Colab's torch stays as it is)
    import google.colab  # noqa: F401
    IN_COLAB = True
except ImportError:
    IN_COLAB = False
if IN_COLAB:
    NOVAPICK_PACKAGE = os.environ.get("NOVAPICK_PACKAGE", "{{STUDENT_PACKAGE}}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", NOVAPICK_PACKAGE], check=True)

import numpy as np
import torch

SEED = 0
random.seed(SEED)
np.random.seed(SEED)
torch.manual_seed(SEED)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
print(f"torch {torch.__version__} on {DEVICE}; Colab: {IN_COLAB}")

# %% [markdown]
# ## Why augment?
#
# NovaPick's robot looks into a bin through a wrist camera that records colour (RGB) and depth,
# and it receives an instruction such as *"pick up the red bottle on the left"*. Demonstrations
# are expensive, so the policy sees each scene only a few times during training. A warehouse,
# however, never looks exactly like the demonstrations: the lights over one aisle are warmer
# than over the next, the camera sits a few millimetres off after maintenance, the depth sensor
# jitters from frame to frame.
#
# Augmentation manufactures that variety from the data we have. Each time a training sample is
# drawn we change it the way the real world would, and the label stays valid. Four changes
# matter here:
#
# | change | imitates | applied to |
# |---|---|---|
# | colour jitter (brightness, contrast, saturation) | lighting that differs between sites and hours | RGB only: depth does not see colour |
# | random crop, resized back | small shifts and zooms of the camera | RGB **and** depth, the same box |
# | horizontal flip | a mirrored bin layout | RGB **and** depth, and the instruction's *left* / *right* |
# | Gaussian noise | the depth sensor's per-pixel noise | depth only |
#
# The hard part is not any single transform, it is *consistency*. The RGB and depth images are
# two views of the same pixels: crop them differently and the policy learns that the bottle's
# colour and its shape are in different places. Flip the image but not the words and the
# instruction points at the wrong object.

# %% [markdown]
# ## The data
#
# We work with a few demonstrations from the course's simulated picking cell, generated in the
# *quick* profile (four episodes, 96×96 pixels, a few seconds on a CPU) and cached under
# `data/`. The loader resizes them to the case study's 224×224. Each frame gives an RGB image and
# a depth map with values in [0, 1] (depth 0 marks a pixel where the sensor returned nothing)
# and the episode's instruction.

# %% role="readonly"
from pathlib import Path

import matplotlib.pyplot as plt

from novapick.data.dataset import EpisodeStore, NovaPickDataset, load_stats
from novapick.data.generate import generate
from novapick.data.writer import GenerationConfig

DATA = Path(os.environ.get("NOVAPICK_DATA", "data")) / "nb01_quick"
if not (DATA / "meta" / "info.json").exists():  # generated once, then found here
    generate(GenerationConfig(episodes=4, image_size=96, seed=1, max_items=3, shard_episodes=4), DATA)
store = EpisodeStore(DATA)
frames = NovaPickDataset(store, load_stats(DATA, store), image_size=224)
print(f"{len(store.episodes)} episodes, {len(frames)} frames; instructions:")
for text in sorted(set(store.instruction)):
    print("  -", text)


def observation(row: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Frame ``row`` as the case study's (rgb (3, 224, 224), depth (1, 224, 224), instruction)."""
    batch = frames.batch(np.array([row]))
    return batch["rgb"][0], batch["depth"][0], str(store.instruction[frames.rows[row]])


SAMPLES = [int(store.episode_start[e]) + 5 for e in range(len(store.episodes))]  # frame 5 of each episode
fig, axes = plt.subplots(2, len(SAMPLES), figsize=(3.2 * len(SAMPLES), 6.4))
for col, row in enumerate(SAMPLES):
    rgb, depth, text = observation(row)
    axes[0, col].imshow(rgb.permute(1, 2, 0))
    axes[0, col].set_title(text, fontsize=8)
    axes[1, col].imshow(depth[0], cmap="viridis", vmin=0, vmax=1)
for ax in axes.flat:
    ax.axis("off")
axes[0, 0].set_ylabel("RGB")
fig.suptitle("Wrist camera: RGB (top) and depth (bottom, bright = far)")
plt.show()

# %% [markdown]
# ## TODO · `augment_observation`
#
# Write the function below (the signature and the docstring are the case study's). What the
# requirements mean precisely, so that you know what the checks expect:
#
# * **Colour jitter:** brightness, contrast and saturation *factors* drawn uniformly from
#   [0.8, 1.2] on every call, as `torchvision.transforms.ColorJitter(0.2, 0.2, 0.2)` does. RGB values
#   stay in [0, 1].
# * **Crop:** one box covering 80–100 % of the image, at a random position, cut from both images
#   and resized back to the input's size. Whether you read "scale" as a fraction of the area (as
#   `RandomResizedCrop` does) or of the side is up to you.
# * **Flip:** with probability 0.5, both images mirrored left-right and every whole word *left* /
#   *right* in the instruction exchanged. Nothing else in the instruction changes.
# * **Depth noise:** zero-mean Gaussian noise with standard deviation 0.01 on the depth map (all
#   pixels or only valid ones: your choice), and no noise on RGB.
# * Every random choice is drawn anew on each call (use torch's global random generator, or
#   Python's `random`, so that `torch.manual_seed` makes a run repeatable).
#
# A correct answer takes 20–30 lines. `torchvision.transforms.functional` (`resized_crop`, `hflip`,
# `adjust_brightness`, ...) and `transforms.RandomResizedCrop.get_params` are worth a look.

# %% role="solution" grade_id="augment_observation"
import torch
import torchvision.transforms as T  # noqa: F401 - the hints' tools
import torchvision.transforms.functional as TF  # noqa: F401


def augment_observation(rgb: torch.Tensor, depth: torch.Tensor,
                         language: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """
    Apply data augmentation to a single observation.

    Args:
        rgb: RGB image tensor of shape (3, 224, 224), values in [0, 1]
        depth: Depth map tensor of shape (1, 224, 224), values in [0, 1]
        language: Language instruction string

    Returns:
        Augmented (rgb, depth, language) tuple

    Requirements:
        1. Apply random color jitter to RGB (brightness +/-0.2, contrast +/-0.2,
           saturation +/-0.2) -- this simulates variable warehouse lighting
        2. Apply the SAME random crop (scale 0.8-1.0) to BOTH rgb and depth --
           spatial correspondence must be preserved
        3. Apply random horizontal flip with p=0.5 to BOTH rgb and depth --
           remember to also flip any spatial terms in the language instruction
           (swap "left" <-> "right")
        4. Add Gaussian noise (std=0.01) to the depth map to simulate sensor noise

    Hints:
        - Use torchvision.transforms for color jitter
        - For paired spatial transforms, generate random parameters first, then
          apply the same params to both modalities
        - For language flipping, use simple string replacement
    """
    # <<solution solutions.augmentation:augment_observation>>


# %% [markdown]
# ### Self-check
# The next cell runs property checks on your function, in this notebook (read them in
# `novapick/checks/augmentation.py`). Each line says PASS or FAIL and, on a failure, the likely
# mistake. A correct answer passes all six; the cell then ends with "All 6 visible checks passed".

# %% role="readonly"
from novapick.checks.augmentation import check_augment_observation

_ = check_augment_observation(augment_observation)

# %% [markdown]
# The case study's own verification cell:

# %% role="readonly"
# Test your augmentation
rgb_test = torch.rand(3, 224, 224)
depth_test = torch.rand(1, 224, 224)
lang_test = "pick up the red bottle on the left"

rgb_aug, depth_aug, lang_aug = augment_observation(rgb_test, depth_test, lang_test)

assert rgb_aug.shape == (3, 224, 224), f"RGB shape mismatch: {rgb_aug.shape}"
assert depth_aug.shape == (1, 224, 224), f"Depth shape mismatch: {depth_aug.shape}"
assert rgb_aug.min() >= 0.0, "RGB values must be non-negative"
assert isinstance(lang_aug, str), "Language must be a string"
print("Augmentation tests passed.")

# %% [markdown]
# ### Graded checks
# The six cells below are graded. When you run them here they only say so; at grading time the
# grader runs the same properties as the self-check, with more calls and on inputs it draws then,
# from outside your notebook (nothing in the notebook can change its decision). Points are in
# brackets.

# %% role="tests" grade_id="augment_contract" points=1
# [1 point] tuple of (rgb (3, 224, 224), depth (1, 224, 224), str), float tensors, values in [0, 1]
from novapick.checks.protocol import submit

submit("augment_contract", augment_observation=augment_observation)

# %% role="tests" grade_id="augment_paired_geometry" points=2
# [2 points] the same crop and the same flip on RGB and depth
submit("augment_paired_geometry", augment_observation=augment_observation)

# %% role="tests" grade_id="augment_crop" points=1
# [1 point] a random crop of 80-100 % of the image, at random positions, resized back
submit("augment_crop", augment_observation=augment_observation)

# %% role="tests" grade_id="augment_flip_language" points=2
# [2 points] flipped on about half of the calls; left/right swapped exactly when flipped
submit("augment_flip_language", augment_observation=augment_observation)

# %% role="tests" grade_id="augment_depth_noise" points=2
# [2 points] Gaussian noise of std 0.01 on depth, new on every call; none on RGB
submit("augment_depth_noise", augment_observation=augment_observation)

# %% role="tests" grade_id="augment_colour_jitter" points=2
# [2 points] brightness, contrast and saturation factors within 1 +- 0.2, drawn on every call
submit("augment_colour_jitter", augment_observation=augment_observation)

# %% [markdown]
# ## Look at it
#
# Each row below is one frame: the original RGB and depth, then three augmented versions with
# their instructions. What to look for:
# * the augmented RGB and depth of a column show the *same* region of the bin, mirrored together;
# * when a pair is mirrored, *left* and *right* are swapped in its title (instructions without
#   them stay as they are);
# * colours shift a little in brightness and vividness, never beyond what a change of lighting does;
# * depth looks the same to the eye: noise of 0.01 is 2 cm on the 2 m depth range, subtle but real.

# %% role="readonly"
AUGMENTED = 3
fig, axes = plt.subplots(2 * len(SAMPLES), 1 + AUGMENTED, figsize=(3.0 * (1 + AUGMENTED), 5.6 * len(SAMPLES)))
for i, row in enumerate(SAMPLES):
    rgb, depth, text = observation(row)
    views = [(rgb, depth, text, "original")]
    views += [(*augment_observation(rgb, depth, text), f"augmented {k + 1}") for k in range(AUGMENTED)]
    for col, (view_rgb, view_depth, view_text, label) in enumerate(views):
        axes[2 * i, col].imshow(view_rgb.permute(1, 2, 0).clamp(0, 1))
        axes[2 * i, col].set_title(f"{label}\n{view_text}", fontsize=7)
        axes[2 * i + 1, col].imshow(view_depth[0], cmap="viridis", vmin=0, vmax=1)
for ax in axes.flat:
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Thought question (2 points, graded by hand)
#
# Your flip mirrors the images and the words. In the course's later notebooks the policy learns
# from **actions**: seven joint velocities of the arm and the gripper mode. Suppose the training
# pipeline used `augment_observation` on each observation and kept the recorded action as it is.
# Which of the four augmentations keep the (observation, action) pair correct, and which does
# not? What would you have to do to keep that one, and when would you rather drop it? Answer in
# a few sentences in the cell below.

# %% [markdown] role="answer" grade_id="thought_flip_actions" points=2
# ### BEGIN SOLUTION
# **Model answer.** Colour jitter and depth noise change only how the scene looks, not where
# anything is, so the recorded action stays right for them. A small crop shifts and zooms the
# view but keeps left and right; with a wrist camera the action stays roughly right, though
# large crops can cut the target off. The flip does not: the mirrored image shows the target on
# the other side, but the recorded joint velocities still move the arm towards the original
# side, so the pair now teaches the wrong motion. To keep it, the action must be mirrored too
# (roughly, for the Panda near its home pose: the velocities of the joints whose axes lie in the
# robot's plane of symmetry, joints 1, 3, 5 and 7, change sign; the camera must sit on that
# plane). Drop the flip when that mirror is not exact (an offset camera, an asymmetric gripper or
# cell), or use it only for parts that do not predict actions (e.g. grounding words in images).
# The course's training harness keeps only jitter and noise for this reason.
#
# **Rubric (2 points).**
# * 1 point: identifies the flip as the augmentation that breaks the (observation, action) pair,
#   with the reason (the action still moves toward the original side). Saying jitter/noise are
#   safe is expected; crop may be called safe or approximately safe.
# * 1 point: a workable remedy: mirror the action (which components change sign, or "mirror the
#   joint velocities about the robot's symmetry plane"), or drop the flip for action learning;
#   and a condition under which dropping is better (asymmetric robot, camera or cell).
# * 0 for answers that call every augmentation label-preserving, or that only restate the task.
# ### END SOLUTION

# %% [markdown]
# ## Summary
# You wrote an augmentation that changes lighting, framing, handedness and sensor noise while
# keeping colour, depth and words consistent, and you checked it by properties that hold for any
# correct random transform. Notebook 02 explores the demonstrations themselves: what the robot
# does, how long it takes, and where the data is thin.
