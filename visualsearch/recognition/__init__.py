"""Recognition: local features, a visual vocabulary and geometric verification.

Plain numpy/OpenCV in and out, no Django (like ``extractors/``). The search service composes it with the global
CNN stage: candidates come from the global kNN *and* from visual words, and a shortlist is verified geometrically
against the stored keypoints of each candidate photo, which turns "looks similar" into "this exact product".

Modules, each usable alone:
- ``features``: RootSIFT keypoints and descriptors of a downscaled greyscale image.
- ``vocabulary``: a two-level k-means vocabulary (visual words) with Hamming-embedding signatures.
- ``packing``: a compact, versioned byte format for one photo's keypoints, words and signatures.
- ``inverted_file``: BM25 scoring of photos by shared visual words (the in-process candidate stage).
- ``verification``: correspondences from shared words, a robust homography, sanity checks, a verdict.
"""
