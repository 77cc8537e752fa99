"""Datasets for the lab kit: download → cache → verify → pandas DataFrames.

Every loader returns a plain ``pandas.DataFrame`` whose column names are a contract for the notebooks,
the training loop and the command line:

=====================  ===================================================  ================
loader                 columns                                              splits
=====================  ===================================================  ================
``load_banking77``     text, label, label_name                              train, test
``load_books``         text, label, label_name, book                        train, dev, test
``load_stsb``          sentence1, sentence2, score (0–1)                    train, dev, test
``load_snli``          premise, hypothesis, label, label_name               dev, test, train
``snli_pairs``         anchor, positive                                     dev, test, train
``snli_triplets``      anchor, positive, negative                           dev, test, train
``from_file``          text [, text_pair] [, label, label_name] [, score]   (your own file)
``load_pairs``         anchor, positive [, negative | negative_1 …]         (your own file)
=====================  ===================================================  ================

Retrieval collections are not one table: ``load_scifact`` (splits train, test) and ``load_beir`` (any folder
in BEIR layout) return a :class:`RetrievalData` with ``corpus`` (doc id → text), ``queries`` (query id →
text) and ``qrels`` (query id → {doc id: score}).

Where the files come from, in this order (the first place that has a file wins):

1. the ``data_dir=`` argument of a loader,
2. the folder named by the environment variable ``LABKIT_DATA_DIR``,
3. the user cache: ``LABKIT_CACHE_DIR``, by default ``~/.cache/labkit/datasets``,
4. a download from the dataset's original public source into the cache (with a progress bar).

Folders 1–3 share one layout, the one of the course's dataset mirror::

    banking77/train.csv  banking77/test.csv  banking77/categories.json
    gutenberg/ulysses_joyce_pg4300.txt  gutenberg/dubliners_joyce_pg2814.txt
    gutenberg/dracula_stoker_pg345.txt  gutenberg/republic_plato_jowett_pg1497.txt
    snli/snli_1.0_dev.tsv  snli/snli_1.0_test.tsv  [snli/snli_1.0_train.tsv]
    stsb-subset/sts-{train,dev,test}.tsv     (offline CC BY-SA subset of STS-B)
    stsb/{train,dev,test}.parquet            (full STS-B, written by a download)
    scifact/corpus.jsonl  scifact/queries.jsonl  scifact/qrels/{train,test}.tsv  (BEIR layout)

Every file is checked before it is used: by SHA-256 where the source is byte-stable (Banking77, pinned
to a commit; SciFact, BEIR's zip) and by its structure where it is not (Project Gutenberg texts, SNLI, STS-B: columns,
row counts, value ranges, chapter headings). Downloads are atomic: bytes go to a temporary file in the
destination folder, are checked, and only then renamed into place, so an interrupted download never
leaves a half-written file behind.

No internet? Set ``LABKIT_DATA_DIR`` to a folder with the files, or run
``python -m labkit download`` on a machine where the internet works (it fills the cache; copy the
cache folder over, or point ``LABKIT_DATA_DIR`` at it).

Each dataset's source, license, citation and size: ``describe()`` and the data card, data/README.md.
"""
from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

__all__ = [
    "DATASETS", "DatasetInfo", "DataUnavailableError", "CorruptDataError",
    "load_dataset", "load_banking77", "load_books", "load_stsb", "load_snli", "snli_pairs", "snli_triplets",
    "from_file", "train_dev_split", "download", "describe", "cache_dir",
    "RetrievalData", "load_scifact", "load_beir", "load_pairs",
]

DATA_DIR_ENV = "LABKIT_DATA_DIR"
CACHE_DIR_ENV = "LABKIT_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/labkit/datasets")

# Fail fast without a network: a short connect timeout and no retry loop. Reads may stall longer on bad Wi-Fi.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
USER_AGENT = "labkit/0.1 (+https://github.com/; dataset download for a teaching lab kit)"


# ----------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------
class DataUnavailableError(FileNotFoundError):
    """A dataset file is in none of the data folders and could not be downloaded."""


class CorruptDataError(ValueError):
    """A dataset file exists but fails its checksum or structural check."""


# ----------------------------------------------------------------------------------------------------
# Where files live
# ----------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """The download cache: ``$LABKIT_CACHE_DIR`` or ``~/.cache/labkit/datasets``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser()


def _user_folders(data_dir) -> List[Tuple[str, Path]]:
    """The folders a user pointed us at, as (how it was named, path). They are read, never written."""
    folders = []
    if data_dir is not None:
        folders.append(("data_dir argument", Path(data_dir).expanduser()))
    if os.environ.get(DATA_DIR_ENV):
        folders.append((DATA_DIR_ENV, Path(os.environ[DATA_DIR_ENV]).expanduser()))
    for how, folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{how} points at {folder}, which is not a folder. Point it at a folder laid out like the "
                f"dataset mirror (banking77/, gutenberg/, scifact/, snli/, stsb-subset/), or unset it to use the cache "
                f"{cache_dir()} and downloads."
            )
    return folders


# ----------------------------------------------------------------------------------------------------
# The files we know: where each comes from and how it is checked
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataFile:
    """One file of a dataset.

    ``relpath`` is its place inside a data folder; ``url`` is its original public source (``None`` for
    files that only exist in the offline mirror); ``fetch`` writes a fresh copy to a temporary path;
    ``parse`` reads a file and raises :class:`CorruptDataError` when it fails its structural check;
    ``sha256`` is checked first when the source is byte-stable.
    """

    relpath: str
    url: Optional[str]
    parse: Callable[[Path], object]
    sha256: Optional[str] = None
    fetch: Optional[Callable[["DataFile", Path, bool], None]] = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_checked(spec: DataFile, path: Path):
    """Verify ``path`` against ``spec`` and return its parsed content (or raise CorruptDataError)."""
    if spec.sha256 is not None:
        actual = _sha256(path)
        if actual != spec.sha256:
            raise CorruptDataError(
                f"its SHA-256 is {actual}, expected {spec.sha256} ({path.stat().st_size:,} bytes): "
                f"the file is truncated or altered"
            )
    try:
        return spec.parse(path)
    except CorruptDataError:
        raise
    except (UnicodeDecodeError, ValueError, KeyError, OSError, zipfile.BadZipFile, csv.Error) as err:
        raise CorruptDataError(f"it cannot be parsed ({type(err).__name__}: {err})") from err


# ----------------------------------------------------------------------------------------------------
# Fetching from the internet (atomic)
# ----------------------------------------------------------------------------------------------------
def _open_url(url: str, timeout: float):
    """Open ``url`` for reading (tests replace this to serve local bytes or to fail)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)


def _allow_slow_reads(response) -> None:
    # urlopen's one timeout covers connect and reads; once connected, let a slow network stall longer.
    try:
        response.fp.raw._sock.settimeout(READ_TIMEOUT_S)
    except AttributeError:
        pass


def _progress_bar(total: Optional[int], label: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress)


def _fetch_url(spec: DataFile, target: Path, progress: bool) -> None:
    """Stream ``spec.url`` into ``target``; a short read (fewer bytes than announced) is an error."""
    with _open_url(spec.url, CONNECT_TIMEOUT_S) as response:
        _allow_slow_reads(response)
        announced = response.headers.get("Content-Length")
        announced = int(announced) if announced else None
        received = 0
        with open(target, "wb") as out, _progress_bar(announced, spec.relpath, progress) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if announced is not None and received != announced:
        raise CorruptDataError(f"the download was cut short: received {received:,} of {announced:,} bytes")


def hub_file_url(repo_id: str, filename: str, revision: str) -> str:
    """The download URL of one file of a Hugging Face *dataset* repository (as ``huggingface_hub.hf_hub_url``)."""
    return f"https://huggingface.co/datasets/{repo_id}/resolve/{revision}/{filename}"


def _fetch_hub(spec: DataFile, target: Path, progress: bool) -> None:
    # A plain GET of the file's resolve URL, not huggingface_hub.hf_hub_download: that one retries five
    # times with back-off (~25 s) when offline, and we promise a clear error within seconds.
    switches = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    if any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on") for name in switches):
        raise ConnectionError("HF_HUB_OFFLINE is set: labkit does not contact the Hugging Face Hub")
    _fetch_url(spec, target, progress)


def _install(spec: DataFile, root: Path, fill: Callable[[Path], None]):
    """Write ``root/spec.relpath`` atomically: ``fill`` a temp file beside it, check it, then rename.

    Returns (path, parsed content). On any failure the temp file is removed and nothing is left behind.
    """
    destination = root / spec.relpath
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=destination.name + ".", suffix=".part", dir=destination.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        fill(temp)
        content = _read_checked(spec, temp)
        os.replace(temp, destination)
        return destination, content
    finally:
        if temp.exists():
            temp.unlink()


def _download_into(spec: DataFile, root: Path, progress: bool = True):
    """Fetch ``spec`` from its public source into ``root`` (atomic, verified)."""
    if spec.fetch is None:
        raise DataUnavailableError(f"{spec.relpath} has no online source (it exists only in the offline mirror)")
    return _install(spec, root, lambda temp: spec.fetch(spec, temp, progress))


# ----------------------------------------------------------------------------------------------------
# Finding a file: data_dir → LABKIT_DATA_DIR → cache → download
# ----------------------------------------------------------------------------------------------------
def _fix_hint(dataset: str, relpaths: Sequence[str]) -> str:
    return (
        "Two ways to fix this:\n"
        f"  1. set {DATA_DIR_ENV} to a folder that holds {' or '.join(relpaths)} (laid out like the dataset "
        f"mirror), e.g. `export {DATA_DIR_ENV}=/path/to/datasets`, or pass data_dir=... to the loader;\n"
        f"  2. run `python -m labkit download {dataset}` on a machine where the internet works: it fills "
        f"the cache {cache_dir()} (copy that folder here, or point {DATA_DIR_ENV} at a copy)."
    )


def _load_file(dataset: str, candidates: Sequence[str], data_dir=None, progress: bool = True):
    """Return (parsed content, path) of the first of ``candidates`` found, downloading it if needed.

    ``candidates`` are alternative relpaths for the same data (e.g. the full STS-B and its offline subset);
    folders are searched first, candidates second. A corrupt file in a user folder is an error (we do
    not touch user folders); a corrupt file in our cache is deleted and downloaded again.
    """
    places = _user_folders(data_dir) + [("cache", cache_dir())]
    cache_problem = ""
    for how, folder in places:
        for relpath in candidates:
            path = folder / relpath
            if not path.is_file():
                continue
            try:
                return _read_checked(SOURCES[relpath], path), path
            except CorruptDataError as err:
                if how != "cache":
                    raise CorruptDataError(
                        f"{path} (found via the {how}) is not a valid {dataset} file: {err}. Delete or replace "
                        f"that file (`rm {path}`), or point {how} elsewhere; labkit then uses the next place "
                        f"that has it (the cache {cache_dir()}, or a fresh download)."
                    ) from err
                warnings.warn(f"{path} in the labkit cache is corrupt ({err}); deleting it and downloading it again")
                path.unlink()
                cache_problem = f"(The cached copy {path} was corrupt and has been deleted: {err}.)\n"
    spec = next((SOURCES[r] for r in candidates if SOURCES[r].fetch is not None), SOURCES[candidates[0]])
    try:
        path, content = _download_into(spec, cache_dir(), progress)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # no network, HTTP error, failed check: all end in the same clear message
        looked = "\n".join(f"  - {folder / relpath}  ({how})" for how, folder in places for relpath in candidates)
        raise DataUnavailableError(
            f"{dataset}: {' / '.join(candidates)} is missing. Looked in:\n{looked}\n"
            f"{cache_problem}Downloading it from {spec.url or 'its source'} failed: {type(err).__name__}: {err}\n"
            + _fix_hint(dataset, candidates)
        ) from err
    return content, path


# ----------------------------------------------------------------------------------------------------
# Banking77 (SHA-256: the source is pinned to a commit, the mirror is byte-for-byte identical)
# ----------------------------------------------------------------------------------------------------
BANKING77_COMMIT = "57ec275d8078af65b7731c2a98be812d844a6d6b"
BANKING77_URL = f"https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/{BANKING77_COMMIT}/banking_data/"
BANKING77_SHA256 = {
    "train.csv": "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
    "test.csv": "d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d",
    "categories.json": "53261da888122daf2d120d925458631d9619e15d82e56052e7a42e535ce32b63",
}


def _parse_banking_csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, keep_default_na=False)  # a query that reads "NA" is text, not a missing value
    if list(frame.columns) != ["text", "category"]:
        raise CorruptDataError(f"expected the columns text,category, found {list(frame.columns)}")
    return frame


def _parse_json(path: Path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load_banking77(split: str = "train", data_dir=None) -> pd.DataFrame:
    """Banking77: 13,083 short online-banking queries labelled with one of 77 intents.

    Columns: ``text``; ``label`` (int 0–76: the index of the intent in the list of the 77 intent names
    sorted alphabetically, ignoring case, so ``activate_my_card`` is 0 and ``Refund_not_showing_up`` sits
    among the r's; the list is ``df.attrs["label_names"]``); ``label_name`` (e.g. ``"card_arrival"``).
    Splits: ``"train"`` (10,003 rows), ``"test"`` (3,080 rows).
    There is no dev split: carve one from train with :func:`train_dev_split`.

    Source: PolyAI-LDN/task-specific-datasets (CC BY 4.0), Casanueva et al. 2020. Many classes with few,
    short, similar examples: the dataset for P×K batches and batch-hard / batch-all triplet losses.
    """
    split = _check_split("banking77", split, ("train", "test"))
    frame, path = _load_file("banking77", [f"banking77/{split}.csv"], data_dir)
    categories, _ = _load_file("banking77", ["banking77/categories.json"], data_dir)
    label_names = sorted(categories, key=str.lower)  # one intent is capitalised: "Refund_not_showing_up"
    unknown = sorted(set(frame["category"]) - set(label_names))
    if unknown:
        raise CorruptDataError(f"{path} has intents that categories.json lacks: {unknown[:5]}")
    out = pd.DataFrame({
        "text": frame["text"].astype(str),
        "label": pd.Categorical(frame["category"], categories=label_names).codes.astype(np.int64),
        "label_name": frame["category"].astype(str),
    })
    out.attrs.update(dataset="banking77", split=split, label_names=label_names, source_files=[str(path)])
    return out


# ----------------------------------------------------------------------------------------------------
# The four Gutenberg books of the hard-triplet article (structural checks: texts are not byte-stable)
# ----------------------------------------------------------------------------------------------------
DUBLINERS_STORIES = (
    "The Sisters", "An Encounter", "Araby", "Eveline", "After the Race", "Two Gallants", "The Boarding House",
    "A Little Cloud", "Counterparts", "Clay", "A Painful Case", "Ivy Day in the Committee Room", "A Mother",
    "Grace", "The Dead",
)
_ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV", "XV", "XVI",
          "XVII", "XVIII", "XIX", "XX", "XXI", "XXII", "XXIII", "XXIV", "XXV", "XXVI", "XXVII"]


@dataclass(frozen=True)
class Book:
    """How to find the chapters of one Gutenberg book, in the mirror copy and in a fresh download.

    The body runs from the line holding ``opening`` (the first words of chapter 1) to the end of the line
    holding ``closing`` (the last words): the title page, contents, introduction and Gutenberg licence
    fall outside it. Inside the body a line matching ``heading`` starts a new chapter; its captured text
    must run through ``heading_ids`` in order (chapter 1's heading lies before the opening words).
    """

    title: str
    gutenberg_id: int
    filename: str
    chapter_names: Tuple[str, ...]
    heading: str
    heading_ids: Tuple[str, ...]
    opening: str
    closing: str
    min_bytes: int
    body_words: int  # words in the body of the mirror copy; another edition must be within 5 %
    drop_lines: str = r"(?!x)x"  # lines removed from the body (the default never matches)

    @property
    def url(self) -> str:
        return f"https://www.gutenberg.org/cache/epub/{self.gutenberg_id}/pg{self.gutenberg_id}.txt"


def _words(phrase: str) -> str:
    """A regex for ``phrase`` that also matches when a line break falls between its words."""
    return r"\s+".join(re.escape(word) for word in phrase.split())


BOOKS = (
    Book("Ulysses", 4300, "ulysses_joyce_pg4300.txt",
         chapter_names=tuple(f"Episode {i}" for i in range(1, 19)),
         heading=r"^\[ ?(\d+) ?\][ \t]*$", heading_ids=tuple(str(i) for i in range(2, 19)),
         opening=_words("Stately, plump Buck Mulligan"), closing=_words("yes I will Yes."),
         min_bytes=1_300_000, body_words=264_883,
         drop_lines=r"^[ \t]*(?:—|--)[ \t]*[IVX]+[ \t]*(?:—|--)[ \t]*$"),  # the part markers "— II —"
    Book("Dubliners", 2814, "dubliners_joyce_pg2814.txt",
         chapter_names=DUBLINERS_STORIES,
         # unindented only: "     A PAINFUL CASE" inside a newspaper cutting is not a heading
         heading=r"^(" + "|".join(re.escape(s.upper()) for s in DUBLINERS_STORIES) + r")[ \t]*$",
         heading_ids=tuple(s.upper() for s in DUBLINERS_STORIES[1:]),
         opening=_words("There was no hope for him this time"), closing=_words("upon all the living and the dead."),
         min_bytes=340_000, body_words=67_487),
    Book("Dracula", 345, "dracula_stoker_pg345.txt",
         chapter_names=tuple(f"Chapter {r}" for r in _ROMAN[:27]),
         heading=r"^CHAPTER ([IVXL]+)\.?[ \t]*$", heading_ids=tuple(_ROMAN[1:27]),
         opening=_words("3 May. Bistritz"), closing=_words("dare much for her sake"),
         min_bytes=770_000, body_words=160_750),
    Book("The Republic", 1497, "republic_plato_jowett_pg1497.txt",
         chapter_names=tuple(f"Book {r}" for r in _ROMAN[:10]),
         heading=r"^ ?BOOK ([IVX]+)\.[ \t]*$", heading_ids=tuple(_ROMAN[1:10]),
         opening=_words("I went down yesterday to the Piraeus"), closing=_words("which we have been describing."),
         min_bytes=590_000, body_words=118_264),
)

_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (?:THE|THIS) PROJECT GUTENBERG EBOOK.*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (?:THE|THIS) PROJECT GUTENBERG EBOOK.*$", re.M | re.I)


def _strip_gutenberg_boilerplate(text: str, title: str) -> str:
    """Remove the Project Gutenberg header and footer when present (fresh downloads have them)."""
    start, end = _GUTENBERG_START.search(text), _GUTENBERG_END.search(text)
    if start is None and end is None:
        return text  # the mirror copies: body only
    if start is None or end is None:
        half = "footer (*** END OF ...)" if end is None else "header (*** START OF ...)"
        raise CorruptDataError(f"the Project Gutenberg {half} is missing: the download is incomplete")
    if not re.search(r"^Title:\s*" + re.escape(title), text[: start.start()], re.M | re.I):
        raise CorruptDataError(f"its Gutenberg header does not name the title {title!r}: it is another book")
    return text[start.end(): end.start()]


def _parse_book(book: Book) -> Callable[[Path], List[Tuple[str, str]]]:
    def parse(path: Path) -> List[Tuple[str, str]]:
        """Read the book and return its chapters as (chapter name, text) pairs, checking its structure."""
        size = path.stat().st_size
        if size < book.min_bytes:
            raise CorruptDataError(f"it has {size:,} bytes, fewer than the {book.min_bytes:,} of the full book")
        text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
        text = _strip_gutenberg_boilerplate(text, book.title)
        opening = re.search(r"^.*?" + book.opening, text, re.M)
        closings = list(re.finditer(book.closing, text))
        if opening is None or not closings:
            missing = "first" if opening is None else "last"
            raise CorruptDataError(f"the {missing} words of {book.title} are missing: the text is truncated or "
                                   f"not this book")
        body_end = text.find("\n", closings[-1].end())
        body = text[opening.start(): len(text) if body_end < 0 else body_end]
        body = re.sub(book.drop_lines, "", body, flags=re.M)
        pieces = re.split(book.heading, body, flags=re.M)  # [chapter 1, id 2, chapter 2, id 3, chapter 3, ...]
        found = tuple(pieces[1::2])
        if found != book.heading_ids:
            raise CorruptDataError(
                f"expected {len(book.chapter_names)} chapters of {book.title} with the headings "
                f"{book.heading_ids[0]} … {book.heading_ids[-1]} in order; found {len(found)} headings: {found}"
            )
        chapters = [_clean_passage_text(piece) for piece in pieces[0::2]]
        words = sum(len(chapter.split()) for chapter in chapters)
        if abs(words - book.body_words) > 0.05 * book.body_words:
            raise CorruptDataError(f"its body has {words:,} words, not about {book.body_words:,}: "
                                   f"an unexpected edition")
        return list(zip(book.chapter_names, chapters))
    return parse


def _clean_passage_text(text: str) -> str:
    # "_italics_" is Gutenberg markup, not prose; whitespace (CRLF, line wraps) becomes single spaces.
    return " ".join(text.replace("_", "").split())


BOOKS_SPLIT_SIZES = {"train": 12_000, "dev": 964, "test": 1_000}  # the article's split


def _stable_ranks(n: int, seed: int) -> np.ndarray:
    """A pseudo-random permutation rank (0..n-1) that never changes: PCG64's raw stream is stable across
    NumPy versions (Generator methods such as ``permutation`` are not promised to be)."""
    raw = np.random.PCG64(seed).random_raw(n)
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(raw, kind="stable")] = np.arange(n)
    return ranks


def _allocate(counts: pd.Series, total: int) -> pd.Series:
    """Share ``total`` among classes in proportion to ``counts`` (largest remainder), never above a count."""
    exact = counts * (total / counts.sum())
    share = np.floor(exact).astype(np.int64)
    leftover = int(total - share.sum())
    largest = (exact - share).sort_values(ascending=False, kind="stable").index[:leftover]
    share[largest] += 1
    return share.clip(upper=counts)


def _book_passages(words_per_passage: int, data_dir) -> pd.DataFrame:
    """All passages of all four books, in reading order: text, label, label_name, book."""
    rows = []
    label = 0
    for book in BOOKS:
        chapters, _ = _load_file("books", [f"gutenberg/{book.filename}"], data_dir)
        for chapter_name, chapter_text in chapters:
            words = chapter_text.split()
            # non-overlapping windows; a chapter's last, shorter piece is dropped so every passage has the same length
            for start in range(0, len(words) - words_per_passage + 1, words_per_passage):
                rows.append((" ".join(words[start: start + words_per_passage]), label,
                             f"{book.title} — {chapter_name}", book.title))
            label += 1
    return pd.DataFrame(rows, columns=["text", "label", "label_name", "book"])


@functools.lru_cache(maxsize=4)
def _cached_book_passages(words_per_passage: int, data_dir, env_data_dir) -> pd.DataFrame:
    """Parsing the four books takes seconds; train, dev and test come from the same parse.

    ``env_data_dir`` is only part of the cache key, so pointing LABKIT_DATA_DIR elsewhere parses again.
    """
    return _book_passages(words_per_passage, data_dir)


def load_books(split: str = "train", data_dir=None, words_per_passage: int = 40, seed: int = 42) -> pd.DataFrame:
    """The hard-triplet article's dataset, rebuilt: ~40-word passages of four books labelled by chapter.

    The books are Joyce's *Ulysses* (18 episodes) and *Dubliners* (15 stories), Stoker's *Dracula*
    (27 chapters) and Plato's *Republic* tr. Jowett (10 books): 70 chapter classes. Passages from the same
    book but another chapter share style and vocabulary, which makes them natural hard negatives.

    Columns: ``text``; ``label`` (int 0–69, in reading order: Ulysses 0–17, Dubliners 18–32, Dracula 33–59,
    The Republic 60–69); ``label_name`` (e.g. ``"Dracula — Chapter III"``); ``book``.
    Splits: ``"train"`` 12,000, ``"dev"`` 964 and ``"test"`` 1,000 passages, as in the article.

    How the dataset is made (deterministic for a given ``seed`` and ``words_per_passage``):

    1. Each text is read with Project Gutenberg's header and footer removed (fresh downloads have them,
       the mirror copies do not), CRLF normalised and ``_italic_`` markers dropped; the body runs from
       the first words of chapter 1 to the last words of the book, so title pages and contents are gone.
    2. Each book is split into chapters at its headings (``[ 2 ]``…``[ 18 ]``; the story titles;
       ``CHAPTER II``…; ``BOOK II.``…) and each chapter is cut into consecutive, non-overlapping passages
       of ``words_per_passage`` words; the last, shorter piece of a chapter is dropped. This gives
       15,253 passages of 40 words (exact duplicates, if any, would be kept once).
    3. Every chapter gets a share of the 13,964 passages used, the test set, and the dev set in
       proportion to its number of passages (largest-remainder rounding), so all 70 classes appear in
       every split with the same class balance. Within a chapter, passages are ordered by a fixed
       pseudo-random rank from ``seed``; the first go to test, the next to dev, the next to train and
       the rest (1,289 in total) are unused. A passage is in one split only: no leakage.
    4. If fewer than 13,964 passages exist (e.g. with ``words_per_passage=80``), the three splits are
       shrunk in proportion (a warning says so).

    Rows are returned in reading order (samplers shuffle). Online source: gutenberg.org plain texts
    (public domain). Reference: R. J. N. Clarke, "Fine-tune an embedding model with triplet margin loss
    in PyTorch" (Medium, 2024).
    """
    split = _check_split("books", split, ("train", "dev", "test"))
    if isinstance(words_per_passage, bool) or not isinstance(words_per_passage, (int, np.integer)) \
            or words_per_passage < 1:
        raise ValueError(f"words_per_passage must be a positive int (the article uses 40), got {words_per_passage!r}")
    passages = _cached_book_passages(int(words_per_passage), None if data_dir is None else str(data_dir),
                                     os.environ.get(DATA_DIR_ENV))
    passages = passages.drop_duplicates("text", ignore_index=True)
    sizes = dict(BOOKS_SPLIT_SIZES)
    wanted = sum(sizes.values())
    if len(passages) < wanted:
        scale = len(passages) / wanted
        sizes = {name: int(size * scale) for name, size in sizes.items()}
        warnings.warn(f"the books give only {len(passages):,} passages of {words_per_passage} words, fewer than the "
                      f"article's {wanted:,}: splits shrunk to {sizes}")
    counts = passages["label"].value_counts().sort_index()
    kept = _allocate(counts, sum(sizes.values()))
    test = _allocate(kept, sizes["test"])
    dev = _allocate(kept - test, sizes["dev"])
    # rank of each passage inside its chapter, in the seeded pseudo-random order
    passages["order"] = _stable_ranks(len(passages), seed)
    rank = passages.sort_values(["label", "order"], kind="stable").groupby("label").cumcount()
    passages["rank"] = rank.reindex(passages.index)
    bounds = {"test": (test * 0, test), "dev": (test, test + dev), "train": (test + dev, kept)}
    low, high = bounds[split]
    chosen = (passages["rank"] >= passages["label"].map(low)) & (passages["rank"] < passages["label"].map(high))
    out = passages.loc[chosen, ["text", "label", "label_name", "book"]].reset_index(drop=True)
    out["label"] = out["label"].astype(np.int64)
    label_names = passages.drop_duplicates("label").sort_values("label")["label_name"].tolist()
    out.attrs.update(dataset="books", split=split, label_names=label_names, seed=seed,
                     words_per_passage=words_per_passage)
    return out


# ----------------------------------------------------------------------------------------------------
# STS Benchmark: offline CC BY-SA subset (original layout, scores 0–5) or full set from the Hub (0–1)
# ----------------------------------------------------------------------------------------------------
STSB_HUB_REPO = "sentence-transformers/stsb"
STSB_HUB_REVISION = "ab7a5ac0e35aa22088bdcf23e7fd99b220e53308"
STSB_HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
STSB_FULL_ROWS = {"train": 5_749, "dev": 1_500, "test": 1_379}
STSB_SUBSET_ROWS = {"train": 1_000, "dev": 375, "test": 375}
STSB_COLUMNS = ["genre", "filename", "year", "pair_id", "score", "sentence1", "sentence2"]


def _check_rows(frame: pd.DataFrame, expected: int) -> None:
    if len(frame) != expected:
        raise CorruptDataError(f"it has {len(frame):,} rows, expected {expected:,}: the file is truncated or altered")


def _check_scores(scores: pd.Series, high: float) -> None:
    if scores.isna().any() or scores.min() < 0 or scores.max() > high:
        raise CorruptDataError(f"its scores are not all numbers in [0, {high}]")


def _parse_stsb_subset(split: str) -> Callable[[Path], pd.DataFrame]:
    def parse(path: Path) -> pd.DataFrame:
        # original STS-B layout: no header, tab-separated, quotes are literal text (QUOTE_NONE)
        frame = pd.read_csv(path, sep="\t", header=None, names=STSB_COLUMNS, quoting=csv.QUOTE_NONE,
                            dtype=str, keep_default_na=False)
        _check_rows(frame, STSB_SUBSET_ROWS[split])
        scores = pd.to_numeric(frame["score"], errors="coerce")
        _check_scores(scores, 5.0)
        return pd.DataFrame({"sentence1": frame["sentence1"], "sentence2": frame["sentence2"], "score": scores / 5.0})
    return parse


def _parse_stsb_full(split: str) -> Callable[[Path], pd.DataFrame]:
    def parse(path: Path) -> pd.DataFrame:
        frame = pd.read_parquet(path)
        if not {"sentence1", "sentence2", "score"} <= set(frame.columns):
            raise CorruptDataError(f"expected columns sentence1, sentence2, score; found {list(frame.columns)}")
        _check_rows(frame, STSB_FULL_ROWS[split])
        _check_scores(frame["score"], 1.0)  # sentence-transformers/stsb already divides by 5
        return frame[["sentence1", "sentence2", "score"]].astype({"score": np.float64})
    return parse


def load_stsb(split: str = "train", data_dir=None) -> pd.DataFrame:
    """STS Benchmark sentence pairs with a human similarity score, normalised to 0–1.

    Columns: ``sentence1``, ``sentence2``, ``score`` (float in [0, 1]: the 0–5 gold score divided by 5).
    Which rows you get depends on where the data comes from (``df.attrs["variant"]`` says which):

    - ``"full"``: the whole benchmark, 5,749 / 1,500 / 1,379 pairs (train/dev/test), downloaded from the
      Hugging Face Hub dataset ``sentence-transformers/stsb`` (pinned revision) into ``stsb/*.parquet``;
    - ``"cc-by-sa-subset"``: the offline mirror's ``stsb-subset/sts-*.tsv``, the 1,000 / 375 / 375 pairs
      whose text is plainly CC BY-SA (image captions + SNLI track), in the original layout.

    The first data folder that has either wins (``data_dir`` → ``LABKIT_DATA_DIR`` → cache); within one
    folder the full set is preferred. Teaches regression-style losses (CoSENT, AnglE, cosine similarity)
    and Spearman-correlation evaluation. Cite Cer et al., SemEval-2017 Task 1.
    """
    split = _check_split("stsb", split, ("train", "dev", "test"))
    candidates = [f"stsb/{split}.parquet", f"stsb-subset/sts-{split}.tsv"]
    frame, path = _load_file("stsb", candidates, data_dir)
    out = frame.reset_index(drop=True)
    variant = "full" if path.suffix == ".parquet" else "cc-by-sa-subset"
    out.attrs.update(dataset="stsb", split=split, variant=variant, source_files=[str(path)])
    return out


# ----------------------------------------------------------------------------------------------------
# SNLI 1.0: mirror TSVs (dev, test) or the Stanford zip (all three splits) converted to the same TSVs
# ----------------------------------------------------------------------------------------------------
SNLI_ZIP_URL = "https://nlp.stanford.edu/projects/snli/snli_1.0.zip"
SNLI_LABEL_NAMES = ["entailment", "neutral", "contradiction"]
SNLI_ROWS = {"train": 549_367, "dev": 9_842, "test": 9_824}  # pairs with a gold label


def _require_zip_members(path: Path, members: list[str], hint: str = "") -> Path:
    """`path` if the zip holds every one of `members`, else a CorruptDataError naming the missing ones."""
    # A truncated zip has no central directory and fails to open; member CRCs are checked when extracted.
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    missing = [member for member in members if member not in names]
    if missing:
        raise CorruptDataError(f"the archive lacks {missing}{hint}")
    return path


def _parse_snli_zip(path: Path) -> Path:
    return _require_zip_members(path, [f"snli_1.0/snli_1.0_{s}.jsonl" for s in SNLI_ROWS])


def _parse_snli_tsv(split: str) -> Callable[[Path], pd.DataFrame]:
    def parse(path: Path) -> pd.DataFrame:
        # fields holding quotes are CSV-quoted: default quoting, and "NA"/"None" are sentences, not missing
        frame = pd.read_csv(path, sep="\t", keep_default_na=False, dtype={"premise": str, "hypothesis": str})
        if list(frame.columns) != ["premise", "hypothesis", "label"]:
            raise CorruptDataError(f"expected the columns premise, hypothesis, label; found {list(frame.columns)}")
        _check_rows(frame, SNLI_ROWS[split])
        if not frame["label"].isin([0, 1, 2]).all():
            raise CorruptDataError("its labels are not all 0 (entailment), 1 (neutral) or 2 (contradiction)")
        return frame
    return parse


def _fetch_snli_split(spec: DataFile, target: Path, progress: bool) -> None:
    """Make ``snli/snli_1.0_<split>.tsv`` from the Stanford zip (downloaded once into the same folder)."""
    split = re.search(r"snli_1\.0_(\w+)\.tsv", spec.relpath).group(1)
    root = target.parents[1]  # target is <root>/snli/<name>.part
    zip_spec = SOURCES["snli/snli_1.0.zip"]
    zip_path = root / zip_spec.relpath
    if not zip_path.is_file():
        _download_into(zip_spec, root, progress)
    label_ids = {name: i for i, name in enumerate(SNLI_LABEL_NAMES)}  # "-" (no gold label) is left out
    rows = []
    try:
        with zipfile.ZipFile(zip_path) as archive, archive.open(f"snli_1.0/snli_1.0_{split}.jsonl") as handle:
            # streamed: the train jsonl is ~0.5 GB of parse trees, of which we keep three fields
            for line in io.TextIOWrapper(handle, encoding="utf-8"):
                if line.strip():
                    record = json.loads(line)
                    if record["gold_label"] in label_ids:
                        rows.append((record["sentence1"], record["sentence2"], label_ids[record["gold_label"]]))
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        zip_path.unlink()  # damaged: the next attempt downloads it again
        raise CorruptDataError(f"{zip_path} is damaged ({err}); it has been deleted") from err
    pd.DataFrame(rows, columns=["premise", "hypothesis", "label"]).to_csv(target, sep="\t", index=False)


def load_snli(split: str = "dev", data_dir=None) -> pd.DataFrame:
    """SNLI 1.0 sentence pairs with a 3-way inference label (pairs without a gold label removed).

    Columns: ``premise``, ``hypothesis``, ``label`` (0 entailment, 1 neutral, 2 contradiction — the Hugging
    Face convention), ``label_name``. Splits: ``"dev"`` 9,842, ``"test"`` 9,824 (both in the offline
    mirror), ``"train"`` 549,367 (download only: the ~90 MB Stanford zip, fetched once). The default is
    ``"dev"`` because it works offline. Teaches SoftmaxLoss (3-class NLI), contrastive pairs and
    (anchor, positive, negative) triplets for MultipleNegativesRankingLoss: see :func:`snli_pairs` and
    :func:`snli_triplets`. License CC BY-SA 4.0; cite Bowman et al., EMNLP 2015.
    """
    split = _check_split("snli", split, ("dev", "test", "train"))
    frame, path = _load_file("snli", [f"snli/snli_1.0_{split}.tsv"], data_dir)
    out = frame.reset_index(drop=True)
    out["label"] = out["label"].astype(np.int64)
    out["label_name"] = out["label"].map(dict(enumerate(SNLI_LABEL_NAMES))).astype(str)
    out.attrs.update(dataset="snli", split=split, label_names=list(SNLI_LABEL_NAMES), source_files=[str(path)])
    return out


def snli_pairs(split: str = "dev", data_dir=None) -> pd.DataFrame:
    """(anchor, positive) pairs: each premise with a hypothesis it entails. For MultipleNegativesRankingLoss."""
    snli = load_snli(split, data_dir)
    entailed = snli[snli["label"] == 0]
    return pd.DataFrame({"anchor": entailed["premise"], "positive": entailed["hypothesis"]}).reset_index(drop=True)


def snli_triplets(split: str = "dev", data_dir=None) -> pd.DataFrame:
    """(anchor, positive, negative): a premise, a hypothesis it entails and one it contradicts.

    Every (entailment, contradiction) combination of a premise is one row, in file order; premises
    without both kinds are skipped. The contradiction is a *hard* negative: it reuses the premise's words.
    """
    snli = load_snli(split, data_dir)
    entailed = snli.loc[snli["label"] == 0, ["premise", "hypothesis"]]
    contradicted = snli.loc[snli["label"] == 2, ["premise", "hypothesis"]]
    triplets = entailed.merge(contradicted, on="premise", how="inner", suffixes=("_pos", "_neg"))
    return pd.DataFrame({"anchor": triplets["premise"], "positive": triplets["hypothesis_pos"],
                         "negative": triplets["hypothesis_neg"]}).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------
# SciFact (BEIR) and any folder in BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv
# ----------------------------------------------------------------------------------------------------
SCIFACT_ZIP_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip"
# The mirror's files are byte-identical to the zip's members (SOURCE.md): sizes and SHA-256 of both.
SCIFACT_FILES = {
    "corpus.jsonl": (8_106_566, "dec31c8182f3d744c7d2c09423756fd1d17cbef75808db13ba01cc0aab4d1ac6"),
    "queries.jsonl": (209_731, "8ff84a7c903f722981cd8d595c022660140c51867b27608a6d4910db86080313"),
    "qrels/test.tsv": (5_389, "0864bb985e0ca2367ba217977e72004d549054b2b06666ed9d4825ac7c21284c"),
    "qrels/train.tsv": (14_502, "a53f2114831916c096b6c37d9e54da68cef4efdcdbd5ed46533601af972acf1d"),
}
BEIR_QRELS_HEADER = ["query-id", "corpus-id", "score"]


@dataclass(frozen=True)
class RetrievalData:
    """One split of a retrieval collection (BEIR layout), as plain dictionaries keyed by string ids.

    ``corpus``: doc id → text, the title and the text joined by one space and stripped, as BEIR's
    ``SentenceBERT.encode_corpus`` and MTEB do (``(title + " " + text).strip()``), in file order;
    ``queries``: query id → text, only the queries the split's qrels name, in the queries file's order;
    ``qrels``: query id → {doc id: relevance score} (BEIR's ``GenericDataLoader`` structure; a score above 0
    means relevant); ``split``: the qrels file used. ``source`` is the folder the files came from.
    """

    corpus: Dict[str, str]
    queries: Dict[str, str]
    qrels: Dict[str, Dict[str, int]]
    split: str
    name: str = ""
    source: str = ""

    def __repr__(self) -> str:
        pairs = sum(len(docs) for docs in self.qrels.values())
        return (f"RetrievalData({self.name or self.source!r}, split={self.split!r}, corpus={len(self.corpus):,} docs, "
                f"queries={len(self.queries):,}, qrels={pairs:,} pairs)")

    def pairs(self) -> pd.DataFrame:
        """(anchor, positive) rows, one per relevant (query, doc) pair, for MultipleNegativesRankingLoss."""
        rows = [(self.queries[qid], self.corpus[did]) for qid, docs in self.qrels.items()
                for did, score in docs.items() if score > 0]
        return pd.DataFrame(rows, columns=["anchor", "positive"])

    def with_queries(self, query_ids: Iterable[str], split: Optional[str] = None) -> "RetrievalData":
        """The same corpus with only `query_ids` (and their qrels)."""
        wanted = list(query_ids)
        missing = [q for q in wanted if q not in self.queries]
        if missing:
            raise ValueError(f"{_few(missing)} query ids are not in {self!r}")
        return RetrievalData(self.corpus, {q: self.queries[q] for q in wanted},
                             {q: self.qrels[q] for q in wanted if q in self.qrels},
                             split or self.split, self.name, self.source)

    def split_queries(self, dev_size: Union[int, float] = 0.1, seed: int = 42) -> Tuple["RetrievalData", "RetrievalData"]:
        """(rest, dev): a random `dev_size` share (or number) of the queries held out for model selection.

        Both keep the whole corpus (a dev query must be able to retrieve any document); no query is in both.
        Carve dev from *train*, never from test: the test queries are read once, at the end.
        """
        ids = list(self.queries)
        count = int(round(dev_size * len(ids))) if isinstance(dev_size, float) else int(dev_size)
        if not 1 <= count < len(ids):
            raise ValueError(f"dev_size={dev_size!r} gives {count} dev queries out of {len(ids)}; "
                             f"ask for at least 1 and fewer than all of them")
        order = np.random.default_rng(seed).permutation(len(ids))
        dev = sorted(order[:count].tolist())
        rest = sorted(order[count:].tolist())
        return (self.with_queries([ids[i] for i in rest]),
                self.with_queries([ids[i] for i in dev], split=f"{self.split}-dev"))

    def sample_corpus(self, size: int, seed: int = 42) -> "RetrievalData":
        """A smaller corpus of `size` documents: every document the qrels call relevant, plus random others.

        Cheaper to evaluate than the whole corpus, and easier (fewer distractors): use it to *choose* between
        checkpoints during training, not to report results.
        """
        relevant = {d for docs in self.qrels.values() for d, score in docs.items() if score > 0 and d in self.corpus}
        if size >= len(self.corpus):
            return self
        if size < len(relevant):
            raise ValueError(f"sample_corpus(size={size}) cannot hold the {len(relevant)} relevant documents of "
                             f"{len(self.qrels)} queries; ask for at least {len(relevant)}")
        others = [d for d in self.corpus if d not in relevant]
        drawn = np.random.default_rng(seed).choice(len(others), size - len(relevant), replace=False)
        keep = relevant | {others[i] for i in drawn.tolist()}
        corpus = {d: text for d, text in self.corpus.items() if d in keep}  # file order kept
        return RetrievalData(corpus, dict(self.queries), dict(self.qrels), self.split, self.name, self.source)


def _few(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:limit])
    return f"{len(ids)} ({shown}{', …' if len(ids) > limit else ''})"


def _read_beir_jsonl(path: Path, what: str) -> Dict[str, dict]:
    """``_id`` → record of a BEIR JSONL file; a broken line, a record without ``_id``/``text`` or a repeated
    id is a ValueError naming the line."""
    records: Dict[str, dict] = {}
    repeated = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {number} is not JSON ({err}): each line must be one {what} "
                                 f"object") from err
            if not isinstance(record, dict) or "_id" not in record or "text" not in record:
                raise ValueError(f"{path} line {number} has no \"_id\" and \"text\" fields: a BEIR {what} line "
                                 f"reads {{\"_id\": \"...\", \"text\": \"...\"}}")
            key = str(record["_id"])  # ids stay strings: "0" and 0 must not look different
            if key in records:
                repeated.append(key)
            records[key] = record
    if repeated:
        raise ValueError(f"{path} repeats {_few(repeated)} {what} id(s); every _id must be unique")
    return records


def _read_beir_qrels(path: Path) -> Dict[str, Dict[str, int]]:
    """query id → {doc id: score} of a BEIR qrels TSV (header ``query-id  corpus-id  score``)."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    if list(frame.columns) != BEIR_QRELS_HEADER:
        raise ValueError(f"{path} has the columns {list(frame.columns)}; a BEIR qrels file is tab-separated "
                         f"with the header {chr(9).join(BEIR_QRELS_HEADER)}")
    scores = pd.to_numeric(frame["score"], errors="coerce")
    bad = scores.isna() | (scores != np.round(scores)) | (frame["query-id"] == "") | (frame["corpus-id"] == "")
    if bad.any():
        raise ValueError(f"{path}: {_rows(bad)} lack an id or an integer score")
    frame = frame.assign(score=scores.astype(np.int64)).drop_duplicates()
    clashes = frame.duplicated(["query-id", "corpus-id"], keep=False)
    if clashes.any():
        pairs = sorted(set(zip(frame.loc[clashes, "query-id"], frame.loc[clashes, "corpus-id"])))
        raise ValueError(f"{path} gives {_few(pairs)} (query, doc) pair(s) two different scores; keep one row each")
    qrels: Dict[str, Dict[str, int]] = {}
    for qid, did, score in zip(frame["query-id"], frame["corpus-id"], frame["score"]):
        qrels.setdefault(qid, {})[did] = int(score)
    return qrels


def _beir_data(corpus_path: Path, queries_path: Path, qrels_path: Path, split: str, name: str) -> RetrievalData:
    """Read and cross-check the three files of one split (see :func:`load_beir` for the checks)."""
    docs = _read_beir_jsonl(corpus_path, "document")
    all_queries = _read_beir_jsonl(queries_path, "query")
    qrels = _read_beir_qrels(qrels_path)
    if not qrels:
        raise ValueError(f"{qrels_path} has no rows: the {split!r} split has no relevance judgements")
    no_query = [qid for qid in qrels if qid not in all_queries]
    no_doc = sorted({did for judged in qrels.values() for did in judged if did not in docs})
    if no_query or no_doc:
        raise ValueError(
            f"{qrels_path} names ids its collection lacks: " + "; ".join(
                part for part in (f"{_few(no_query)} query id(s) not in {queries_path.name}" if no_query else "",
                                  f"{_few(no_doc)} doc id(s) not in {corpus_path.name}" if no_doc else "") if part)
            + ". The qrels and the files must come from the same collection (and version).")
    queries = {qid: str(record["text"]) for qid, record in all_queries.items() if qid in qrels}
    empty = [qid for qid, text in queries.items() if not text.strip()]
    if empty:
        raise ValueError(f"{queries_path}: {_few(empty)} quer(ies) of the {split!r} split have an empty text; "
                         f"fix or drop them (and their qrels rows)")
    corpus = {did: (str(record.get("title") or "") + " " + str(record["text"])).strip() for did, record in docs.items()}
    blank = [did for did, text in corpus.items() if not text]
    if blank:
        raise ValueError(f"{corpus_path}: {_few(blank)} document(s) have neither a title nor a text")
    return RetrievalData(corpus, queries, qrels, split, name, str(corpus_path.parent))


def load_beir(folder, split: str = "test", name: str = "") -> RetrievalData:
    """Read any folder in BEIR layout: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

    Returns a :class:`RetrievalData`: the whole corpus, the queries the split's qrels name, and the qrels.
    Every file is checked, and what is wrong is said with the ids concerned: a missing file (the qrels
    files the folder does have are listed), a line that is not JSON or lacks ``_id``/``text``, a repeated
    id, a qrels file without the ``query-id corpus-id score`` header or with non-integer scores, one pair
    given two scores, qrels naming query or doc ids that are not in the files (how many, which), an empty
    query text, a document with neither title nor text.

    Example::

        data = load_beir("~/beir/nfcorpus", split="test")
        data.queries["PLAIN-3"], data.qrels["PLAIN-3"]
    """
    folder = Path(folder).expanduser()
    if not isinstance(split, str) or not split or "/" in split:
        raise ValueError(f"split must be the name of a qrels file (e.g. 'test' for qrels/test.tsv), got {split!r}")
    paths = {"corpus": folder / "corpus.jsonl", "queries": folder / "queries.jsonl",
             "qrels": folder / "qrels" / f"{split}.tsv"}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise FileNotFoundError(f"{folder} is not a BEIR folder for split {split!r}: missing {', '.join(missing)}. "
                                f"A BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv"
                                + (f"; its qrels splits are: {', '.join(have)}" if have else ""))
    return _beir_data(paths["corpus"], paths["queries"], paths["qrels"], split, name or folder.name)


def _parse_scifact_zip(path: Path) -> Path:
    return _require_zip_members(path, [f"scifact/{m}" for m in SCIFACT_FILES], ": it is not BEIR's scifact.zip")


def _check_size(member: str) -> Callable[[Path], Path]:
    def parse(path: Path) -> Path:
        size, expected = path.stat().st_size, SCIFACT_FILES[member][0]
        if size != expected:
            raise CorruptDataError(f"it has {size:,} bytes, expected {expected:,}")
        return path
    return parse


def _fetch_scifact_member(spec: DataFile, target: Path, progress: bool) -> None:
    """Extract one member of BEIR's ``scifact.zip`` (downloaded once into the same folder) to ``target``."""
    root = target.parents[len(Path(spec.relpath).parts) - 1]  # target is <root>/scifact/[qrels/]<name>.part
    zip_spec = SOURCES["scifact/scifact.zip"]
    zip_path = root / zip_spec.relpath
    if not zip_path.is_file():
        _download_into(zip_spec, root, progress)
    member = spec.relpath  # the zip holds scifact/corpus.jsonl, scifact/qrels/test.tsv, ...
    try:
        with zipfile.ZipFile(zip_path) as archive, archive.open(member) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out)
        _read_checked(spec, target)
    except (zipfile.BadZipFile, KeyError, CorruptDataError) as err:
        zip_path.unlink()  # damaged or altered: the next attempt downloads it again
        raise CorruptDataError(f"{member} in {zip_path} is damaged ({err}); the zip has been deleted") from err


def load_scifact(split: str = "test", data_dir=None) -> RetrievalData:
    """SciFact (BEIR version): 5,183 scientific abstracts; claims as queries; binary qrels.

    Splits: ``"test"`` (300 claims, 339 relevant pairs; it is SciFact's dev split, the test labels were never
    released) and ``"train"`` (809 claims, 919 pairs). Both splits share one corpus and one queries file; a
    split's queries are those its qrels name. Returns a :class:`RetrievalData` (``.corpus``, ``.queries``,
    ``.qrels``; ``.pairs()`` gives (anchor, positive) rows for training). There is no dev split: carve one
    from train's queries. Files: from a data folder (``scifact/``, the mirror's layout) or BEIR's
    ``scifact.zip`` (downloaded once), every file checked by size and SHA-256.

    License CC BY-NC 2.0 (non-commercial). Cite Wadden et al., EMNLP 2020, and Thakur et al., NeurIPS 2021.
    """
    split = _check_split("scifact", split, ("train", "test"))
    paths = [_load_file("scifact", [f"scifact/{member}"], data_dir)[1]
             for member in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv")]
    return _beir_data(*paths, split=split, name="scifact")


def _pair_columns(table: pd.DataFrame, path: Path, query_column: Optional[str], passage_column: Optional[str],
                  negative_columns: Optional[Sequence[str]]) -> Tuple[str, str, List[str]]:
    """The (query, passage, negatives) columns: as given, or found by their usual names."""
    def first(candidates, role):
        found = next((c for c in candidates if c in table.columns), None)
        if found is None:
            raise ValueError(f"{path} has no {role} column (looked for {', '.join(candidates)}); its columns are "
                             f"{', '.join(map(str, table.columns))}: pass {role}_column=...")
        return found
    query = first([query_column] if query_column else ["query", "anchor", "question"], "query")
    passage = first([passage_column] if passage_column else ["passage", "positive", "document", "answer"], "passage")
    if negative_columns is None:
        negative_columns = [c for c in table.columns if str(c).startswith("negative")]
    for column in negative_columns:
        first([column], "negative")
    return query, passage, list(negative_columns)


def load_pairs(path, query_column: Optional[str] = None, passage_column: Optional[str] = None,
               negative_columns: Optional[Sequence[str]] = None, sep: Optional[str] = None) -> pd.DataFrame:
    """Your own (query, passage[, negative, …]) file (CSV / TSV / JSONL / JSON / parquet) as training rows.

    Returns the columns ``anchor``, ``positive`` and, with hard negatives, ``negative`` (one) or
    ``negative_1``, … ``negative_n`` (several), the names sentence-transformers' MultipleNegativesRankingLoss
    datasets use. Columns are found by name unless given: query ``query``/``anchor``/``question``, passage
    ``passage``/``positive``/``document``/``answer``, negatives every column whose name starts with
    ``negative``. Empty or non-text cells are an error naming the rows.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    table = _read_table(path, sep, [])
    query, passage, negatives = _pair_columns(table, path, query_column, passage_column, negative_columns)
    if path.suffix.lower() in (".csv", ".tsv") or sep is not None:
        table = _read_table(path, sep, [query, passage, *negatives])  # again, so texts like "123" stay strings
    names = ["anchor", "positive"] + (["negative"] if len(negatives) == 1 else
                                      [f"negative_{i}" for i in range(1, len(negatives) + 1)])
    out = pd.DataFrame(index=table.index)
    for name, column in zip(names, [query, passage] + negatives):
        values = table[column]
        is_text = values.map(lambda v: isinstance(v, str) and v.strip() != "")
        if not is_text.all():
            raise ValueError(f"{path}: column {column!r} has empty or non-text values in {_rows(~is_text)}; "
                             f"drop or fix those rows")
        out[name] = values.astype(str)
    out = out.reset_index(drop=True)
    out.attrs["source_files"] = [str(path)]
    return out


# ----------------------------------------------------------------------------------------------------
# The registry of files and datasets
# ----------------------------------------------------------------------------------------------------
def _registry() -> Dict[str, DataFile]:
    files = [
        *(DataFile(f"banking77/{name}", BANKING77_URL + name,
                   _parse_json if name.endswith(".json") else _parse_banking_csv, sha, _fetch_url)
          for name, sha in BANKING77_SHA256.items()),
        *(DataFile(f"gutenberg/{book.filename}", book.url, _parse_book(book), fetch=_fetch_url) for book in BOOKS),
        DataFile("snli/snli_1.0.zip", SNLI_ZIP_URL, _parse_snli_zip, fetch=_fetch_url),
        *(DataFile(f"snli/snli_1.0_{split}.tsv", SNLI_ZIP_URL, _parse_snli_tsv(split), fetch=_fetch_snli_split)
          for split in SNLI_ROWS),
        *(DataFile(f"stsb/{split}.parquet",
                   hub_file_url(STSB_HUB_REPO, f"data/{hub_split}-00000-of-00001.parquet", STSB_HUB_REVISION),
                   _parse_stsb_full(split), fetch=_fetch_hub)
          for split, hub_split in STSB_HUB_SPLITS.items()),
        *(DataFile(f"stsb-subset/sts-{split}.tsv", None, _parse_stsb_subset(split)) for split in STSB_SUBSET_ROWS),
        DataFile("scifact/scifact.zip", SCIFACT_ZIP_URL, _parse_scifact_zip, fetch=_fetch_url),
        *(DataFile(f"scifact/{member}", SCIFACT_ZIP_URL, _check_size(member), sha, _fetch_scifact_member)
          for member, (_, sha) in SCIFACT_FILES.items()),
    ]
    return {spec.relpath: spec for spec in files}


SOURCES: Dict[str, DataFile] = _registry()


@dataclass(frozen=True)
class DatasetInfo:
    """What the data card says about one dataset (see data/README.md)."""

    name: str
    title: str
    loader: Callable[..., pd.DataFrame]
    splits: Tuple[str, ...]
    columns: Tuple[str, ...]
    size: str
    source_url: str
    license: str
    citation: str
    teaches: str
    # alternatives per split: download() makes the first one available in the cache
    files: Tuple[Tuple[str, ...], ...] = field(default=(), repr=False)


DATASETS: Dict[str, DatasetInfo] = {
    "banking77": DatasetInfo(
        "banking77", "Banking77 intent detection", load_banking77, ("train", "test"),
        ("text", "label", "label_name"),
        "13,083 queries (10,003 train / 3,080 test), 77 intent classes (35–187 train examples each)",
        "https://github.com/PolyAI-LDN/task-specific-datasets (banking_data/, commit 57ec275)",
        "CC BY 4.0",
        "Casanueva, Temčinas, Gerz, Henderson, Vulić. Efficient Intent Detection with Dual Sentence Encoders. "
        "NLP4ConvAI @ ACL 2020. arXiv:2003.04807",
        "many classes of short, similar texts: P×K batches, batch-hard / batch-all triplet losses, retrieval metrics",
        files=tuple((f"banking77/{name}",) for name in BANKING77_SHA256),
    ),
    "books": DatasetInfo(
        "books", "Four Gutenberg books by chapter (the hard-triplet article's dataset)", load_books,
        ("train", "dev", "test"), ("text", "label", "label_name", "book"),
        "13,964 passages of 40 words (12,000 train / 964 dev / 1,000 test), 70 chapter classes, 4 books",
        "https://www.gutenberg.org/ebooks/4300, /2814, /345, /1497",
        "public domain (text from Project Gutenberg)",
        "Joyce, Ulysses; Joyce, Dubliners; Stoker, Dracula; Plato, The Republic (tr. Jowett) — Project Gutenberg. "
        "Task after R. J. N. Clarke, 'Fine-tune an embedding model with triplet margin loss in PyTorch', Medium 2024",
        "hard negatives: chapters of the same book share style; triplet margin loss and online mining",
        files=tuple((f"gutenberg/{book.filename}",) for book in BOOKS),
    ),
    "stsb": DatasetInfo(
        "stsb", "STS Benchmark (semantic textual similarity)", load_stsb, ("train", "dev", "test"),
        ("sentence1", "sentence2", "score"),
        "full: 8,628 pairs (5,749 / 1,500 / 1,379); offline CC BY-SA subset: 1,750 (1,000 / 375 / 375); score 0–1",
        "https://huggingface.co/datasets/sentence-transformers/stsb (from http://ixa2.si.ehu.eus/stswiki)",
        "scores CC BY-SA 4.0; texts: mixed sources (the offline subset is the plainly CC BY-SA part)",
        "Cer, Diab, Agirre, Lopez-Gazpio, Specia. SemEval-2017 Task 1: Semantic Textual Similarity Multilingual "
        "and Crosslingual Focused Evaluation. SemEval 2017",
        "graded similarity: CoSENT / AnglE / cosine-similarity regression losses, Spearman evaluation",
        files=tuple((f"stsb/{split}.parquet", f"stsb-subset/sts-{split}.tsv") for split in STSB_HUB_SPLITS),
    ),
    "snli": DatasetInfo(
        "snli", "Stanford Natural Language Inference 1.0", load_snli, ("dev", "test", "train"),
        ("premise", "hypothesis", "label", "label_name"),
        "569,033 gold-labelled pairs (549,367 train / 9,842 dev / 9,824 test), 3 classes",
        "https://nlp.stanford.edu/projects/snli/ (snli_1.0.zip)",
        "CC BY-SA 4.0",
        "Bowman, Angeli, Potts, Manning. A large annotated corpus for learning natural language inference. EMNLP 2015",
        "pairs and triplets: SoftmaxLoss, contrastive loss, MultipleNegativesRankingLoss with hard negatives",
        files=tuple((f"snli/snli_1.0_{split}.tsv",) for split in ("dev", "test", "train")),
    ),
    "scifact": DatasetInfo(
        "scifact", "SciFact claims against scientific abstracts (BEIR retrieval)", load_scifact, ("train", "test"),
        ("corpus", "queries", "qrels"),
        "5,183 abstracts; 809 train / 300 test claims; 919 / 339 relevant (claim, abstract) pairs, binary",
        SCIFACT_ZIP_URL,
        "CC BY-NC 2.0 (non-commercial)",
        "Wadden, Lin, Lo, Wang, van Zuylen, Cohan, Hajishirzi. Fact or Fiction: Verifying Scientific Claims. "
        "EMNLP 2020; Thakur, Reimers, Rücklé, Srivastava, Gurevych. BEIR: A Heterogeneous Benchmark for Zero-shot "
        "Evaluation of Information Retrieval Models. NeurIPS 2021 Datasets and Benchmarks",
        "retrieval: fine-tune on (claim, abstract) pairs with MultipleNegativesRankingLoss; NDCG@10, MRR@10, Recall@k",
        files=tuple((f"scifact/{member}",) for member in SCIFACT_FILES),
    ),
}


def describe(name: Optional[str] = None) -> pd.DataFrame:
    """A table of the datasets (or one of them): size, source, license, citation and what each teaches."""
    names = list(DATASETS) if name is None else [_check_name(name)]
    rows = [{"name": info.name, "title": info.title, "splits": ", ".join(info.splits),
             "columns": ", ".join(info.columns), "size": info.size, "source": info.source_url,
             "license": info.license, "citation": info.citation, "teaches": info.teaches}
            for info in (DATASETS[n] for n in names)]
    return pd.DataFrame(rows).set_index("name")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; the known datasets are: {', '.join(DATASETS)}")
    return name.lower()


_SPLIT_ALIASES = {"validation": "dev", "val": "dev", "valid": "dev"}


def _check_split(dataset: str, split: str, allowed: Tuple[str, ...]) -> str:
    split = _SPLIT_ALIASES.get(split, split) if isinstance(split, str) else split
    if split not in allowed:
        raise ValueError(f"{dataset} has no split {split!r}; choose one of {', '.join(allowed)}")
    return split


def load_dataset(name: str, split: Optional[str] = None, **kwargs) -> pd.DataFrame:
    """Load a dataset by name (``"banking77"``, ``"books"``, ``"stsb"``, ``"snli"``, ``"scifact"``); ``split=None``
    means the loader's default (train, except SNLI: dev, SciFact: test). Extra keyword arguments go to the
    loader. SciFact gives a :class:`RetrievalData`, not a DataFrame."""
    loader = DATASETS[_check_name(name)].loader
    return loader(**kwargs) if split is None else loader(split, **kwargs)


# ----------------------------------------------------------------------------------------------------
# Prefetching for a workshop on bad Wi-Fi
# ----------------------------------------------------------------------------------------------------
def _ensure_cached(dataset: str, candidates: Sequence[str], data_dir, progress: bool) -> Path:
    """Make one of ``candidates`` present and valid in the cache: keep it, copy it from a data folder, or fetch it."""
    cache = cache_dir()
    for relpath in candidates:
        path = cache / relpath
        if path.is_file():
            try:
                _read_checked(SOURCES[relpath], path)
                return path
            except CorruptDataError as err:
                warnings.warn(f"{path} in the labkit cache is corrupt ({err}); deleting it and fetching it again")
                path.unlink()
    for how, folder in _user_folders(data_dir):
        for relpath in candidates:
            source = folder / relpath
            if source.is_file():
                path, _ = _install(SOURCES[relpath], cache, lambda temp: shutil.copyfile(source, temp))
                return path
    _, path = _load_file(dataset, [r for r in candidates if SOURCES[r].fetch is not None], None, progress)
    return path


def download(names: Union[str, Iterable[str], None] = None, data_dir=None,
             progress: bool = True) -> Dict[str, List[Path]]:
    """Prefetch datasets into the cache (``$LABKIT_CACHE_DIR``, default ``~/.cache/labkit/datasets``).

    ``names``: a dataset name, a list of them, or ``None`` for all (``banking77``, ``books``, ``stsb``,
    ``snli``, ``scifact``; SNLI includes its ~90 MB train zip, SciFact BEIR's ~3 MB zip). Files already valid
    in the cache are kept; files in
    ``data_dir`` or ``$LABKIT_DATA_DIR`` (folders laid out like the mirror) are checked and copied;
    the rest are downloaded from their original sources with a progress bar. Returns the cached paths
    per dataset. Used by ``python -m labkit download [NAMES] [--data-dir DIR]``.
    """
    if names is None:
        wanted = list(DATASETS)
    else:
        wanted = [_check_name(n) for n in ([names] if isinstance(names, str) else list(names))]
    done: Dict[str, List[Path]] = {}
    failures = []
    for name in wanted:
        done[name] = []
        for candidates in DATASETS[name].files:
            try:
                done[name].append(_ensure_cached(name, candidates, data_dir, progress))
            except (DataUnavailableError, CorruptDataError) as err:
                failures.append(str(err))
        if progress:
            print(f"{name}: {len(done[name])} of {len(DATASETS[name].files)} files ready in {cache_dir()}")
    if failures:
        raise DataUnavailableError(f"{len(failures)} file(s) could not be fetched:\n\n" + "\n\n".join(failures))
    return done


# ----------------------------------------------------------------------------------------------------
# Your own data
# ----------------------------------------------------------------------------------------------------
_READERS = {".csv": ",", ".tsv": "\t", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


def _read_table(path: Path, sep: Optional[str], text_columns: Sequence[str], encoding: str = "utf-8") -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in _READERS and sep is None:
        raise ValueError(f"cannot read {path}: unknown file type {suffix!r}. Use one of "
                         f"{', '.join(_READERS)} (or pass sep=... for another delimited text file)")
    kind = sep if sep is not None else _READERS[suffix]
    if kind != "parquet":
        _check_text_file(path, encoding)
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        if kind == "jsonl":
            return pd.read_json(path, lines=True, dtype=False, encoding=encoding)
        if kind == "json":
            return pd.read_json(path, dtype=False, encoding=encoding)
        # texts stay strings ("NA", "123"); only empty cells are missing
        return pd.read_csv(path, sep=kind, keep_default_na=False, na_values=[""],
                           dtype={c: str for c in text_columns}, encoding=encoding)
    except UnicodeDecodeError:
        raise _not_in_encoding(path, encoding) from None
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise ValueError(f"cannot read {path} as {kind!r} ({type(err).__name__}: {err}); check the format "
                         f"or pass sep=...") from err


def _check_text_file(path: Path, encoding: str) -> None:
    """Refuse an unknown encoding, an empty file or a binary one (from its first 8 KB) before parsing it."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}: use e.g. utf-8, latin-1 or cp1252") from None
    with open(path, "rb") as file:
        head = file.read(8192)
    if not head.strip():
        raise ValueError(f"{path} is empty: it needs a header line and data rows")
    nul = head.find(b"\0")  # text tables have no NUL bytes; binary files have them early
    if nul >= 0:
        raise ValueError(f"{path} looks like a binary file (a NUL byte at offset {nul}), not a CSV/TSV/JSONL "
                         "text table: export the data as CSV (or parquet) first")


def _not_in_encoding(path: Path, encoding: str) -> ValueError:
    """The error for a file that does not decode as `encoding`: where (byte offset, line) and the fix.

    Only runs once parsing has failed: it decodes the file again, to find the first bad byte.
    """
    raw = path.read_bytes()
    try:
        raw.decode(encoding)
        where = ""
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        where = f": byte 0x{raw[err.start]:02x} at offset {err.start} (line {line}) cannot be decoded"
    return ValueError(f"{path} is not {encoding} text{where}. If it is latin-1 / cp1252, pass encoding='latin-1' "
                      "(command line: --encoding latin-1), or re-save the file as UTF-8")


def _rows(mask: pd.Series) -> str:
    bad = np.flatnonzero(mask.to_numpy())
    shown = ", ".join(str(i) for i in bad[:10])
    return f"{len(bad)} row(s), data rows {shown}{' …' if len(bad) > 10 else ''} (counting from 0)"


def from_file(path, text_column: str = "text", label_column: Optional[str] = None,
              score_column: Optional[str] = None, text_pair_column: Optional[str] = None,
              sep: Optional[str] = None, encoding: str = "utf-8") -> pd.DataFrame:
    """Load your own CSV / TSV / JSONL / JSON / parquet file into the columns labkit expects.

    Returns ``text`` [, ``text_pair``] [, ``label`` (int), ``label_name``] [, ``score`` (float)].
    String labels become ints 0..K-1 in sorted order of the names (kept in ``label_name`` and in
    ``df.attrs["label_names"]``); integer labels are kept as they are. Scores are kept as given.

    ``encoding``: of a CSV / TSV / JSON(L) file (parquet files carry their own); e.g. ``"latin-1"``.

    Clear errors for: a missing column (lists the columns the file has), empty or non-string texts and
    missing labels or scores (says which rows), an unknown file type (lists the types that work), an empty
    or binary file, a header without rows, and a file that is not in ``encoding`` (says where).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    text_columns = [c for c in (text_column, text_pair_column) if c is not None]
    table = _read_table(path, sep, text_columns, encoding)
    if len(table) == 0:
        raise ValueError(f"{path} has a header but no rows: add data rows below the header "
                         f"({', '.join(map(str, table.columns))})")
    wanted = {"text": text_column, "text_pair": text_pair_column, "label": label_column, "score": score_column}
    for role, column in wanted.items():
        if column is not None and column not in table.columns:
            raise ValueError(f"{path} has no column {column!r} (asked for as the {role} column); its columns "
                             f"are: {', '.join(map(str, table.columns))}")
    out = pd.DataFrame(index=table.index)
    for role in ("text", "text_pair"):
        if wanted[role] is None:
            continue
        values = table[wanted[role]]
        is_text = values.map(lambda v: isinstance(v, str) and v.strip() != "")
        if not is_text.all():
            raise ValueError(f"{path}: column {wanted[role]!r} has empty or non-text values in {_rows(~is_text)}; "
                             f"drop or fix those rows")
        out[role] = values.astype(str)
    if label_column is not None:
        labels = table[label_column]
        if labels.isna().any():
            raise ValueError(f"{path}: column {label_column!r} has missing labels in {_rows(labels.isna())}; "
                             f"drop or fill those rows")
        if pd.api.types.is_integer_dtype(labels) or (
                pd.api.types.is_float_dtype(labels) and (labels == np.round(labels)).all()):
            out["label"] = labels.astype(np.int64)
            out["label_name"] = out["label"].astype(str)
            label_names = [str(v) for v in sorted(out["label"].unique())]
        else:
            names = labels.astype(str)
            label_names = sorted(names.unique())
            out["label"] = pd.Categorical(names, categories=label_names).codes.astype(np.int64)
            out["label_name"] = names
        out.attrs["label_names"] = label_names
    if score_column is not None:
        scores = pd.to_numeric(table[score_column], errors="coerce")
        if scores.isna().any():
            raise ValueError(f"{path}: column {score_column!r} has missing or non-numeric scores in "
                             f"{_rows(scores.isna())}")
        out["score"] = scores.astype(np.float64)
    out = out.reset_index(drop=True)
    out.attrs["source_files"] = [str(path)]
    return out


def train_dev_split(frame: pd.DataFrame, dev_size: Union[float, int] = 0.1, label_column: str = "label",
                    seed: int = 42) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Carve a deterministic, stratified dev set out of a training DataFrame: returns (train, dev).

    ``dev_size``: a fraction (0 < f < 1) or a number of rows. Each class gives dev rows in proportion to its
    size (largest-remainder rounding) but always keeps at least one row in train; which rows go is fixed
    by ``seed``. Row order inside each part follows the input. Banking77 has no dev split: this makes one.
    """
    if label_column not in frame.columns:
        raise ValueError(f"no column {label_column!r} to stratify on; the columns are "
                         f"{', '.join(map(str, frame.columns))}")
    n = len(frame)
    total = int(round(dev_size * n)) if isinstance(dev_size, float) else int(dev_size)
    if isinstance(dev_size, float) and not 0 < dev_size < 1 or not 0 < total < n:
        raise ValueError(f"dev_size must be a fraction in (0, 1) or a row count in [1, {n - 1}], got {dev_size!r}")
    labels = frame[label_column].reset_index(drop=True)
    counts = labels.value_counts(sort=False)
    per_class = _allocate(counts, total).clip(upper=counts - 1)
    order = pd.Series(_stable_ranks(n, seed))
    rank = order.groupby(labels).rank(method="first").astype(np.int64) - 1  # 0-based position inside its class
    is_dev = (rank < labels.map(per_class)).to_numpy()
    train = frame.iloc[np.flatnonzero(~is_dev)].reset_index(drop=True)
    dev = frame.iloc[np.flatnonzero(is_dev)].reset_index(drop=True)
    return train, dev


def stratified_subset(frame: pd.DataFrame, size: int, label_column: str = "label", seed: int = 42) -> pd.DataFrame:
    """``size`` rows of ``frame`` with every class's share kept; all rows when ``size`` is 0 or not smaller.

    How notebooks cut a split down to ``lab.budget.train_subset`` / ``eval_subset`` (the same rows on every run).
    """
    if not size or size >= len(frame):
        return frame
    return train_dev_split(frame, dev_size=int(size), label_column=label_column, seed=seed)[1]


def drop_small_classes(frame: pd.DataFrame, min_size: int, label_column: str = "label") -> pd.DataFrame:
    """Only the rows of classes with at least ``min_size`` rows (a P×K sampler needs K of a class)."""
    if label_column not in frame.columns:
        raise ValueError(f"no column {label_column!r}; the columns are {', '.join(map(str, frame.columns))}")
    counts = frame[label_column].value_counts()
    keep = frame[label_column].isin(counts[counts >= min_size].index)
    return frame[keep].reset_index(drop=True)
