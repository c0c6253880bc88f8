"""`python cli.py ...` does what `facedb ...` does."""

from facedb.cli import main

if __name__ == "__main__":
    main()
