"""Scanner-shaped augmentation (gamma, blur, noise, JPEG) on a real test image: each effect does what it
says, draws nothing when off, and a recipe without them sees exactly the images it saw before."""

from __future__ import annotations

import numpy as np
import pytest

from edgecxr.core.data.decode import decode_file
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.training.augment import augment, gaussian_blur, jpeg_roundtrip, scanner_effects
from edgecxr.training.config import Augmentation, resolve

SPEC = PreprocessSpec(height=128, width=128)


@pytest.fixture(scope="module")
def image(mini):
    return SPEC.resize(decode_file(sorted((mini / "test" / "NORMAL").iterdir())[0]).pixels)


def _high_frequency(img):
    return float(np.abs(np.diff(img, axis=0)).mean() + np.abs(np.diff(img, axis=1)).mean())


def test_effects_off_draw_nothing(image):
    rng = np.random.default_rng(7)
    assert scanner_effects(image, Augmentation(), rng) is image
    assert rng.random() == np.random.default_rng(7).random()  # the stream was not touched


def test_gamma_moves_the_mid_greys_and_keeps_black_and_white(image):
    out = scanner_effects(image, Augmentation(gamma=0.25), np.random.default_rng(3))
    assert not np.allclose(out, image)
    exponent = np.log(out[image > 0.2].ravel()) / np.log(image[image > 0.2].ravel())
    assert 0.77 < float(np.median(exponent)) < 1.29 and np.ptp(exponent[np.isfinite(exponent)]) < 1e-3
    edges = scanner_effects(np.array([[0.0, 1.0]], np.float32), Augmentation(gamma=0.25), np.random.default_rng(3))
    np.testing.assert_allclose(edges, [[0.0, 1.0]])


def test_blur_removes_detail_and_keeps_the_mean(image):
    blurred = gaussian_blur(image, 1.5)
    assert blurred.shape == image.shape and blurred.dtype == np.float32
    assert _high_frequency(blurred) < 0.8 * _high_frequency(image)
    checks = (np.indices((32, 32)).sum(axis=0) % 2).astype(np.float32)  # the finest detail there is
    assert np.ptp(gaussian_blur(checks, 1.5)[4:-4, 4:-4]) < 0.01 < np.ptp(gaussian_blur(checks, 0.3))
    assert abs(float(blurred.mean()) - float(image.mean())) < 0.005
    flat = np.full((20, 20), 0.4, np.float32)
    np.testing.assert_allclose(gaussian_blur(flat, 2.0), flat, atol=1e-6)  # edges repeated: no dark border


def test_noise_and_jpeg_change_pixels_within_their_budget(image):
    noisy = scanner_effects(image, Augmentation(noise_p=1.0, noise_std=0.05), np.random.default_rng(1))
    assert 0 < float(np.std(noisy - image)) < 0.06 and noisy.min() >= 0 and noisy.max() <= 1
    low, high = jpeg_roundtrip(image, 10), jpeg_roundtrip(image, 95)
    assert low.shape == image.shape and high.shape == image.shape
    assert np.abs(high - image).mean() < np.abs(low - image).mean() < 0.05  # lower quality, larger error
    rgb = np.repeat(image[..., None], 3, axis=2)
    assert jpeg_roundtrip(rgb, 50).shape == rgb.shape


def test_a_recipe_without_them_sees_the_same_images_and_one_with_them_is_seeded(image, mini):
    pixels = decode_file(sorted((mini / "test" / "NORMAL").iterdir())[0]).pixels
    before = Augmentation(crop_scale=(0.7, 1.0), brightness=0.1, contrast=0.2)
    with_effects = Augmentation(crop_scale=(0.7, 1.0), brightness=0.1, contrast=0.2, gamma=0.25, blur_p=0.5,
                                noise_p=0.5, jpeg_p=0.5)
    a = augment(pixels, SPEC, before, np.random.default_rng([4, 5]))
    b = augment(pixels, SPEC, with_effects, np.random.default_rng([4, 5]))
    c = augment(pixels, SPEC, with_effects, np.random.default_rng([4, 5]))
    np.testing.assert_array_equal(b, c)
    assert not np.allclose(a, b)
    # the crop, flip, rotation and jitter draws come first, so the images before the effects agree
    assert a.shape == b.shape == (3, 128, 128)


def test_a_recipe_file_sets_them_and_bad_values_are_refused(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[train]\narch = "swinv2-nano-64"\n[train.augment]\ngamma = 0.25\njpeg_p = 0.3\n'
                      "jpeg_quality = [40, 80]\n")
    config = resolve("data", "out", config_file=recipe)
    assert (config.augment.gamma, config.augment.jpeg_quality) == (0.25, (40, 80))
    assert config.to_dict()["augment"]["jpeg_quality"] == [40, 80]
    recipe.write_text('[train]\narch = "swinv2-nano-64"\n[train.augment]\nnoise_p = 1.5\n')
    with pytest.raises(EdgecxrError, match="probabilities in"):
        resolve("data", "out", config_file=recipe)
    for wrong in ("[30]", "[30.5, 90]", "[90, 30]", "50"):
        recipe.write_text(f'[train]\narch = "swinv2-nano-64"\n[train.augment]\njpeg_quality = {wrong}\n')
        with pytest.raises(EdgecxrError, match="jpeg_quality is"):
            resolve("data", "out", config_file=recipe)


def test_every_shipped_recipe_resolves():
    """The recipes in train/recipes are read as `edgecxr train --config` reads them (a typo fails here)."""
    from pathlib import Path

    recipes = sorted((Path(__file__).parents[1] / "train" / "recipes").glob("*.toml"))
    assert len(recipes) >= 5
    for recipe in recipes:
        config = resolve("data", "out", config_file=recipe)
        assert config.epochs >= 1, recipe
