"""Images: byte parity with the official client for good input, clear errors for bad input."""

import base64
from pathlib import Path
from typing import Any

import ollama
import pytest

from ollama_async._errors import RequestError
from ollama_async._images import Image, encode_image, encode_images, sniff_image

from ._official import official_body

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 "
BMP = b"BM" + (70).to_bytes(4, "little") + b"\x00" * 8 + (40).to_bytes(4, "little") + b"\x00" * 36
TIFF = b"II*\x00\x08\x00\x00\x00"
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00"
AVIF = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00"


def official_images(images: list[Any]) -> list[str]:
    """The "images" the official AsyncClient sends for a generate call."""
    result: list[str] = official_body(lambda c: c.generate("m", "describe", images=images))["images"]
    return result


@pytest.mark.parametrize(
    ("data", "kind"),
    [(PNG, "png"), (JPEG, "jpeg"), (GIF, "gif"), (WEBP, "webp"), (BMP, "bmp"), (TIFF, "tiff"), (HEIC, "heic"),
     (AVIF, "avif")],
)
def test_sniff_and_bytes_encode(data: bytes, kind: str) -> None:
    assert sniff_image(data) == kind
    assert encode_image(data) == base64.b64encode(data).decode()


def test_parity_with_official_for_bytes_path_and_base64(tmp_path: Path) -> None:
    png_file = tmp_path / "pic.png"
    png_file.write_bytes(PNG)
    b64 = base64.b64encode(JPEG).decode()
    inputs: list[Any] = [PNG, png_file, str(png_file), b64, ollama.Image(value=GIF)]
    ours = encode_images([*inputs[:4], Image(value=GIF)])
    assert ours == official_images(inputs)
    assert ours[3] is b64  # a valid base64 string is sent exactly as given


def test_image_model_serialises_like_the_official_one(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(JPEG)
    for value in (PNG, path, str(path), base64.b64encode(GIF).decode()):
        assert Image(value=value).model_dump() == ollama.Image(value=value).model_dump()
    assert encode_image(Image(value=PNG)) == base64.b64encode(PNG).decode()


def test_bytearray_memoryview_and_data_url() -> None:
    expected = base64.b64encode(PNG).decode()
    assert encode_image(bytearray(PNG)) == expected
    assert encode_image(memoryview(PNG)) == expected
    assert encode_image(f"data:image/png;base64,{expected}") == expected
    assert encode_image(f"DATA:image/png;charset=x;base64,{expected}") == expected


def test_base64_with_whitespace_is_cleaned() -> None:
    expected = base64.b64encode(PNG).decode()
    wrapped = "\n".join(expected[i:i + 8] for i in range(0, len(expected), 8)) + "\n"
    assert encode_image(wrapped) == expected


def test_home_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "x.gif").write_bytes(GIF)
    assert encode_image("~/x.gif") == base64.b64encode(GIF).decode()


def test_long_base64_is_not_tried_as_a_path() -> None:
    big = PNG + b"\x00" * 3_000_000
    text = base64.b64encode(big).decode()
    assert encode_image(text) is text


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (b"", "empty image"),
        (b"hello world", r"not an image: data starts with b'hello world'"),
        (b"%PDF-1.7\n", "a PDF document"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00", "brand 'isom'"),
        (base64.b64encode(b"hello").decode(), r"base64 data starts with b'hello'"),
        (base64.b64encode(b"<svg xmlns=").decode(), "SVG"),
        ("not base64 at all!", "not valid base64"),
        ("aGVsbG8", "not valid base64"),  # bad padding: strict
        ("", "empty image string"),
        ("missing/picture.png", "file missing/picture.png does not exist"),
        ("photo.JPEG", "does not exist"),
        ("https://example.com/cat.png", "URLs are not fetched"),
        ("data:image/svg+xml,<svg/>", "must be base64"),
        ("data:image/png;base64,AAAA", "not an image"),
        (12, "not int"),
        (None, "not NoneType"),
        (Path("/nonexistent/dir/img.png"), "does not exist"),
    ],
)
def test_bad_images_are_request_errors(value: Any, match: str) -> None:
    with pytest.raises(RequestError, match=match) as info:
        encode_image(value, field="messages[0].images[1]")
    assert info.value.field == "messages[0].images[1]"


def test_directory_and_non_image_file(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="is a directory"):
        encode_image(tmp_path)
    text_file = tmp_path / "notes.png"
    text_file.write_bytes(b"just text")
    with pytest.raises(RequestError, match=r"not an image: file .*notes\.png starts with b'just text'"):
        encode_image(str(text_file))


def test_encode_images_names_the_index_and_handles_empty() -> None:
    assert encode_images(None) is None
    assert encode_images([]) is None  # the official client sends no "images" key then
    assert encode_images((PNG, GIF)) == [base64.b64encode(PNG).decode(), base64.b64encode(GIF).decode()]
    with pytest.raises(RequestError) as info:
        encode_images([PNG, b"nope"], field="messages[3].images")
    assert info.value.field == "messages[3].images[1]"
    assert "not an image" in str(info.value)


@pytest.mark.parametrize("single", [PNG, "aGVsbG8=", Path("x.png"), Image(value=PNG)])
def test_encode_images_refuses_a_single_image(single: Any) -> None:
    with pytest.raises(RequestError, match="wrap it in a list") as info:
        encode_images(single)
    assert info.value.field == "images"


def test_official_accepts_what_we_refuse() -> None:
    # Documented difference: the official client sends non-image bytes; we refuse them up front.
    assert official_images([b"hello"]) == [base64.b64encode(b"hello").decode()]
    with pytest.raises(RequestError):
        encode_images([b"hello"])


def test_image_model_serialisation_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not an image"):
        Image(value=b"hello").model_dump()
