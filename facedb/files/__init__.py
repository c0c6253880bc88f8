"""Files to what the stages need: which files to look at (scan), their bytes, hashes, pixels and
EXIF (images), and the face tags other programs wrote into their XMP (face_tags)."""
