"""Pixels to faces to embeddings: the detector (MTCNN), the crop FaceNet was trained on, the
embedders, the runtimes they run on and their pinned weights. Knows nothing of the database."""
