"""Non-natural datasets: MedMNIST and FSDD on the real files, and the spectrogram against a known signal."""
import numpy as np
import pytest
import torch

import univenc.data as D
from conftest import needs
from univenc.audio import SAMPLE_RATE, log_spectrogram, spectrogram_row


@pytest.mark.parametrize("freq", [250.0, 1000.0, 2000.0, 3500.0])
def test_a_pure_tone_lands_in_its_frequency_row(freq):
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE  # 0.5 s, then zero-padded to 1 s
    img = log_spectrogram(np.sin(2 * np.pi * freq * t), size=32)
    assert img.shape == (32, 32) and img.dtype == torch.uint8
    loudest_row = int(img[:, :12].float().mean(1).argmax())  # the columns where the tone sounds
    assert abs(loudest_row - spectrogram_row(freq)) <= 1
    assert img[:, -8:].max() == 0  # the silent padding is 80 dB below the tone: black


def test_spectrogram_rows_run_from_high_to_low_frequencies():
    assert spectrogram_row(3000) < spectrogram_row(1000) < spectrogram_row(100)


SPLITS = {"pneumoniamnist": (4708, 624, 2), "breastmnist": (546, 156, 2), "retinamnist": (1080, 400, 5),
          "fsdd": (2700, 300, 10)}


@pytest.mark.parametrize("name", list(SPLITS))
def test_real_non_natural_datasets(name):
    if not D.is_available(name):
        pytest.skip(f"{name} is not in the data root {D.data_root()}: run ../shared/data/unpack.py data/")
    n_train, n_test, n_classes = SPLITS[name]
    x, y = D.load_dataset(name, train=True)
    xt, yt = D.load_dataset(name, train=False)
    assert x.shape == (n_train, 3, 32, 32) and xt.shape == (n_test, 3, 32, 32) and x.dtype == torch.uint8
    assert set(y.tolist()) == set(range(n_classes)) and y.dtype == torch.int64
    assert tuple(torch.bincount(y).tolist()) == D.TRAIN_CLASS_COUNTS[name]  # what the zoo's step matching uses
    if name != "retinamnist":  # grayscale, repeated to 3 channels as MNIST is
        assert torch.equal(x[:, 0], x[:, 2])
    if name != "fsdd":  # 28 x 28 zero-padded to 32 x 32
        assert x[:, :, :2].max() == 0 and x[:, :, :, -2:].max() == 0
    else:  # recordings 0-4 of every speaker and digit are the test set: 5 x 6 speakers per digit
        assert torch.bincount(yt).tolist() == [30] * 10


@needs("cifar10")
def test_non_natural_tasks_exist():
    for name in SPLITS:
        assert D.Task(name).num_classes == SPLITS[name][2] and D.Task(name).input_size == (3, 32, 32)
