"""The one decoder: raster formats, DICOM display pipeline, and every kind of bad file."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecxr.core.data.decode import decode_bytes, decode_file
from edgecxr.core.errors import DecodeError
from tests.dicom_write import write_dx_dicom


@pytest.fixture(scope="module")
def gray(mini_test_images) -> np.ndarray:
    """A real chest X-ray, as 8-bit grayscale."""
    return np.asarray(Image.open(mini_test_images[0]).convert("L"))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_kermany_rgb_jpeg_collapses_to_gray(mini_test_images):
    decoded = decode_file(mini_test_images[0])
    assert decoded.source_format == "jpeg"
    assert decoded.pixels.ndim == 2 and decoded.pixels.dtype == np.float32
    assert decoded.pixels.min() >= 0.0 and decoded.pixels.max() <= 1.0


def test_8_and_16_bit_png_agree(gray):
    eight = decode_bytes(_png(Image.fromarray(gray, "L")), "a.png").pixels
    sixteen_arr = (gray.astype(np.uint16) * 257)  # exact 8 -> 16 bit scaling
    sixteen = decode_bytes(_png(Image.fromarray(sixteen_arr)), "b.png").pixels
    np.testing.assert_allclose(eight, sixteen, atol=1e-6)
    np.testing.assert_allclose(eight, gray / 255.0, atol=1e-6)


def test_palette_and_true_colour(gray):
    pal = Image.fromarray(gray, "L").convert("P")
    decoded = decode_bytes(_png(pal), "p.png").pixels
    assert decoded.shape == gray.shape  # gray palette collapses to one channel
    colour = np.stack([gray, gray // 2, 255 - gray], axis=-1).astype(np.uint8)
    decoded = decode_bytes(_png(Image.fromarray(colour, "RGB")), "c.png").pixels
    assert decoded.shape == (*gray.shape, 3)
    np.testing.assert_allclose(decoded[..., 1], colour[..., 1] / 255.0, atol=1e-6)


@pytest.mark.parametrize(("data", "code"), [
    (b"", "empty"),
    (b"hello, I am a text file\n" * 10, "not_an_image"),
    (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), "not_an_image"),
])
def test_bad_bytes(data, code):
    with pytest.raises(DecodeError) as info:
        decode_bytes(data, "x.png")
    assert info.value.code == code
    assert "x.png" in str(info.value)


def test_truncated_jpeg(mini_test_images):
    data = mini_test_images[0].read_bytes()
    with pytest.raises(DecodeError) as info:
        decode_bytes(data[: len(data) // 2], "cut.jpeg")
    assert info.value.code == "corrupt"


def test_pixel_limit(gray):
    with pytest.raises(DecodeError) as info:
        decode_bytes(_png(Image.fromarray(gray, "L")), "big.png", max_pixels=1000)
    assert info.value.code == "too_large"


def test_dicom_monochrome2_and_1_look_the_same(gray, tmp_path):
    unit = gray / 255.0
    m2 = decode_file(write_dx_dicom(unit, tmp_path / "m2.dcm")).pixels
    m1 = decode_file(write_dx_dicom(unit, tmp_path / "m1.dcm", photometric="MONOCHROME1")).pixels
    np.testing.assert_allclose(m1, m2, atol=1e-6)
    # no window: full range shown, so the image's own min/max map to 0 and 1
    assert m2.min() == 0.0 and m2.max() == 1.0


def test_dicom_modality_lut_and_window(gray, tmp_path):
    unit = gray / 255.0
    # stored 12-bit values, rescaled to -1024..3071, window centred on the middle half
    path = write_dx_dicom(unit, tmp_path / "w.dcm", slope=1.0, intercept=-1024.0,
                          window=(1024.0, 2048.0))
    decoded = decode_file(path)
    values = np.round(unit * 4095) - 1024
    expected = np.clip((values - (1024 - 0.5)) / (2048 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-5)


def test_dicom_identifiers_but_no_patient_data(gray, tmp_path):
    decoded = decode_file(write_dx_dicom(gray / 255.0, tmp_path / "id.dcm"))
    assert decoded.meta["AccessionNumber"] == "ACC0001"
    assert decoded.meta["Modality"] == "DX"
    assert {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"} <= set(decoded.meta)
    text = repr(decoded.meta)
    assert "Doe" not in text and "PID-SECRET" not in text and "20200101" not in text


def test_compressed_dicom_decodes_like_uncompressed(gray, tmp_path):
    plain = decode_file(write_dx_dicom(gray / 255.0, tmp_path / "p.dcm")).pixels
    j2k = decode_file(write_dx_dicom(gray / 255.0, tmp_path / "j.dcm", compress="jpeg2000"))
    np.testing.assert_allclose(plain, j2k.pixels, atol=1e-6)
    baseline = decode_file(write_dx_dicom(gray / 255.0, tmp_path / "b.dcm",
                                          compress="jpeg-baseline")).pixels
    assert np.abs(baseline - plain).mean() < 0.01  # lossy, but the same picture


def test_pydicom_test_files_ct_refused_by_modality_sr_without_pixels():
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm")
    assert decode_file(ct).pixels.shape == (128, 128)  # decodable in training ...
    with pytest.raises(DecodeError) as info:  # ... but not a projection radiograph
        decode_file(ct, modalities=("CR", "DX", "DR"))
    assert info.value.code == "modality_refused"
    with pytest.raises(DecodeError) as info:
        decode_file(get_testdata_file("rtplan.dcm"))
    assert info.value.code == "no_pixel_data"
    with pytest.raises(DecodeError) as info:
        decode_file(get_testdata_file("MR_truncated.dcm"))
    assert info.value.code in ("undecodable_pixels", "not_dicom")


def test_text_named_dcm_is_refused(tmp_path):
    path = tmp_path / "fake.dcm"
    path.write_text("not dicom at all")
    with pytest.raises(DecodeError) as info:
        decode_file(path)
    assert info.value.code == "not_dicom"


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_with_the_same_model_input(tmp_path):
    """Pillow's draft mode: a 4,096-pixel JPEG decodes to 1,024 on its long side (a sixteenth of the
    memory), and the model input differs from a full decode by a fraction of a grey level."""
    from PIL import Image

    from edgecxr.core.data.decode import DEFAULT_MAX_PIXELS, JPEG_DRAFT_SIDE, decode_file, set_pillow_limit
    from edgecxr.core.preprocess import PreprocessSpec

    set_pillow_limit(DEFAULT_MAX_PIXELS)  # Pillow's limit is process-wide: an earlier test may have lowered it

    sample = sorted((Path(__file__).parents[1] / "edgecxr" / "samples" / "chest-xrays").glob("*.jpeg"))[0]
    big = Image.open(sample).convert("L").resize((4096, 3072), Image.BILINEAR)
    big.save(tmp_path / "big.jpg", quality=92)
    big.save(tmp_path / "big.png")
    drafted, whole = decode_file(tmp_path / "big.jpg").pixels, decode_file(tmp_path / "big.png").pixels
    assert drafted.shape == (768, JPEG_DRAFT_SIDE) and whole.shape == (3072, 4096)
    spec = PreprocessSpec(height=128, width=128)
    difference = np.abs(spec(drafted) - spec(whole)).max() * 0.229  # back to [0, 1] grey levels
    assert difference < 4 / 255
    small = Image.open(sample).convert("L").resize((2000, 1500))
    small.save(tmp_path / "small.jpg", quality=92)
    assert decode_file(tmp_path / "small.jpg").pixels.shape == (1500, 2000)  # under twice the side: whole
