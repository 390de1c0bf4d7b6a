"""One preprocessing definition: the training tensor is the runtime's numpy output."""

import numpy as np

from edgecxr.core.data.decode import decode_file
from edgecxr.core.preprocess import PreprocessSpec
from tests.tools import require_module


def test_spec_round_trips_through_json(tmp_path):
    spec = PreprocessSpec(height=256, width=256, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    spec.save(tmp_path)
    assert PreprocessSpec.load(tmp_path) == spec


def test_gray_is_replicated_and_normalised(mini_test_images):
    spec = PreprocessSpec(height=256, width=256)
    x = spec(decode_file(mini_test_images[0]).pixels)
    assert x.shape == (3, 256, 256) and x.dtype == np.float32
    # undo the normalisation: the three channels are the same grayscale picture
    mean = np.array(spec.mean, dtype=np.float32)[:, None, None]
    std = np.array(spec.std, dtype=np.float32)[:, None, None]
    unit = x * std + mean
    np.testing.assert_allclose(unit[0], unit[1], atol=1e-5)
    np.testing.assert_allclose(unit[0], unit[2], atol=1e-5)
    assert unit.min() >= -1e-5 and unit.max() <= 1 + 1e-5


def test_matches_an_independent_pil_pipeline(mini_test_images):
    """Resize with Pillow on floats, scale, normalise: the seed's eval transform, written out."""
    from PIL import Image

    spec = PreprocessSpec(height=96, width=80)
    for path in mini_test_images[:5]:
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        planes = [np.asarray(Image.fromarray(rgb[..., c], "F").resize((80, 96), Image.BILINEAR))
                  for c in range(3)]
        expected = (np.stack(planes) - np.array(spec.mean)[:, None, None]) / np.array(
            spec.std)[:, None, None]
        np.testing.assert_allclose(spec(decode_file(path).pixels), expected, atol=1e-5)


def test_training_eval_tensor_equals_runtime_output(mini_test_images):
    torch = require_module("torch")
    from edgecxr.core.data.folders import scan_split
    from edgecxr.training.dataset import FolderDataset

    split = scan_split(mini_test_images[0].parent.parent)
    assert len(split.samples) == 20
    spec = PreprocessSpec(height=256, width=256)
    dataset = FolderDataset(split.samples, spec)  # the evaluation dataset training uses
    loader = torch.utils.data.DataLoader(dataset, batch_size=8)
    tensors = torch.cat([x for x, _ in loader]).numpy()
    runtime = np.stack([spec(decode_file(s.path).pixels) for s in split.samples])
    assert tensors.shape == runtime.shape == (20, 3, 256, 256)
    assert np.abs(tensors - runtime).max() <= 1e-5


def test_augmentation_is_seeded_and_changes_the_image(mini_test_images):
    from edgecxr.training.augment import augment
    from edgecxr.training.config import Augmentation

    spec = PreprocessSpec(height=64, width=64)
    pixels = decode_file(mini_test_images[0]).pixels
    cfg = Augmentation(crop_scale=(0.6, 1.0), brightness=0.1, contrast=0.2)
    a = augment(pixels, spec, cfg, np.random.default_rng([1, 2, 3]))
    b = augment(pixels, spec, cfg, np.random.default_rng([1, 2, 3]))
    c = augment(pixels, spec, cfg, np.random.default_rng([1, 2, 4]))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, spec(pixels))
    assert a.shape == (3, 64, 64)
