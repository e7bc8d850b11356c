"""Named trained weights: typed data next to the builders, so a name works wherever a file does.

``fcnkit.load("camvid-fcn8s-lite0")``, ``Predictor(NAME)`` and ``fcnkit predict NAME ...``
resolve the name here. An entry's file either ships inside the wheel (``fcnkit/weights/``,
fp16 safetensors) or is a URL + sha256, downloaded once into the cache folder
(``$FCNKIT_CACHE``, default ``~/.cache/fcnkit``) with torch.hub's downloader, which shows
a progress bar and checks the digest. A test checks every entry against its real file.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..data.camvid import CLASSES as CAMVID_CLASSES
from ..data.camvid import PALETTE as CAMVID_PALETTE
from ..data.fetch import file_digest
from ..heads import BOXES, SEG, heads_of, task_name
from ..io import cache_root
from ..preprocessing import IMAGENET, TF_INCEPTION, Preprocessing

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "weights"
CAMVID_LICENCE = "code MIT; weights derive from CamVid (personal and research use only, CC BY-NC 4.0)"
RACCOON_LICENCE = "code MIT; weights derive from raccoon_dataset (MIT) and ImageNet-trained EfficientNet-Lite (Apache-2.0)"


@dataclass(frozen=True)
class WeightsEntry:
    """One trained model: what it is, what it expects, how well it did, and where its file is."""

    name: str
    heads: frozenset[str]  # what the model predicts: {SEG}, {BOXES} or both (as its spec says)
    model: str  # registry name of the builder
    encoder: str
    dataset: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    preprocessing: Preprocessing
    metrics: dict[str, float]  # on the dataset's val split (the test split is never used): see trained_on
    licence: str
    sha256: str
    size_bytes: int
    file: str | None = None  # file name in fcnkit/weights/ (shipped in the wheel)
    url: str | None = None  # or a download location
    recipe: str = ""
    notes: str = ""
    # the data the file saw. A release fit on train + val (the literature's protocol) quotes the
    # val figures of the train-only run of the same recipe: its own would flatter it
    trained_on: tuple[str, ...] = ("train",)  # splits of ``dataset``

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", heads_of(self.heads))
        if (self.file is None) == (self.url is None):
            raise ValueError(f"weights {self.name!r}: give exactly one of file and url")
        # the name becomes a file name in the cache folder: no separators, no "..", nothing hidden
        if not _NAME.fullmatch(self.name) or ".." in self.name:
            raise ValueError(f"weights name {self.name!r}: use letters, digits, '-', '_' and '.' only "
                             f"(it names a file in the cache folder)")
        if self.file is not None and (Path(self.file).name != self.file or self.file.startswith(".")):
            raise ValueError(f"weights {self.name!r}: file {self.file!r} must be a plain file name in fcnkit/weights/")

    @property
    def task(self) -> str:
        """The task's name for people ("segmentation", "detection" or "joint")."""
        return task_name(self.heads)

    def path(self, *, progress: bool = True) -> Path:
        """The local file: the packaged one, or the cached download (fetched on first use)."""
        if self.file is not None:
            path = PACKAGE_DIR / self.file
            if not path.is_file():
                raise FileNotFoundError(f"weights {self.name!r}: packaged file {path} is missing "
                                        "(a source checkout without it, or a damaged install)")
            return path
        return _download(self, progress=progress)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def cache_dir() -> Path:
    return cache_root() / "weights"


_VERIFIED: set[Path] = set()  # cached downloads already hashed in this process (a load resolves twice)


def _download(entry: WeightsEntry, *, progress: bool) -> Path:
    dst = cache_dir() / f"{entry.name}-{entry.sha256[:12]}{Path(entry.url).suffix or '.safetensors'}"
    if dst in _VERIFIED and dst.is_file():
        return dst
    if dst.is_file() and sha256_of(dst) == entry.sha256:
        _VERIFIED.add(dst)
        return dst
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=dst.parent):
            pass
    except OSError as e:
        raise RuntimeError(f"weights {entry.name!r}: cannot write the cache folder {dst.parent} "
                           f"({e.strerror or e}); set FCNKIT_CACHE to a writable folder") from None
    from torch.hub import download_url_to_file  # writes a temp file, checks the digest, then renames

    try:
        download_url_to_file(entry.url, str(dst), hash_prefix=entry.sha256, progress=progress)
    except RuntimeError as e:  # torch.hub's digest mismatch
        raise RuntimeError(f"weights {entry.name!r} from {entry.url}: {e}") from e
    except OSError as e:
        raise RuntimeError(f"weights {entry.name!r}: cannot download {entry.url} ({type(e).__name__}: {e}); "
                           f"download it elsewhere and pass the file's path instead") from e
    _VERIFIED.add(dst)
    return dst


def sha256_of(path: str | Path) -> str:
    return file_digest(Path(path), "sha256:").split(":", 1)[1]


_WEIGHTS: dict[str, WeightsEntry] = {}


def register_weights(entry: WeightsEntry) -> WeightsEntry:
    if entry.name in _WEIGHTS:
        raise ValueError(f"weights {entry.name!r} registered twice")
    _WEIGHTS[entry.name] = entry
    return entry


def list_weights() -> list[str]:
    """Names of the registered trained weights."""
    return sorted(_WEIGHTS)


def get_weights(name: str) -> WeightsEntry:
    try:
        return _WEIGHTS[name]
    except KeyError:
        raise ValueError(f"unknown weights {name!r}; choose from {list_weights()}") from None


def _as_name(model: str | Path) -> str | None:
    """``model`` if it names registered weights and no file of that name exists (files win)."""
    return str(model) if str(model) in _WEIGHTS and not Path(model).exists() else None


def resolve(model: str | Path) -> Path:
    """A path as given, or the file of registered weights ``model`` when no such path exists."""
    name = _as_name(model)
    return _WEIGHTS[name].path() if name else Path(model)


_CAMVID = dict(dataset="CamVid (SegNet split, 11 classes, 480x360)", classes=tuple(CAMVID_CLASSES),
               palette=tuple(tuple(c) for c in CAMVID_PALETTE), licence=CAMVID_LICENCE, heads={SEG})

register_weights(WeightsEntry(
    name="camvid-fcn8s-lite0", model="fcn8s", encoder="efficientnet_lite0", preprocessing=TF_INCEPTION,
    # the val figures of the recipe's train-only run (it never saw 0006R0 either: the held-out score is the
    # forecast of unseen streets); this file was then fitted on train + val, so its own val score flatters it
    metrics={"mean_iu": 71.82, "pixel_acc": 93.36, "heldout_0006R0_mean_iu": 48.74},
    trained_on=("train", "val"),
    sha256="36a6d9c7d06adc77e50e90580866c74102d4aa2492b7a54810bd791ed517aebf", size_bytes=6955370,
    file="camvid_fcn8s_lite0.safetensors", recipe="configs/camvid_release.yaml",
    notes="ImageNet-pretrained EfficientNet-Lite0 encoder; square-root median-frequency class weights, 24 epochs "
          "on CamVid train + val (468 frames), 92 min on 2 CPU cores; recipe chosen by the study in "
          "benchmarks/results/camvid.md (row 'long')",
    **_CAMVID))
register_weights(WeightsEntry(
    name="raccoon-fcn8s-det-lite0", heads={BOXES}, model="fcn8s-det", encoder="efficientnet_lite0",
    dataset="raccoon_dataset (VOC XML, 128 train / 32 val images, 1 class)", classes=("raccoon",), palette=((128, 0, 0),),
    # the val figures of the recipe's train-only run (100 epochs, final EMA weights); this file was then
    # fitted on train + val (160 photos), so its own val score flatters it
    preprocessing=TF_INCEPTION, metrics={"map": 50.4, "ap50": 96.7, "ap75": 47.5}, licence=RACCOON_LICENCE,
    trained_on=("train", "val"),
    sha256="c7aa8634507503cd1b5ec1856ff70e0694794d3422379770e64c7af9df8d5b46", size_bytes=7883066,
    file="raccoon_fcn8s_det_lite0.safetensors",
    recipe="configs/raccoon_det_lite0.yaml",
    notes="ImageNet-pretrained EfficientNet-Lite0 encoder; heatmap prior 0.01, focal loss, size L1 and GIoU over "
          "each box's central region (TTFNet), 100 epochs on raccoon train + val (160 photos, 2000 steps, batch 8, "
          "EMA 0.998, colour jitter 0.2); recommends --conf 0.4 (the train-only run's best-F1 threshold 0.38: "
          "precision 97.0, recall 94.1; true peaks median 0.80)"))
register_weights(WeightsEntry(
    name="camvid-fcn8s-resnet18", model="fcn8s", encoder="resnet18", preprocessing=IMAGENET,
    metrics={"mean_iu": 63.82, "pixel_acc": 90.28, "mean_acc": 81.90, "fw_iu": 84.20},
    sha256="16133752a32060b6a60172a47c9c1b99d7d19b844c4fca3b0dc810bfddf68132", size_bytes=22474762,
    file="camvid_fcn8s_resnet18.safetensors", recipe="configs/camvid_long.yaml",
    notes="trained from scratch (no ImageNet weights), 100 epochs, 82 min on 2 CPU cores", **_CAMVID))

__all__ = ["WeightsEntry", "cache_dir", "get_weights", "list_weights", "register_weights", "resolve",
           "sha256_of"]
