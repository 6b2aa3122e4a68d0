"""Destination templates and deep links: macro encoding, allowed hosts, open-redirect payloads."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.macros import MACROS, Template, is_safe_location, normalize_hosts, safe_deep_link

BASE = "https://shop.example.com/land?cid={click_id}&s1={sub1}"
ALLOWED = normalize_hosts(["shop.example.com", ".brand.example", "xn--bcher-kva.example", "strasse.example"])


def test_macro_names() -> None:
    assert MACROS == ("click_id", "sub1", "sub2", "sub3", "sub4", "sub5", "source", "partner_id", "offer_id", "link_id")


@pytest.mark.parametrize(
    ("sub1", "encoded"),
    [
        ("abc", "abc"),
        ("A-Z_a.z~0", "A-Z_a.z~0"),
        ("", ""),
        ("a b", "a%20b"),
        ("a&b=c", "a%26b%3Dc"),
        ("x#frag", "x%23frag"),
        ("/path/..", "%2Fpath%2F.."),
        ("?q", "%3Fq"),
        ("100%", "100%25"),
        ("%0d%0a", "%250d%250a"),
        ("a+b", "a%2Bb"),
        ("{sub2}", "%7Bsub2%7D"),  # a value is never expanded again
        ("{click_id}", "%7Bclick_id%7D"),
        ("é", "%C3%A9"),
        ("日本", "%E6%97%A5%E6%9C%AC"),
        ("\r\nSet-Cookie: x=1", "%0D%0ASet-Cookie%3A%20x%3D1"),
        ("\t\x00\x7f", "%09%00%7F"),
        ("back\\slash", "back%5Cslash"),
        ("user@evil.example", "user%40evil.example"),
        ("'\"<>", "%27%22%3C%3E"),
        ("\ud800", "%3F"),  # a lone surrogate cannot be UTF-8: replaced, never an exception
    ],
)
def test_macro_values_are_percent_encoded(sub1: str, encoded: str) -> None:
    rendered = Template(BASE).render({"click_id": "cid1", "sub1": sub1})
    assert rendered == f"https://shop.example.com/land?cid=cid1&s1={encoded}"
    assert is_safe_location(rendered)


@pytest.mark.parametrize(
    ("template", "values", "rendered"),
    [
        (BASE, {}, "https://shop.example.com/land?cid=&s1="),
        (BASE, {"click_id": "c"}, "https://shop.example.com/land?cid=c&s1="),
        (BASE, {"sub2": "x"}, "https://shop.example.com/land?cid=&s1="),
        ("https://shop.example.com/x", {"click_id": "c"}, "https://shop.example.com/x"),
        ("https://shop.example.com", {}, "https://shop.example.com"),
        ("https://a.example/{click_id}/{click_id}?c={click_id}", {"click_id": "c"}, "https://a.example/c/c?c=c"),
        ("https://a.example/?s={sub1}{sub2}{sub3}", {"sub1": "1", "sub3": "3"}, "https://a.example/?s=13"),
        ("https://a.example/{sub1}", {"sub1": "x y"}, "https://a.example/x%20y"),
        ("https://a.example/#{sub1}", {"sub1": "#"}, "https://a.example/#%23"),
        ("https://a.example/?{sub1}={sub2}", {"sub1": "k", "sub2": "v"}, "https://a.example/?k=v"),
        ("https://a.example/{foo}?x={sub1}", {"sub1": "1", "foo": "no"}, "https://a.example/{foo}?x=1"),
        ("https://a.example/{foo}", {"foo": "no"}, "https://a.example/{foo}"),
        ("https://a.example/{CLICK_ID}", {"click_id": "c"}, "https://a.example/{CLICK_ID}"),
        ("https://a.example/{Click_Id}{click-id}", {"click_id": "c"}, "https://a.example/{Click_Id}{click-id}"),
        ("https://a.example/{sub6}{}{{sub1}}", {"sub1": "1"}, "https://a.example/{sub6}{}{1}"),
        ("https://a.example/{sub1", {"sub1": "1"}, "https://a.example/{sub1"),
        (
            "https://a.example/?p={partner_id}&o={offer_id}&l={link_id}&src={source}&s5={sub5}",
            {"partner_id": "7", "offer_id": "8", "link_id": "9", "source": "mail list", "sub5": "z"},
            "https://a.example/?p=7&o=8&l=9&src=mail%20list&s5=z",
        ),
        ("https://a.example/%41?x={sub1}", {"sub1": "%41"}, "https://a.example/%41?x=%2541"),
        ("https://bücher.example/ö?x={sub1}", {"sub1": "ö"}, "https://xn--bcher-kva.example/%C3%B6?x=%C3%B6"),
    ],
)
def test_render(template: str, values: dict[str, str], rendered: str) -> None:
    assert Template(template).render(values) == rendered


@pytest.mark.parametrize(
    ("template", "macros"),
    [(BASE, {"click_id", "sub1"}), ("https://a.example/", set()), ("https://a.example/{foo}{sub3}", {"sub3"})],
)
def test_template_names_its_macros(template: str, macros: set[str]) -> None:
    assert Template(template).macros == macros


@pytest.mark.parametrize(
    "template",
    [
        "",
        "shop.example.com/land",
        "/land?cid={click_id}",
        "//shop.example.com/land",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,x",
        "ftp://shop.example.com/",
        "mailto:x@shop.example.com",
        "http:shop.example.com",
        "https:/shop.example.com",
        "https:///shop.example.com",
        "https://",
        " https://shop.example.com/",
        "https://shop.example.com/ ",
        "https://shop.example.com/a b",
        "https://shop.example.com/\r\nX: y",
        "https://shop.example.com\\@evil.example",
        "https://user:pw@shop.example.com/",
        "https://{sub1}.example.com/",
        "https://shop.example.com{sub1}",
        "https://shop.example.com:{sub1}/",
        "https://{sub1}@shop.example.com/",
        "{click_id}",
        "https://shop.example.com:99999/",
        "https://[::1]/",
        "https://shop.example.com/" + "a" * 2048,
    ],
)
def test_unsafe_templates_raise(template: str) -> None:
    with pytest.raises(ValueError):
        Template(template)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://shop.example.com/p/1?x=y#z", "same"),
        ("http://shop.example.com", "same"),
        ("https://shop.example.com:8443/p", "same"),
        ("https://shop.example.com:443", "same"),
        ("HTTPS://shop.example.com/", "same"),
        ("https://SHOP.Example.COM/p", "same"),
        ("https://shop.example.com./p", "same"),
        ("https://shop.example.com/a%2F%2Fb?next=https://evil.example", "same"),  # the merchant's own page
        ("https://shop.example.com#@evil.example", "same"),  # a fragment: the browser stays on shop
        ("https://shop.example.com/%0d%0aX:%20y", "same"),  # encoded in a path, not a header injection
        ("https://brand.example/", "same"),
        ("https://www.brand.example/x", "same"),
        ("https://a.b.brand.example:8080/x", "same"),
        ("https://WWW.Brand.Example./", "same"),
        ("https://xn--bcher-kva.example/", "same"),
        ("https://bücher.example/ö?q=ü#ä", "https://xn--bcher-kva.example/%C3%B6?q=%C3%BC#%C3%A4"),
        ("https://BÜCHER.example/", "https://xn--bcher-kva.example/"),
        ("https://shop.example.com/" + "a" * (2048 - 25), "same"),
    ],
)
def test_deep_link_allowed(url: str, expected: str) -> None:
    result = safe_deep_link(url, ALLOWED)
    assert result == (url if expected == "same" else expected)
    assert is_safe_location(result)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "/",
        "/p/1",
        "//evil.example",
        "\\\\evil.example",
        "/\\evil.example",
        "\\/evil.example",
        "%2F%2Fevil.example",
        "%2f%2fevil.example",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "javascript://shop.example.com/%0aalert(1)",
        "data:text/html,x",
        "vbscript:msgbox(1)",
        "ftp://shop.example.com/",
        "httpx://shop.example.com/",
        "https://evil.example",
        "https://evil.example/shop.example.com",
        "https://evil.example?shop.example.com",
        "https://evil.example#shop.example.com",
        "https://shop.example.com.evil.example",
        "https://shop.example.com.evil.example/",
        "https://brand.example.evil.example/",
        "https://evilbrand.example/",
        "https://www.shop.example.com/",  # an exact entry covers no subdomain
        "https://example.com/",
        "https://shop.example.com@evil.example",
        "https://shop.example.com:443@evil.example",
        "https://user:pass@shop.example.com/",
        "https://@shop.example.com/",
        "https://evil.example\\@shop.example.com",
        "https://evil.example\\.shop.example.com",
        "https://shop.example.com%0d%0aSet-Cookie:x=1",
        "https://shop.example.com\r\nX: y",
        "https://shop.example.com/\r\nX: y",
        "https://shop.example.com/\nX",
        "https://shop.example.com/\x00",
        "https://shop.example.com/\x7f",
        "https://shop.example.com/a b",
        "http:evil.example",
        "https:evil.example",
        "https:/evil.example",
        "https:///evil.example",
        "https:\\\\evil.example",
        "https:/\\evil.example",
        " https://shop.example.com/",
        "https://shop.example.com/ ",
        "\thttps://shop.example.com/",
        "https://shop.example.com/\t",
        "\nhttps://shop.example.com/",
        "\x00https://shop.example.com/",
        "https://shop%2eexample%2ecom/",
        "https://shop.example.com%2f@evil.example",
        "https://evil.example\uff0fshop.example.com",  # fullwidth solidus
        "https://evil.example%2fshop.example.com",
        "https://shop.ex\u0430mple.com/",  # Cyrillic a
        "https://\u0455hop.example.com/",  # Cyrillic dze, looks like s
        "https://shop.example.c\u03bfm/",  # Greek omicron
        "https://xn--shop-cve.example.com/",
        "https://bucher.example/",
        "https://straße.example/",  # IDNA 2003 folds it to strasse.example; browsers visit xn--strae-oqa.example
        "https://\uff53\uff48\uff4f\uff50.example.com/",  # fullwidth: folded by IDNA, refused, not guessed
        "https://shop。example。com/",  # ideographic full stops
        "https://shop.example.com../",
        "https://.shop.example.com/",
        "https://shop..example.com/",
        "https://shop.example.com:99999/",
        "https://shop.example.com:abc/",
        "https://shop.example.com:+443/",
        "https://shop.example.com:/",
        "https://[::1]/",
        "https://127.0.0.1/",
        "https://shop.example.com\ud800/",
        "https://shop.example.com/" + "a" * (2048 - 24),
    ],
)
def test_deep_link_refused(url: str | None) -> None:
    assert safe_deep_link(url, ALLOWED) is None


@pytest.mark.parametrize(
    ("entries", "url", "ok"),
    [
        (["Shop.Example.COM."], "https://shop.example.com/", True),
        ([".Example.com"], "https://example.com/", True),
        ([".example.com"], "https://deep.sub.example.com/", True),
        ([".bücher.example"], "https://www.bücher.example/", True),
        ([], "https://shop.example.com/", False),
        ([".example.com"], "https://notexample.com/", False),
    ],
)
def test_normalize_hosts(entries: list[str], url: str, ok: bool) -> None:
    assert (safe_deep_link(url, normalize_hosts(entries)) is not None) is ok


@pytest.mark.parametrize("entry", ["", ".", "a b.example", "evil.example/", "user@evil.example", "straße.example"])
def test_normalize_hosts_refuses(entry: str) -> None:
    with pytest.raises(ValueError):
        normalize_hosts([entry])


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://a.example/x?y=%20#z", True),
        ("http://a.example:8080", True),
        ("https://a.example/{foo}", True),
        ("https://xn--bcher-kva.example/", True),
        ("https://a.example/" + "a" * 8000, True),
        ("https://a.example/" + "a" * 8200, False),
        ("", False),
        ("/relative", False),
        ("//a.example/", False),
        ("javascript:alert(1)", False),
        ("https:/a.example", False),
        ("https://", False),
        ("https://a.example/\r\nX: y", False),
        ("https://a.example/\\x", False),
        ("https://a.example/ x", False),
        ("https://u@a.example/", False),
        ("https://a.example/é", False),  # a Location header is ASCII
        ("https://bücher.example/", False),
        (None, False),
    ],
)
def test_is_safe_location(url: str, ok: bool) -> None:
    assert is_safe_location(url) is ok


@settings(max_examples=300, database=None)
@given(st.dictionaries(st.sampled_from(MACROS), st.text(max_size=40)))
def test_rendered_templates_are_safe_and_decode_back(values: dict[str, str]) -> None:
    template = Template("https://shop.example.com/land?" + "&".join(f"{name}={{{name}}}" for name in MACROS))
    rendered = template.render(values)
    assert is_safe_location(rendered)
    assert urlsplit(rendered).hostname == "shop.example.com"
    query = parse_qs(urlsplit(rendered).query, keep_blank_values=True, errors="surrogatepass")
    for name in MACROS:
        value = values.get(name, "")
        if value.encode("utf-8", "replace") == value.encode("utf-8", "surrogatepass"):
            assert query[name] == [value]


PIECES = [*"/\\@:.?#%[]{} \t\r\n\u017f\u3002", "https://", "http:", "shop.example.com", "evil.example", "%2F", "xn--"]


_FUZZ = st.lists(st.sampled_from(PIECES) | st.text(max_size=2), max_size=12).map("".join)


@settings(max_examples=1000, database=None)
@given(_FUZZ | st.tuples(st.sampled_from(["https://shop.example.com", "http://shop.example.com."]), _FUZZ).map("".join))
def test_accepted_deep_links_stay_on_the_allowed_host(url: str) -> None:
    result = safe_deep_link(url, frozenset({"shop.example.com"}))
    if result is not None:
        assert is_safe_location(result)
        assert urlsplit(result).hostname in ("shop.example.com", "shop.example.com.")
        assert "@" not in urlsplit(result).netloc
