"""The five annotated face landmarks, the one list of their names and order.

CelebA/MAFL, AFLW and MTFL annotate the same five points in this order. Left and right are as seen in
the image (the left eye is the one with the smaller x in a frontal face), as in the annotation files.
"""

from __future__ import annotations

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")
NUM_ANNOTATED = len(LANDMARK_NAMES)
LEFT_EYE, RIGHT_EYE = LANDMARK_NAMES.index("left_eye"), LANDMARK_NAMES.index("right_eye")
# After a horizontal flip, output point k is input point FLIP_PERMUTATION[k]: the image-left eye of the
# flipped image is the image-right eye of the original, and so on, so each label stays on its feature.
FLIP_PERMUTATION = (1, 0, 2, 4, 3)


def landmark_label(name: str) -> str:
    """How reports write a landmark name: 'left_eye' -> 'left eye'."""
    return name.replace("_", " ")
