"""What a stage's display may show, checked in the kernel before anything renders it.

Only `image/png` and `image/jpeg` (their structure walked, their size capped),
`text/plain`, `application/json`, and HTML, SVG and Markdown after sanitising
with nh3 (Markdown is rendered to HTML here first: a notebook renders a live
output's Markdown, raw HTML and `javascript:` links included, unsanitised).
Anything else is dropped with a note.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import struct
import zlib
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from typing import Any

from ..sinks import DisplayBundle

MAX_IMAGE_BYTES = 16 << 20
MAX_PIXELS = 64_000_000  # a picture a browser must not be asked to unpack
MAX_SIDE = 32_768
IMAGES = ("image/png", "image/jpeg")
TEXTS = ("text/plain", "text/html", "text/markdown", "image/svg+xml")
SAFE_TYPES = (*IMAGES, *TEXTS, "application/json")

Checked = tuple[DisplayBundle | None, list[str]]


def check_display(frame: bytes) -> Checked:
    """A display frame (JSON: {"data": {mime: value}, "metadata": {...}}) as the
    bundle that may be shown, if any of it may, and notes on what was not."""
    try:
        message = json.loads(frame.decode("utf-8"), parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, ["a malformed display (not a JSON bundle)"]
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, dict) or not data:
        return None, ["a malformed display (no data)"]
    metadata = message.get("metadata")
    return check_bundle(data, metadata if isinstance(metadata, dict) else {})


def check_bundle(data: Mapping[str, Any], metadata: Mapping[str, Any]) -> Checked:
    """The safe part of a MIME bundle, and notes on what was left out or cleaned."""
    kept: dict[str, Any] = {}
    notes: list[str] = []
    for mime, value in data.items():
        if mime == "text/markdown" and "text/html" in data:
            continue  # the bundle's own HTML is what shows
        checker = _CHECKS.get(mime)
        if checker is None:
            notes.append(f"{str(mime)[:60]!r} is not a type a stage may show")
            continue
        shown, note = checker(value)
        if note:
            notes.append(f"{mime}: {note}")
        if shown is not None:
            kept["text/html" if mime == "text/markdown" else mime] = shown
    if not kept:
        return None, notes or ["nothing in the display may be shown"]
    if "text/plain" not in kept and isinstance(data.get("text/markdown"), str):
        kept["text/plain"] = data["text/markdown"]
    return DisplayBundle(kept, _metadata(metadata, kept)), notes


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _metadata(metadata: Mapping[str, Any], kept: Mapping[str, Any]) -> dict[str, Any]:
    """Only an image's width and height: nothing that changes how a frontend renders."""
    out: dict[str, Any] = {}
    for mime in IMAGES:
        given = metadata.get(mime)
        if mime in kept and isinstance(given, dict):
            sizes = {
                k: v
                for k, v in given.items()
                if k in ("width", "height") and type(v) is int and 0 < v <= MAX_SIDE
            }
            if sizes:
                out[mime] = sizes
    return out


def _text(value: Any) -> tuple[str | None, str]:
    return (value, "") if isinstance(value, str) else (None, "not text")


def _json(value: Any) -> tuple[Any, str]:
    return (value, "") if isinstance(value, dict | list) else (None, "not a JSON object or list")


def _image(kind: str) -> Callable[[Any], tuple[str | None, str]]:
    def check(value: Any) -> tuple[str | None, str]:
        if not isinstance(value, str):
            return None, "not base64 text"
        text = "".join(value.split())
        if len(text) > (MAX_IMAGE_BYTES * 4) // 3 + 4:
            return None, f"larger than {MAX_IMAGE_BYTES >> 20} MiB"
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None, "not valid base64"
        why = check_png(raw) if kind == "png" else check_jpeg(raw)
        return (None, why) if why else (text, "")

    return check


_PNG = b"\x89PNG\r\n\x1a\n"
_CHUNK = struct.Struct(">I4s")


def check_png(raw: bytes) -> str:
    """Why `raw` is not a whole PNG of a sane size ("" if it is): the signature,
    then every chunk (its CRC), IHDR first, IEND last."""
    if not raw.startswith(_PNG):
        return "not a PNG (wrong signature)"
    at, first = len(_PNG), True
    while at + 12 <= len(raw):
        length, kind = _CHUNK.unpack_from(raw, at)
        end = at + 12 + length
        if end > len(raw):
            break
        body = raw[at + 8 : at + 8 + length]
        if zlib.crc32(kind + body) != struct.unpack_from(">I", raw, end - 4)[0]:
            return f"a damaged PNG (bad CRC in {kind!r})"
        if first:
            if kind != b"IHDR" or length != 13:
                return "a damaged PNG (no IHDR)"
            width, height = struct.unpack_from(">II", body)
            if why := _sane(width, height):
                return why
            first = False
        if kind == b"IEND":
            return "" if end == len(raw) else "a PNG with data after its end"
        at = end
    return "a truncated PNG"


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def check_jpeg(raw: bytes) -> str:
    """Why `raw` is not a whole JPEG of a sane size ("" if it is): SOI, the
    segments up to the scan (a frame header among them), EOI at the end."""
    if not raw.startswith(b"\xff\xd8\xff"):
        return "not a JPEG (wrong signature)"
    if not raw.endswith(b"\xff\xd9"):
        return "a truncated JPEG (no end marker)"
    at, sized = 2, False
    while at + 4 <= len(raw):
        if raw[at] != 0xFF:
            return "a damaged JPEG (no marker where one belongs)"
        marker = raw[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        (length,) = struct.unpack_from(">H", raw, at + 2)
        if length < 2 or at + 2 + length > len(raw):
            return "a truncated JPEG"
        if marker in _SOF:
            if length < 7:
                return "a damaged JPEG (short frame header)"
            height, width = struct.unpack_from(">HH", raw, at + 5)
            if why := _sane(width, height):
                return why
            sized = True
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the end marker
            return "" if sized else "a damaged JPEG (no frame header)"
        at += 2 + length
    return "a truncated JPEG"


def _sane(width: int, height: int) -> str:
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) or width * height > MAX_PIXELS:
        return f"an image of {width}x{height} pixels, beyond what a display may show"
    return ""


# HTML: formatting, tables and images inline (data: URLs only, so that showing
# a display never makes the browser fetch anything), links to the web.
_HTML_TAGS = {
    *("a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup"),
    *("dd", "del", "details", "div", "dl", "dt", "em", "figcaption", "figure"),
    *("h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark"),
    *("ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup"),
    *("table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var", "wbr"),
}
_HTML_ATTRIBUTES = {
    "*": {"class", "style", "title", "lang", "dir", "align", "valign"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "headers"},
    "th": {"colspan", "rowspan", "headers", "scope"},
    "col": {"span"},
    "table": {"border", "cellpadding", "cellspacing"},
    "colgroup": {"span"},
    "ol": {"start"},
}
_STYLE = {
    *("color", "background-color", "font-weight", "font-style", "font-size", "font-family"),
    *("text-align", "text-decoration", "vertical-align", "white-space", "width", "height"),
    *("max-width", "max-height", "min-width", "padding", "padding-left", "padding-right"),
    *("padding-top", "padding-bottom", "margin", "margin-left", "margin-right", "margin-top"),
    *("margin-bottom", "border", "border-collapse", "border-spacing", "border-color"),
    *("border-style", "border-width", "border-top", "border-bottom", "border-left"),
    *("border-right", "display", "opacity", "line-height", "overflow"),
}
_SVG_TAGS = {
    *("svg", "g", "path", "circle", "ellipse", "line", "polyline", "polygon", "rect"),
    *("text", "tspan", "defs", "clipPath", "use", "title", "desc", "symbol", "marker"),
    *("linearGradient", "radialGradient", "stop"),
}
_SVG_ATTRIBUTES = {
    "*": {
        *("id", "class", "style", "transform", "fill", "fill-opacity", "fill-rule", "stroke"),
        *("stroke-width", "stroke-opacity", "stroke-linecap", "stroke-linejoin"),
        *("stroke-dasharray", "stroke-dashoffset", "stroke-miterlimit", "opacity"),
        *("clip-path", "clip-rule", "font-family", "font-size", "font-weight", "text-anchor"),
        *("dominant-baseline", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry"),
        *("dx", "dy", "width", "height", "d", "points", "viewBox", "preserveAspectRatio"),
        *("version", "offset", "stop-color", "stop-opacity", "gradientUnits"),
        *("gradientTransform", "markerWidth", "markerHeight", "refX", "refY", "orient"),
        *("clipPathUnits", "href", "xlink:href"),
    },
}
_SVG_STYLE = {
    *_STYLE,
    *("fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-opacity"),
    *("stroke-linecap", "stroke-linejoin", "stroke-dasharray", "stroke-dashoffset"),
    *("stroke-miterlimit", "clip-path", "text-anchor", "dominant-baseline"),
}
_NAMESPACES = {"xmlns": "http://www.w3.org/2000/svg", "xmlns:xlink": "http://www.w3.org/1999/xlink"}
_DATA_IMAGE = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*\Z")
_WEB_LINK = re.compile(r"(?:https?://|mailto:)", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*(['\"]?)\s*([^)'\"]*)", re.IGNORECASE)


def _attribute(element: str, name: str, value: str) -> str | None:
    """The last word on each attribute nh3 kept: where a URL may point, what CSS may say."""
    if name in ("href", "xlink:href"):
        if value.startswith("#") or (element == "a" and _WEB_LINK.match(value)):
            return value
        return None
    if name == "src":
        return value if _DATA_IMAGE.match(value) else None  # nothing fetched from anywhere
    lowered = value.lower()
    # CSS may point at fragments of the same picture only; escapes could hide a URL.
    if name == "style" and ("\\" in value or "expression(" in lowered or "@" in value):
        return None
    if "url(" in lowered and any(not t.startswith("#") for _, t in _CSS_URL.findall(value)):
        return None
    return value


@functools.lru_cache(maxsize=1)
def _cleaners() -> tuple[Callable[[str], str], Callable[[str], str]]:
    import nh3

    schemes = {"http", "https", "mailto", "data"}
    html = functools.partial(
        nh3.clean,
        tags=_HTML_TAGS,
        attributes=_HTML_ATTRIBUTES,
        url_schemes=schemes,
        attribute_filter=_attribute,
        filter_style_properties=_STYLE,
        strip_comments=True,
    )
    svg = functools.partial(
        nh3.clean,
        tags=_SVG_TAGS,
        attributes=_SVG_ATTRIBUTES,
        url_schemes=set(),
        attribute_filter=_attribute,
        filter_style_properties=_SVG_STYLE,
        set_tag_attribute_values={"svg": _NAMESPACES},
        link_rel=None,
        strip_comments=True,
    )
    return html, svg


def sanitize_html(text: str) -> tuple[str, int]:
    """`text` with nothing unsafe left, and how many tags and attributes went."""
    return _clean(_cleaners()[0], text)


def sanitize_svg(text: str) -> tuple[str, int]:
    """An SVG document sanitised as HTML is, with SVG's shapes and styles allowed."""
    return _clean(_cleaners()[1], text)


_EMPTY_IMG = re.compile(r"<img(?![^>]*\ssrc=)[^>]*>")  # its source refused: a broken icon


def _clean(cleaner: Callable[[str], str], text: str) -> tuple[str, int]:
    try:
        cleaned = _EMPTY_IMG.sub("", cleaner(text))
    except Exception:  # nh3 refusing input is a display not shown
        return "", _count(text)
    return cleaned, max(0, _count(text) - _count(cleaned))


class _Counter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.count = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "style":
            self.count += 1 + sum(1 for name, _ in attrs if name not in _UNCOUNTED)


# What nh3 adds itself; a <style> block goes quietly (pandas writes one for every frame).
_UNCOUNTED = ("rel", "xmlns", "xmlns:xlink")


def _count(text: str) -> int:
    """Tags and attributes in `text`, <style> blocks and what nh3 adds not counted."""
    counter = _Counter()
    counter.feed(text)
    counter.close()
    return counter.count


def _html(value: Any) -> tuple[str | None, str]:
    if not isinstance(value, str):
        return None, "not text"
    cleaned, removed = sanitize_html(value)
    if value.strip() and not cleaned.strip():
        return None, "nothing in it may be shown"
    return cleaned, _removed(removed)


def _svg(value: Any) -> tuple[str | None, str]:
    if not isinstance(value, str):
        return None, "not text"
    cleaned, removed = sanitize_svg(value)
    if not cleaned.lstrip().startswith("<svg"):
        return None, "not an SVG picture that may be shown"
    return cleaned.strip(), _removed(removed)


@functools.lru_cache(maxsize=1)
def _markdown() -> Callable[[str], str]:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render


def _markdown_html(value: Any) -> tuple[str | None, str]:
    if not isinstance(value, str):
        return None, "not text"
    return _html(_markdown()(value))


def _removed(count: int) -> str:
    if not count:
        return ""
    return f"{count} unsafe part(s) removed (scripts, event handlers, links or tags not allowed)"


_CHECKS: dict[str, Callable[[Any], tuple[Any, str]]] = {
    "text/plain": _text,
    "text/html": _html,
    "text/markdown": _markdown_html,
    "image/svg+xml": _svg,
    "image/png": _image("png"),
    "image/jpeg": _image("jpeg"),
    "application/json": _json,
}
