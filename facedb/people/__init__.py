"""The people of an archive: faces grouped into people (clustering: pure functions over numpy
arrays) and a clustering turned into changes to people and back (plan: what `facedb cluster`
shows or applies). Their storage is db/people.py."""
