"""Image classification sets read through ``torchvision.datasets`` from ``paths.data_dir``.

Nothing is downloaded unless ``download: true``; without it a missing folder is a one-line
ConfigError at build time (before any job starts). The images are converted once to a float
tensor (N, C, H, W) in [0, 1] (Dupont et al.: ToTensor only), optionally standardised per
channel with the training subset's mean and std. ``random_crop_padding`` > 0 gives every training
batch torchvision's RandomCrop(H×W, padding) (zero padding), drawn from the run's generator.
The validation split is the last ``n_val`` images of the training file, held out: the training
subset is drawn from the images before them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from node_lab.datasets.base import Data, Dataset, Split, Task
from node_lab.errors import ConfigError, check_choice, check_number

# name: (torchvision class, per-sample shape, the file/folder under root that shows the data is there)
IMAGE_SETS = {
    "mnist": ("MNIST", (1, 28, 28), "MNIST/raw/train-images-idx3-ubyte"),
    "fashion_mnist": ("FashionMNIST", (1, 28, 28), "FashionMNIST/raw/train-images-idx3-ubyte"),
    "cifar10": ("CIFAR10", (3, 32, 32), "cifar-10-batches-py/data_batch_1"),
    "svhn": ("SVHN", (3, 32, 32), "train_32x32.mat"),
}
NORMALIZE = ["none", "standard"]
DEFAULT_N_VAL = 5000  # validation images when neither n_val nor n_test is set
SUBSETS = ["first", "random"]


class TorchvisionImages(Dataset):
    """**Arguments:** ``name`` (mnist | fashion_mnist | cifar10 | svhn); ``root`` (the folder
    holding e.g. ``MNIST/raw``; default ``${paths.data_dir}``); ``download`` (fetch into root if
    absent; off by default); ``n_train``/``n_test`` (null: all) taken ``first`` (the 18.337
    study's first 1000) or ``random`` (drawn with ``seed``); ``normalize``: ``none`` ([0, 1]) or
    ``standard`` (per-channel mean/std of the training subset); ``random_crop_padding``: 0 (off)
    or k > 0: training batches are randomly cropped back to H×W from the image zero-padded by k
    (torchdiffeq's odenet_mnist and the SONODE paper: 4); ``n_val``: the validation images, the
    last ``n_val`` of the training file (null: as many as ``n_test``, 5000 when that is null, the
    55000/5000 split of MNIST)."""

    task = Task.classification
    output_dim = 10
    loss = "cross_entropy"

    def __init__(self, name: str = "mnist", root: str = "data", download: bool = False, n_train: int | None = None,
                 n_test: int | None = None, subset: str = "first", normalize: str = "none",
                 random_crop_padding: int = 0, n_val: int | None = None, seed: int = 0) -> None:
        super().__init__(seed)
        check_choice("name", name, list(IMAGE_SETS))
        check_choice("subset", subset, SUBSETS)
        check_choice("normalize", normalize, NORMALIZE)
        check_number("n_train", n_train, kind=int, low=1, allow_none=True)
        check_number("n_test", n_test, kind=int, low=1, allow_none=True)
        check_number("n_val", n_val, kind=int, low=1, allow_none=True)
        check_number("random_crop_padding", random_crop_padding, kind=int, low=0)
        if not isinstance(download, bool):
            raise ConfigError("download", download, "must be true or false", choices=[True, False])
        self.name, self.root, self.download = name, Path(root).expanduser().resolve(), download
        self.n_train, self.n_test, self.subset, self.normalize = n_train, n_test, subset, normalize
        self.random_crop_padding = random_crop_padding
        self.n_val = n_val if n_val is not None else (n_test if n_test is not None else DEFAULT_N_VAL)
        cls, self.data_shape, marker = IMAGE_SETS[name]
        self.data_dim = self.data_shape[0]
        if not download and not (self.root / marker).exists():
            folder = marker.split("/")[0]
            raise ConfigError("root", str(self.root), f"no {cls} data here (looked for {marker})",
                              fix=f"point paths.data_dir (env NODE_LAB_DATA) at the folder holding {folder}, "
                                  "or set dataset.download=true to fetch it")

    def _read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        import torchvision.datasets as tvd

        cls = getattr(tvd, IMAGE_SETS[self.name][0])
        kwargs = {"split": "train" if train else "test"} if self.name == "svhn" else {"train": train}
        try:
            ds = cls(root=str(self.root), download=self.download, **kwargs)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise ConfigError("root", str(self.root), str(err).splitlines()[0],
                              fix="check paths.data_dir (env NODE_LAB_DATA)") from None
        except (AssertionError, ValueError, OSError, EOFError) as err:  # torchvision's readers assert on bad files
            detail = str(err).splitlines()[0] if str(err).strip() else "bad header or truncated data"
            raise ConfigError("root", str(self.root), f"the {IMAGE_SETS[self.name][0]} files there are unreadable "
                              f"({type(err).__name__}: {detail})", fix="replace the corrupt files (or delete them and "
                              "set dataset.download=true)") from None
        images = torch.as_tensor(np.asarray(ds.data))
        labels = torch.as_tensor(np.asarray(getattr(ds, "targets", getattr(ds, "labels", None))), dtype=torch.long)
        if images.dim() == 3:  # (N, H, W) greyscale
            images = images[:, None]
        elif images.shape[-1] == 3:  # CIFAR: (N, H, W, C)
            images = images.permute(0, 3, 1, 2)
        return images.float() / 255.0, labels

    def _take(self, x: torch.Tensor, y: torch.Tensor, n: int | None, g: torch.Generator, key: str) -> Split:
        if n is not None and n > len(x):  # never silently fewer samples than asked for
            raise ConfigError(key, n, f"{self.name} has {len(x)} images in {self.root}", fix=f"dataset.{key}<={len(x)} "
                              "(or null for all)")
        if n is not None and n < len(x):
            index = torch.arange(n) if self.subset == "first" else torch.randperm(len(x), generator=g)[:n]
            x, y = x[index], y[index]
        return Split(x=x.contiguous(), y=y)

    def load(self) -> Data:
        g = self.generator()
        x, y = self._read(True)
        held = len(x) - self.n_val  # images [held, N) are the validation split
        if held < 1 or (self.n_train is not None and self.n_train > held):
            raise ConfigError("n_train", self.n_train, f"with n_val={self.n_val} held out for validation, the "
                              f"{len(x)}-image training file leaves {max(held, 0)} for training",
                              fix=f"dataset.n_train<={max(held, 0)} or a smaller dataset.n_val")
        train = self._take(x[:held], y[:held], self.n_train, g, "n_train")
        val = Split(x=x[held:].contiguous(), y=y[held:])
        test = self._take(*self._read(False), self.n_test, g, "n_test")
        if self.normalize == "standard":
            mean = train.x.mean(dim=(0, 2, 3), keepdim=True)
            std = train.x.std(dim=(0, 2, 3), keepdim=True)
            train.x, val.x, test.x = (train.x - mean) / std, (val.x - mean) / std, (test.x - mean) / std
        crop = RandomCrop(self.random_crop_padding) if self.random_crop_padding else None
        return Data(task=self.task, train=train, val=val, test=test, loss=self.loss, output_dim=self.output_dim,
                    train_transform=crop)

    def describe(self) -> str:
        return f"{self.name}({self.n_train or 'all'}/{self.n_test or 'all'})"


class RandomCrop:
    """torchvision's ``RandomCrop(size=(H, W), padding=k)`` on a whole batch (B, C, H, W) at once:
    each image is zero-padded by k and an H×W window at an offset drawn uniformly from
    {0, …, 2k}² (per image, from ``generator``) is kept."""

    def __init__(self, padding: int) -> None:
        self.padding = padding

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        k = self.padding
        padded = F.pad(x, (k, k, k, k))
        rows, cols = torch.randint(0, 2 * k + 1, (2, b, 1), generator=generator).to(x.device)
        rows = rows + torch.arange(h, device=x.device)  # (B, H) row indices into the padded image
        cols = cols + torch.arange(w, device=x.device)  # (B, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
