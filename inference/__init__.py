"""Facial landmarks on photos: finding faces, the crop around each, the detector's points and the five named
points, pictures. `find_landmarks` is the call; detect.py the command line (README, "Your own images").

Layering: this package sits above `datasets/` and `model.py`; `utils/` never imports it.

- `inference.photo`: reading a photo (large ones reduced, EXIF orientation, pixel limit);
- `inference.finders`: the face finders (YuNet, Haar cascade);
- `inference.crops`: from a face box to the training crop and the looks;
- `inference.points`: the detector's K points and the named points of each face;
- `inference.drawing`: the pictures;
- `inference.api`: `find_landmarks`, `load_detector`.
"""

from inference.api import Detector, find_landmarks, load_detector

__all__ = ["Detector", "find_landmarks", "load_detector"]
