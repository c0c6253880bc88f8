"""The service's routes, one module a resource: search (who, search, compare), people, faces,
photos (a photo's bytes, dedup), indexing (jobs) and pages (the browser pages, the API docs,
health). A new endpoint goes in its resource's module; a new resource gets a module here and
one line in app.py."""
