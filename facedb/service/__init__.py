"""The REST service and its pages: FastAPI over the same FaceDB the CLI uses (app), guards
against clients that hold connections without using them (connections), memory given back
after large requests (memory), and the browser pages (web/)."""
