"""Dedup report files: JSON (the documented schema), CSV (a row per group member) and one
self-contained HTML page (thumbnails embedded) for people."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

from PIL import Image

from ..errors import ImageError
from ..files.images import decode, read_file
from ..vision.align import thumbnail_media_type

THUMBNAIL = 200
# Decoded no larger than needed for the thumbnail (a JPEG at 1/8 of its size where that will do).
THUMBNAIL_DECODED_PIXELS = 4 * THUMBNAIL * THUMBNAIL


def write_json(report: dict, out) -> None:
    json.dump(report, out, indent=2, ensure_ascii=False)
    out.write("\n")


CSV_FIELDS = [
    "tier",
    "kind",
    "group",
    "keep",
    "member",
    "path",
    "face_id",
    "person_id",
    "name",
    "width",
    "height",
    "format",
    "size",
    "taken_at",
    "reason",
    "evidence",
]


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's CSV injection):
# a person named =HYPERLINK(...) would be a live link. Such text cells get a leading quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def write_csv(report: dict, out) -> None:
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for group in report["groups"]:
        evidence = "; ".join(e["why"] for e in group["evidence"])
        common = {
            "tier": group["tier"],
            "kind": group["kind"],
            "group": group["id"],
            "reason": group["reason"],
            "evidence": evidence,
        }
        for member in _members(group):
            photo = member.get("photo") or {}
            row = common | {
                "keep": member["keep"],
                "member": member["label"],
                "path": photo.get("path"),
                "face_id": member.get("face_id"),
                "person_id": member.get("person_id"),
                "name": member.get("name"),
                "width": photo.get("width"),
                "height": photo.get("height"),
                "format": photo.get("format"),
                "size": photo.get("size"),
                "taken_at": photo.get("taken_at"),
            }
            writer.writerow({key: spreadsheet_safe(value) for key, value in row.items()})


def _members(group: dict) -> list[dict]:
    if "photos" in group:
        return [{"label": f"photo {p['id']}", "photo": p, "keep": p["id"] == group["keep"]} for p in group["photos"]]
    if "faces" in group:
        return [
            {
                "label": f"face {f['face_id']}",
                "photo": f["photo"],
                "face_id": f["face_id"],
                "keep": f["photo"]["id"] == group["keep"],
            }
            for f in group["faces"]
        ]
    return [
        {"label": f"person {p['id']}", "person_id": p["id"], "name": p["name"], "keep": p["id"] == group["keep"]}
        for p in group["people"]
    ]


def write_html(report: dict, path: Path, face_thumbnails: dict[int, bytes]) -> None:
    path.write_text(render_html(report, face_thumbnails), encoding="utf-8")


def _photo_thumbnail(file: str) -> str | None:
    try:
        data, _ = read_file(Path(file))
        rgb = decode(data, max_decoded_pixels=THUMBNAIL_DECODED_PIXELS).rgb
    except ImageError:
        return None
    image = Image.fromarray(rgb)
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def render_html(report: dict, face_thumbnails: dict[int, bytes]) -> str:
    e = html.escape
    thumbs: dict[str, str | None] = {}

    def photo_card(photo: dict, keep: bool, face_id: int | None = None) -> str:
        src: str | None
        if face_id is not None and face_id in face_thumbnails:
            data = face_thumbnails[face_id]
            src = f"data:{thumbnail_media_type(data)};base64," + base64.b64encode(data).decode()
        else:
            if photo["path"] not in thumbs:
                thumbs[photo["path"]] = _photo_thumbnail(photo["path"])
            src = thumbs[photo["path"]]
        image = (
            f'<img src="{src}" alt="{e(Path(photo["path"]).name)}">'
            if src
            else '<div class="missing">file missing</div>'
        )
        facts = [f"{photo['width']}×{photo['height']}", photo.get("format") or "?", _size(photo.get("size"))]
        if photo.get("taken_at"):
            facts.append(photo["taken_at"].replace("T", " "))
        badge = '<span class="keep">keep</span>' if keep else ""
        return (
            f'<figure class="{"kept" if keep else ""}">{image}<figcaption>{badge}'
            f'<span class="path" title="{e(photo["path"])}">{e(photo["path"])}</span>'
            f'<span class="facts">{e(" · ".join(facts))}</span></figcaption></figure>'
        )

    sections = []
    for group in report["groups"]:
        if "photos" in group:
            cards = "".join(photo_card(p, p["id"] == group["keep"]) for p in group["photos"])
        elif "faces" in group:
            cards = "".join(
                photo_card(f["photo"], f["photo"]["id"] == group["keep"], f["face_id"]) for f in group["faces"]
            )
        else:
            cards = (
                "".join(
                    f'<figure class="{"kept" if p["id"] == group["keep"] else ""}"><div class="person">'
                    f"{e(p['name'] or '#' + str(p['id']))}</div><figcaption>"
                    f"{'<span class=keep>keep</span>' if p['id'] == group['keep'] else ''}"
                    f'<span class="facts">person #{p["id"]} · {p["faces"]} faces</span></figcaption></figure>'
                    for p in group["people"]
                )
                + f'<p class="suggestion"><code>{e(group["suggestion"])}</code></p>'
            )
        evidence = "".join(f"<li>{e(item['why'])}</li>" for item in group["evidence"][:8])
        more = len(group["evidence"]) - 8
        if more > 0:
            evidence += f"<li>… and {more} more</li>"
        sections.append(
            f'<section class="group" data-tier="{group["tier"]}"><h2><span class="tier">tier {group["tier"]}</span> '
            f"{e(group['kind'].replace('_', ' '))} <small>{e(group['id'])}</small></h2>"
            f'<p class="reason">Suggest keeping the marked one: {e(group["reason"])}</p>'
            f'<div class="cards">{cards}</div><ul class="evidence">{evidence}</ul></section>'
        )

    counts = report["counts"]
    filters = "".join(
        f'<label><input type="checkbox" data-tier="{n}" checked> tier {n}: {e(kind.replace("_", " "))} '
        f"({counts.get(kind, 0)})</label>"
        for n, kind in (
            (1, "identical"),
            (2, "same_picture"),
            (3, "near_duplicate"),
            (4, "same_face"),
            (5, "same_person"),
        )
        if kind in counts
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facedb dedup report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }}
h1 {{ margin: 0 0 .2em; }} .meta {{ color: #666; margin-bottom: 1em; }}
.filters label {{ margin-right: 1.2em; }}
.group {{ background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; margin: 1em 0; }}
.group h2 {{ font-size: 1.05em; margin: .2em 0; }} .tier {{ background: #345; color: #fff; border-radius: 3px; padding: 0 .4em; }}
.cards {{ display: flex; flex-wrap: wrap; gap: .8em; }}
figure {{ margin: 0; width: 210px; border: 2px solid transparent; border-radius: 4px; padding: 4px; }}
figure.kept {{ border-color: #2e9d57; }}
figure img {{ max-width: 200px; max-height: 200px; display: block; }}
figcaption {{ font-size: 12px; }} .path {{ display: block; overflow-wrap: anywhere; }} .facts {{ color: #666; display: block; }}
.keep {{ background: #2e9d57; color: #fff; border-radius: 3px; padding: 0 .3em; margin-right: .3em; }}
.person {{ width: 200px; height: 80px; display: flex; align-items: center; justify-content: center; background: #eef; font-weight: bold; }}
.reason {{ margin: .3em 0; }} .evidence {{ color: #555; font-size: 12px; }} .missing {{ width: 200px; height: 60px; background: #eee; }}
</style></head>
<body>
<h1>facedb dedup report</h1>
<p class="meta">{report["photos"]} photos{(" under " + e(", ".join(report["scope"]))) if report["scope"] else ""} ·
generated {e(report["generated_at"])} · nothing has been deleted: these are suggestions.</p>
<p class="filters">{filters}</p>
{"".join(sections) or "<p>No duplicates found.</p>"}
<script>
document.querySelectorAll('.filters input').forEach(function (box) {{
  box.addEventListener('change', function () {{
    document.querySelectorAll('.group[data-tier="' + box.dataset.tier + '"]').forEach(function (g) {{
      g.style.display = box.checked ? '' : 'none';
    }});
  }});
}});
</script>
</body></html>
"""
