"""HTML from a customer's email, made safe to show: `nh3` (the Ammonia sanitizer) keeps a
conservative set of tags, attributes and CSS properties; scripts, event handlers, `hx-*`
attributes, forms, frames, `<style>` and anything that reaches out (`url()` in CSS, remote
images until the agent asks) never survive. The inbox serves the result in a sandboxed frame
under a strict Content-Security-Policy: two locks, either one enough."""

import html as html_lib
import re

import nh3

TAGS = {
    "a", "abbr", "address", "b", "bdi", "bdo", "blockquote", "br", "caption", "center", "cite", "code", "col",
    "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
    "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong",
    "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var",
}
ATTRIBUTES = {
    "*": {"align", "dir", "lang", "style", "title", "width", "height", "valign", "bgcolor", "color"},
    "a": {"href"},
    "img": {"src", "alt", "border"},
    "table": {"border", "cellpadding", "cellspacing"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "font": {"face", "size"},
    "ol": {"start", "type"},
}
# Layout and type only: nothing positions itself over the page, and nothing loads (no
# background images, no fonts, no url()).
STYLE_PROPERTIES = {
    "color", "background-color", "font-family", "font-size", "font-style", "font-weight", "line-height",
    "text-align", "text-decoration", "text-transform", "vertical-align", "white-space", "word-break",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left", "padding", "padding-top",
    "padding-right", "padding-bottom", "padding-left", "border", "border-top", "border-right", "border-bottom",
    "border-left", "border-collapse", "border-color", "border-style", "border-width", "border-radius", "width",
    "max-width", "min-width", "height", "display", "list-style-type", "text-indent", "letter-spacing",
}
URL_SCHEMES = {"http", "https", "mailto", "cid", "tel"}
REMOTE = re.compile(r"^\s*(https?:)?//", re.I)
BLOCKED_IMAGE = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="
DROPPED = {"script", "style", "title", "head", "noscript", "template", "iframe", "object", "embed", "svg", "math"}


def sanitize(html: str, *, images: dict[str, str] | None = None, remote_images: bool = False) -> str:
    """Safe HTML. `images` maps a `cid:` reference to the URL we serve that inline image at (an
    unknown one is dropped; None keeps the references, for storing); remote images are kept only
    when `remote_images`."""

    def attribute(element: str, name: str, value: str) -> str | None:
        if element == "img" and name == "src":
            if value.lower().startswith("cid:"):
                return value if images is None else images.get(value[4:].strip("<>"))
            if REMOTE.match(value):
                return value if remote_images else BLOCKED_IMAGE
            return value if value.startswith("data:image/") else None
        return value

    return nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags=DROPPED,
        attributes=ATTRIBUTES,
        attribute_filter=attribute,
        url_schemes=URL_SCHEMES | {"data"},
        link_rel="noopener noreferrer nofollow",
        # Links open outside the frame (the sandbox lets only popups escape it).
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
        filter_style_properties=STYLE_PROPERTIES,
    )


def has_remote_images(html: str) -> bool:
    return bool(re.search(r"<img\b[^>]*\bsrc\s*=\s*[\"']?\s*(https?:)?//", html, re.I))


BLOCK_ENDS = re.compile(r"<\s*(br|/p|/div|/tr|/h[1-6]|/li|/blockquote|/table)\b[^>]*>", re.I)


def text_of(html: str) -> str:
    """The words of an HTML-only email, for the thread and the list's preview."""
    text = nh3.clean(BLOCK_ENDS.sub("\n", html), tags=set(), clean_content_tags=DROPPED)
    lines = [" ".join(line.split()) for line in html_lib.unescape(text).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
