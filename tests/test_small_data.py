"""Issue 29: a train split smaller than the calibration size is calibrated on the images there are, with one note;
an auto: search too small for its held-out items chooses its finish on what there is; no images is an error."""
import numpy as np
import pytest
import torch

from qmlp_nncf.data import DataError, calibration_subset
from qmlp_nncf.pipeline import quantize_to_dir
from qmlp_nncf.quantization.recipes.choice import RecipeChoice
from qmlp_nncf.sources import DataSource, ModelSource

TRAIN_IMAGES = 10


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """train/ with 10 and val/ with 4 random 28x28 gray PNGs, class folders 0..9 (the zoo models' labels)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for split, n in (("train", TRAIN_IMAGES), ("val", 4)):
        for i in range(n):
            folder = root / split / str(i % 10)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), mode="L").save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def resmlp():
    return ModelSource("qmlp_resmlp_fmnist").load()


def _quantize(loaded, root, out, recipe, calibration_size=0):
    notes = []
    run = quantize_to_dir(loaded, DataSource(str(root)), RecipeChoice.resolve(recipe), out, export=False,
                          calibration_size=calibration_size, log=notes.append)
    return run, [n for n in notes if n.startswith("note:")]


def test_recipe_calibrates_on_the_images_there_are(tiny_folder, resmlp, tmp_path, one_thread):
    """`qmlp quantize --recipe qmlp_w8a8` (300 calibration items) on a 10-image train split."""
    run, notes = _quantize(resmlp, tiny_folder, tmp_path / "q", "qmlp_w8a8")
    assert run.result.calibration_items == TRAIN_IMAGES and run.n == 4
    assert notes == ["note: qmlp_w8a8 calibrates on 300 items; the data holds 10: calibrating on those 10"]
    run, notes = _quantize(resmlp, tiny_folder, tmp_path / "q6", "qmlp_w8a8", calibration_size=6)
    assert run.result.calibration_items == 6 and notes == []  # enough images: no note


def test_auto_search_without_room_for_a_holdout(tiny_folder, resmlp, tmp_path, one_thread):
    """`--recipe auto:w8a8 --calibration-size 6`: 6 items for the search, the 4 others choose its finish."""
    run, notes = _quantize(resmlp, tiny_folder, tmp_path / "a", "auto:w8a8", calibration_size=6)
    assert run.result.calibration_items == 6 and run.result.auto is not None
    assert len(notes) == 1 and "the data holds 10: the finish is chosen on the 4 beyond the search's 6" in notes[0]


def test_auto_search_on_fewer_images_than_it_searches_on():
    from qmlp_nncf.quantization.algorithms.common import short_data_note

    note = short_data_note("auto:w4a4", 10, 300, auto=True)
    assert "searching on all 10 and choosing the finish on them too" in note


def test_no_images_is_the_one_error(tiny_folder, tmp_path):
    (tmp_path / "train" / "0").mkdir(parents=True)
    (tmp_path / "val" / "0").mkdir(parents=True)
    with pytest.raises(DataError, match="hold no images"):
        DataSource(str(tmp_path)).calibration(ModelSource("qmlp_resmlp_fmnist").load().model, 300)
    with pytest.raises(DataError, match="holds no images"):
        calibration_subset(torch.utils.data.TensorDataset(torch.zeros(0, 1, 28, 28)), 8)
    assert len(calibration_subset(DataSource(str(tiny_folder)).dataset("train", ModelSource("qmlp_resmlp_fmnist")
                                                                        .load().model), 300)) == TRAIN_IMAGES
