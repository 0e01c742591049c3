"""Spoken digits as images: the Free Spoken Digit Dataset (FSDD) as 32 x 32 log-magnitude spectrograms.

FSDD v1.0.10 (Jackson et al.): 3000 recordings, 8 kHz mono, 6 speakers x 10 digits x 50, files
``<digit>_<speaker>_<index>.wav``. Its usual split puts recordings 0-4 of every speaker and digit in the test set
(300 files) and the rest in the training set (2700).
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = ["log_spectrogram", "spectrogram_row", "load_fsdd", "download_fsdd", "FSDD_DIR", "FSDD_URL",
           "FSDD_SPEAKERS", "SAMPLE_RATE"]

FSDD_DIR = "free-spoken-digit-dataset/recordings"
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
SAMPLE_RATE = 8000
N_FFT, HOP, DURATION, DYNAMIC_RANGE_DB = 256, 64, 8000, 80.0
_NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav$")


def log_spectrogram(signal, size: int = 32) -> torch.Tensor:
    """A recording (samples,) at 8 kHz as a size x size uint8 log-magnitude spectrogram.

    The signal is cut or zero-padded to 1 s (8000 samples), so that every image spans the same time; its STFT
    uses a 256-sample (32 ms) Hann window with a 64-sample (8 ms) hop: 129 frequency bins (0-4 kHz, 31.25 Hz
    apart) x 126 frames. The magnitude in dB, relative to the recording's maximum and clipped to the top 80 dB,
    is mapped to 0-255 and resized (bilinear, antialiased) to size x size. Rows are frequencies, low at the
    bottom (row size - 1 is 0 Hz, see :func:`spectrogram_row`); columns are time."""
    x = torch.as_tensor(np.asarray(signal), dtype=torch.float32).flatten()
    x = torch.nn.functional.pad(x[:DURATION], (0, max(0, DURATION - len(x))))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, return_complex=True).abs()
    db = 20 * torch.log10(spec + 1e-10)
    db = (db - db.max()).clamp(min=-DYNAMIC_RANGE_DB) / DYNAMIC_RANGE_DB + 1  # 0 (80 dB below max) .. 1 (max)
    img = torch.nn.functional.interpolate(db[None, None], size=(size, size), mode="bilinear", align_corners=False,
                                          antialias=True)[0, 0]
    return (img.flip(0) * 255).round().clamp(0, 255).to(torch.uint8)


def spectrogram_row(freq_hz: float, size: int = 32) -> float:
    """The (fractional) row of :func:`log_spectrogram` where a tone of ``freq_hz`` lands."""
    fft_bin = freq_hz / SAMPLE_RATE * N_FFT  # bins 0..N_FFT/2 cover 0..4 kHz
    row_from_bottom = (fft_bin + 0.5) * size / (N_FFT // 2 + 1) - 0.5  # bilinear resize, align_corners=False
    return size - 1 - row_from_bottom


def _recordings(folder: Path):
    files = sorted(p for p in folder.glob("*.wav") if _NAME.search(p.name))
    if not files:
        raise FileNotFoundError(f"no FSDD recording (<digit>_<speaker>_<index>.wav) in {folder}")
    return files


def load_fsdd(root, train: bool = True, size: int = 32):
    """FSDD as images: uint8 (N, 3, size, size) log spectrograms (one channel repeated 3 times, as MNIST) and
    int64 digit labels (N,). ``root``: the data root, which holds ``free-spoken-digit-dataset/recordings``."""
    from scipy.io import wavfile

    images, labels = [], []
    for path in _recordings(Path(root) / FSDD_DIR):
        digit, _, index = _NAME.search(path.name).groups()
        if (int(index) >= 5) != train:  # recordings 0-4 of each speaker and digit are the test set
            continue
        rate, signal = wavfile.read(path)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{path} is sampled at {rate} Hz; FSDD recordings are 8 kHz")
        images.append(log_spectrogram(signal.astype(np.float32), size))
        labels.append(int(digit))
    x = torch.stack(images)[:, None].expand(-1, 3, -1, -1).contiguous()
    return x, torch.tensor(labels, dtype=torch.int64)


def download_fsdd(root):
    """Fetch FSDD v1.0.10 from its public repository's archive into ``root/free-spoken-digit-dataset``."""
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        download_and_extract_archive(FSDD_URL, download_root=tmp, extract_root=tmp)
        extracted = next(Path(tmp).glob("free-spoken-digit-dataset-*"))
        target = root / "free-spoken-digit-dataset"
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(str(extracted / "recordings"), str(target / "recordings"))
