"""Proof on the user's own photos: `facedb eval` (the published verification protocol and
leave-one-out identification: evaluate, its figures in evaluation, why a pair was misjudged in
pair_errors) and `facedb calibrate` (a who-is-this threshold that names no stranger: calibrate)."""
