"""Tests for labkit.data: loaders against the read-only mirror, the lookup order, atomic verified downloads.

Expected sizes and class counts come from the mirror's SOURCE.md files and the original papers, or are
recomputed here from the raw files with the csv module and plain loops (never copied from labkit).
Every test runs with an empty temporary cache and LABKIT_DATA_DIR unset, and never writes to the mirror.
"""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import time
import zipfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labkit import data


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """An empty cache in tmp_path, no LABKIT_DATA_DIR, and no real network unless a test asks for it."""
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LABKIT_DATA_DIR", raising=False)
    return tmp_path / "cache"


def no_network(url, timeout):
    raise AssertionError(f"unexpected download of {url}")


class FakeResponse(io.BytesIO):
    """What urlopen returns, serving local bytes; ``announced`` fakes the Content-Length header."""

    def __init__(self, body: bytes, announced=None, fail_after=None):
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body) if announced is None else announced)}
        self.fail_after = fail_after

    def read(self, size=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        return super().read(size)


def serve(monkeypatch, files: dict, **response_kwargs) -> list:
    """Make ``_open_url`` serve {url: bytes}; returns the list of URLs requested."""
    requested = []

    def fake_open(url, timeout):
        requested.append(url)
        if url not in files:
            raise OSError(f"404 for {url}")
        return FakeResponse(files[url], **response_kwargs)

    monkeypatch.setattr(data, "_open_url", fake_open)
    return requested


def leftovers(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ------------------------------------------------------------------------------------------------------
# Banking77
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split, rows", [("train", 10_003), ("test", 3_080)])
def test_banking77_rows_labels_and_text_match_the_raw_csv(data_dir, monkeypatch, split, rows):
    monkeypatch.setattr(data, "_open_url", no_network)
    df = data.load_banking77(split, data_dir=data_dir)
    with open(data_dir / "banking77" / f"{split}.csv", newline="", encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))
    # documented order: alphabetical ignoring case
    categories = sorted(json.loads((data_dir / "banking77" / "categories.json").read_text()), key=str.lower)
    assert list(df.columns) == ["text", "label", "label_name"]
    assert len(df) == len(raw) == rows
    assert df["text"].tolist() == [r["text"] for r in raw]
    assert df["label_name"].tolist() == [r["category"] for r in raw]
    assert df["label"].tolist() == [categories.index(r["category"]) for r in raw]
    assert df["label"].dtype == np.int64 and df["label"].nunique() == 77 == len(categories)
    assert df.attrs["label_names"] == categories


def test_banking77_train_class_sizes_match_source_md(data_dir):
    counts = data.load_banking77("train", data_dir=data_dir)["label"].value_counts()
    assert (counts.min(), counts.max()) == (35, 187)  # SOURCE.md: 35–187 training examples per class


# ------------------------------------------------------------------------------------------------------
# The four books
# ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def books(data_dir):
    return {split: data.load_books(split, data_dir=data_dir) for split in ("train", "dev", "test")}


def test_books_split_sizes_and_70_classes_in_every_split(books):
    assert {s: len(df) for s, df in books.items()} == {"train": 12_000, "dev": 964, "test": 1_000}
    for df in books.values():
        assert list(df.columns) == ["text", "label", "label_name", "book"]
        assert sorted(df["label"].unique()) == list(range(70))
        assert set(df["book"]) == {"Ulysses", "Dubliners", "Dracula", "The Republic"}
        assert all(len(text.split()) == 40 for text in df["text"])
        # one name per label, and the name says the book
        pairs = df[["label", "label_name", "book"]].drop_duplicates()
        assert len(pairs) == 70
        assert all(name.startswith(book + " — ") for name, book in zip(pairs["label_name"], pairs["book"]))
    names = set(books["train"]["label_name"])
    assert {"Dracula — Chapter III", "Ulysses — Episode 18", "Dubliners — The Dead", "The Republic — Book X"} \
        <= names
    chapters_per_book = books["train"].groupby("book")["label"].nunique().to_dict()
    assert chapters_per_book == {"Ulysses": 18, "Dubliners": 15, "Dracula": 27, "The Republic": 10}


def test_books_splits_do_not_leak_and_are_stratified(books):
    train, dev, test = (set(books[s]["text"]) for s in ("train", "dev", "test"))
    assert len(train) == 12_000 and len(dev) == 964 and len(test) == 1_000  # no duplicate inside a split
    assert not (train & dev) and not (train & test) and not (dev & test)
    # every class gets the same share of each split (up to rounding)
    train_counts = books["train"]["label"].value_counts().sort_index()
    test_counts = books["test"]["label"].value_counts().sort_index()
    expected_test = train_counts * 1_000 / 12_000
    assert (test_counts - expected_test).abs().max() < 2


def test_books_are_deterministic_and_seeded(books, data_dir):
    again = data.load_books("test", data_dir=data_dir)
    pd.testing.assert_frame_equal(books["test"], again)
    other = data.load_books("test", data_dir=data_dir, seed=7)
    assert len(other) == 1_000 and set(other["text"]) != set(books["test"]["text"])


def _words_with_chapter(path: Path, is_heading) -> tuple:
    """Naive reference: walk the raw file line by line; a heading line starts the next chapter."""
    words, chapters, chapter = [], [], 0
    text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    for line in text.split("\n"):
        if is_heading(line):
            chapter += 1
            continue
        for word in line.replace("_", "").split():
            words.append(word)
            chapters.append(chapter)
    return words, chapters


@pytest.mark.parametrize("title, filename, is_heading", [
    ("Dracula", "dracula_stoker_pg345.txt", lambda line: re.fullmatch(r"CHAPTER [IVXL]+", line.strip()) is not None),
    ("The Republic", "republic_plato_jowett_pg1497.txt",
     lambda line: re.fullmatch(r"BOOK [IVX]+\.", line.strip()) is not None),
    ("Dubliners", "dubliners_joyce_pg2814.txt",
     lambda line: line.rstrip() in {s.upper() for s in data.DUBLINERS_STORIES[1:]}),  # unindented titles only
])
def test_books_passages_are_consecutive_words_of_their_chapter(books, data_dir, title, filename, is_heading):
    words, chapter_of_word = _words_with_chapter(data_dir / "gutenberg" / filename, is_heading)
    joined = " ".join(words)
    starts = np.cumsum([0] + [len(w) + 1 for w in words])  # character offset of each word in `joined`
    df = books["test"][books["test"]["book"] == title]
    first_label = df["label"].min()
    assert df["label"].nunique() > 5
    for text, label in zip(df["text"], df["label"]):
        offset = joined.find(text)
        assert offset >= 0, text
        word_index = int(np.searchsorted(starts, offset))
        # chapters counted from the first word (the mirror's Republic keeps its "BOOK I." line, Dracula does not)
        assert chapter_of_word[word_index] - chapter_of_word[0] == label - first_label, text


def test_books_with_longer_passages_warn_and_shrink_splits(data_dir):
    with pytest.warns(UserWarning, match="fewer than"):
        train = data.load_books("train", data_dir=data_dir, words_per_passage=80)
    assert all(len(t.split()) == 80 for t in train["text"])
    assert 5_000 < len(train) < 12_000
    with pytest.raises(ValueError, match="words_per_passage"):
        data.load_books("train", data_dir=data_dir, words_per_passage=0)


# ------------------------------------------------------------------------------------------------------
# STS-B and SNLI from the mirror
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split, rows", [("train", 1_000), ("dev", 375), ("test", 375)])
def test_stsb_subset_scores_are_gold_over_five(data_dir, split, rows):
    df = data.load_stsb(split, data_dir=data_dir)
    with open(data_dir / "stsb-subset" / f"sts-{split}.tsv", encoding="utf-8") as handle:
        raw = [line.rstrip("\n").split("\t") for line in handle]
    assert list(df.columns) == ["sentence1", "sentence2", "score"]
    assert len(df) == len(raw) == rows
    assert df["sentence1"].tolist() == [r[5] for r in raw] and df["sentence2"].tolist() == [r[6] for r in raw]
    np.testing.assert_allclose(df["score"].to_numpy(), [float(r[4]) / 5 for r in raw])
    assert df["score"].between(0, 1).all() and df.attrs["variant"] == "cc-by-sa-subset"


@pytest.mark.parametrize("split, counts", [("test", (3368, 3219, 3237)), ("dev", (3329, 3235, 3278))])
def test_snli_class_counts_match_source_md(data_dir, split, counts):
    df = data.load_snli(split, data_dir=data_dir)
    assert list(df.columns) == ["premise", "hypothesis", "label", "label_name"]
    assert tuple(df["label"].value_counts().sort_index()) == counts
    names = {0: "entailment", 1: "neutral", 2: "contradiction"}
    assert (df["label_name"] == df["label"].map(names)).all()
    # quoted fields are unquoted: no text keeps the CSV quote characters
    assert not df["premise"].str.startswith('"').any()


def test_snli_pairs_and_triplets_against_a_loop(data_dir):
    snli = data.load_snli("dev", data_dir=data_dir)
    pairs = data.snli_pairs("dev", data_dir=data_dir)
    triplets = data.snli_triplets("dev", data_dir=data_dir)
    entailed, contradicted = {}, {}
    for premise, hypothesis, label in zip(snli["premise"], snli["hypothesis"], snli["label"]):
        {0: entailed, 2: contradicted}.get(label, {}).setdefault(premise, []).append(hypothesis)
    expected_pairs = [(p, h) for p, hs in entailed.items() for h in hs]
    expected_triplets = [(p, h, c) for p, hs in entailed.items() for h in hs for c in contradicted.get(p, [])]
    assert list(pairs.columns) == ["anchor", "positive"]
    assert list(triplets.columns) == ["anchor", "positive", "negative"]
    assert Counter(map(tuple, pairs.to_numpy().tolist())) == Counter(expected_pairs)
    assert Counter(map(tuple, triplets.to_numpy().tolist())) == Counter(expected_triplets)


def test_load_dataset_dispatches_and_names_the_known_datasets(data_dir):
    pd.testing.assert_frame_equal(data.load_dataset("banking77", "test", data_dir=data_dir),
                                  data.load_banking77("test", data_dir=data_dir))
    assert len(data.load_dataset("snli", data_dir=data_dir)) == 9_842  # default split: dev
    assert len(data.load_dataset("stsb", "validation", data_dir=data_dir)) == 375  # HF split name accepted
    with pytest.raises(ValueError, match="banking77, books, stsb, snli"):
        data.load_dataset("imdb")
    with pytest.raises(ValueError, match="train, test"):
        data.load_banking77("dev", data_dir=data_dir)


def test_describe_lists_source_license_citation_and_size():
    table = data.describe()
    assert list(table.index) == ["banking77", "books", "stsb", "snli", "scifact"]
    for column in ("source", "license", "citation", "size", "teaches"):
        assert table[column].str.len().min() > 5
    assert data.describe("snli").loc["snli", "license"] == "CC BY-SA 4.0"


# ------------------------------------------------------------------------------------------------------
# Where files come from: data_dir → LABKIT_DATA_DIR → cache → download
# ------------------------------------------------------------------------------------------------------
def copy_dataset(data_dir: Path, folder: Path, relpaths) -> Path:
    for relpath in relpaths:
        (folder / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / relpath, folder / relpath)
    return folder


BANKING = ["banking77/train.csv", "banking77/test.csv", "banking77/categories.json"]


def test_lookup_order_data_dir_then_env_then_cache(data_dir, tmp_path, monkeypatch, isolated):
    monkeypatch.setattr(data, "_open_url", no_network)
    broken = copy_dataset(data_dir, tmp_path / "broken", BANKING)
    (broken / "banking77" / "test.csv").write_text("text,category\nhello,card_arrival\n")
    monkeypatch.setenv("LABKIT_DATA_DIR", str(broken))
    # the explicit data_dir wins: the broken file in LABKIT_DATA_DIR is never read
    df = data.load_banking77("test", data_dir=data_dir)
    assert len(df) == 3_080 and df.attrs["source_files"] == [str(data_dir / "banking77" / "test.csv")]
    # without data_dir, LABKIT_DATA_DIR is used, and its broken file is reported, not silently skipped
    with pytest.raises(data.CorruptDataError, match=re.escape(str(broken / "banking77" / "test.csv"))):
        data.load_banking77("test")
    # the cache is used when no folder has the file
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path))  # exists, holds no dataset
    copy_dataset(data_dir, isolated, BANKING)
    df = data.load_banking77("test")
    assert df.attrs["source_files"] == [str(isolated / "banking77" / "test.csv")]


def test_a_data_folder_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        data.load_banking77(data_dir=tmp_path / "typo")
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match="LABKIT_DATA_DIR"):
        data.load_banking77()


def test_no_network_fails_fast_with_both_fixes(monkeypatch, isolated):
    spec = data.SOURCES["banking77/train.csv"]
    monkeypatch.setitem(data.SOURCES, spec.relpath, replace(spec, url="http://127.0.0.1:9/train.csv"))
    started = time.monotonic()
    with pytest.raises(data.DataUnavailableError) as caught:
        data.load_banking77("train")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "banking77/train.csv" in message and str(isolated) in message
    assert "LABKIT_DATA_DIR" in message and "python -m labkit download banking77" in message
    assert isinstance(caught.value, FileNotFoundError)
    assert leftovers(isolated) == []


def test_an_unreachable_host_times_out_quickly(monkeypatch, isolated):
    spec = data.SOURCES["banking77/test.csv"]
    # 10.255.255.1 is a non-routed address: the connect hangs until the (shortened) timeout
    monkeypatch.setitem(data.SOURCES, spec.relpath, replace(spec, url="http://10.255.255.1/test.csv"))
    monkeypatch.setattr(data, "CONNECT_TIMEOUT_S", 0.5)
    started = time.monotonic()
    with pytest.raises(data.DataUnavailableError, match="python -m labkit download banking77"):
        data.load_banking77("test")
    assert time.monotonic() - started < 5
    assert leftovers(isolated) == []


# ------------------------------------------------------------------------------------------------------
# Atomic, verified downloads
# ------------------------------------------------------------------------------------------------------
def banking_urls(data_dir: Path) -> dict:
    return {data.SOURCES[r].url: (data_dir / r).read_bytes() for r in BANKING}


def test_download_lands_in_the_cache_and_is_reused(data_dir, monkeypatch, isolated):
    requested = serve(monkeypatch, banking_urls(data_dir))
    df = data.load_banking77("test")
    assert len(df) == 3_080 and len(requested) == 2  # test.csv and categories.json
    assert (isolated / "banking77" / "test.csv").read_bytes() == (data_dir / "banking77" / "test.csv").read_bytes()
    assert leftovers(isolated) == ["banking77/categories.json", "banking77/test.csv"]  # no temp files
    pd.testing.assert_frame_equal(data.load_banking77("test"), df)
    assert len(requested) == 2  # second load: from the cache, no download


@pytest.mark.parametrize("how", ["short read", "truncated file", "connection reset"])
def test_a_broken_download_leaves_nothing_behind(data_dir, monkeypatch, isolated, how):
    files = banking_urls(data_dir)
    url = data.SOURCES["banking77/train.csv"].url
    body = files[url]
    if how == "short read":  # the server announced more bytes than it sent
        serve(monkeypatch, {url: body[:50_000]}, announced=len(body))
        expected = "cut short"
    elif how == "truncated file":  # consistent headers, but the file itself is incomplete
        serve(monkeypatch, {url: body[:50_000]})
        expected = "SHA-256"
    else:
        serve(monkeypatch, {url: body}, fail_after=65_536)
        expected = "ConnectionResetError"
    with pytest.raises(data.DataUnavailableError, match=expected):
        data.load_banking77("train")
    assert leftovers(isolated) == []


def test_a_corrupt_cached_file_is_downloaded_again(data_dir, monkeypatch, isolated):
    copy_dataset(data_dir, isolated, BANKING)
    cached = isolated / "banking77" / "train.csv"
    cached.write_bytes(cached.read_bytes()[:1000])  # truncated
    requested = serve(monkeypatch, banking_urls(data_dir))
    with pytest.warns(UserWarning, match="corrupt"):
        df = data.load_banking77("train")
    assert len(df) == 10_003 and requested == [data.SOURCES["banking77/train.csv"].url]
    assert cached.read_bytes() == (data_dir / "banking77" / "train.csv").read_bytes()


def test_a_corrupt_cached_file_without_network_says_what_happened(data_dir, monkeypatch, isolated):
    copy_dataset(data_dir, isolated, BANKING)
    (isolated / "banking77" / "train.csv").write_bytes(b"\x00garbage\xff" * 100)
    serve(monkeypatch, {})
    with pytest.warns(UserWarning), pytest.raises(data.DataUnavailableError, match="was corrupt and has been deleted"):
        data.load_banking77("train")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_bad_book_in_a_data_folder_names_the_file_to_delete(data_dir, tmp_path, damage):
    folder = copy_dataset(data_dir, tmp_path / "mine", [f"gutenberg/{b.filename}" for b in data.BOOKS])
    bad = folder / "gutenberg" / "dracula_stoker_pg345.txt"
    original = bad.read_bytes()
    bad.write_bytes(original[: len(original) * 95 // 100] if damage == "truncated" else b"\xde\xad" * 500_000)
    with pytest.raises(data.CorruptDataError) as caught:
        data.load_books("dev", data_dir=folder)
    assert str(bad) in str(caught.value) and "Delete or replace" in str(caught.value)


def gutenberg_edition(body: bytes, title: str, with_footer: bool = True) -> bytes:
    """The mirror body wrapped like a fresh gutenberg.org download: header, title page, contents, licence."""
    header = (
        f"\ufeffThe Project Gutenberg eBook of {title}\r\n\r\nTitle: {title}\r\n\r\nAuthor: Someone\r\n\r\n"
        f"*** START OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***\r\n\r\n{title.upper()}\r\n\r\n"
        "CONTENTS\r\n\r\nCHAPTER I\r\nCHAPTER II\r\nBOOK II.\r\n     [ 2 ]\r\nARABY\r\n\r\n\r\n"
    ).encode()
    footer = (f"\r\n\r\n*** END OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***\r\n\r\n"
              "CHAPTER XXVIII\r\nSection 1. General Terms of Use\r\n").encode()
    return header + body + (footer if with_footer else b"")


def test_a_fresh_gutenberg_download_gives_the_same_chapters_as_the_mirror(data_dir, monkeypatch, isolated):
    files = {}
    for book in data.BOOKS:
        body = (data_dir / "gutenberg" / book.filename).read_bytes()
        files[book.url] = gutenberg_edition(body, book.title)
    requested = serve(monkeypatch, files)
    fresh = data.load_books("test")
    assert len(requested) == 4
    pd.testing.assert_frame_equal(fresh, data.load_books("test", data_dir=data_dir))
    # the cache holds the download as served (header and all); loading again downloads nothing
    assert (isolated / "gutenberg" / "dracula_stoker_pg345.txt").read_bytes().startswith(b"\xef\xbb\xbfThe Project")
    data.load_books("dev")
    assert len(requested) == 4


def test_a_gutenberg_download_without_its_footer_is_rejected(data_dir, monkeypatch, isolated):
    book = data.BOOKS[2]
    body = (data_dir / "gutenberg" / book.filename).read_bytes()
    serve(monkeypatch, {book.url: gutenberg_edition(body, book.title, with_footer=False)})
    spec = data.SOURCES[f"gutenberg/{book.filename}"]
    with pytest.raises(data.CorruptDataError, match="footer"):
        data._download_into(spec, isolated, progress=False)
    assert leftovers(isolated) == []
    serve(monkeypatch, {book.url: gutenberg_edition(body, "Ulysses")})  # another book's header
    with pytest.raises(data.CorruptDataError, match="title"):
        data._download_into(spec, isolated, progress=False)


def test_stsb_full_comes_from_the_hub_and_is_cached(data_dir, monkeypatch, isolated, tmp_path):
    from huggingface_hub import hf_hub_url

    for switch in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # the test suite may run with the hub offline
        monkeypatch.delenv(switch, raising=False)
    subset = data.load_stsb("train", data_dir=data_dir)
    full = pd.concat([subset] * 6, ignore_index=True).iloc[:5_749]  # the full train split has 5,749 rows
    full.to_parquet(tmp_path / "hub.parquet")
    url = hf_hub_url("sentence-transformers/stsb", "data/train-00000-of-00001.parquet", repo_type="dataset",
                     revision=data.STSB_HUB_REVISION)
    assert data.SOURCES["stsb/train.parquet"].url == url
    requested = serve(monkeypatch, {url: (tmp_path / "hub.parquet").read_bytes()})
    df = data.load_stsb("train")
    assert requested == [url]
    assert df.attrs["variant"] == "full" and len(df) == 5_749 and df["score"].between(0, 1).all()
    pd.testing.assert_frame_equal(df, full)
    assert (isolated / "stsb" / "train.parquet").is_file()
    data.load_stsb("train")
    assert len(requested) == 1  # cached
    # a hub file with the wrong number of rows is rejected and not cached
    test_url = data.SOURCES["stsb/test.parquet"].url
    buffer = io.BytesIO()
    full.iloc[:100].to_parquet(buffer)
    serve(monkeypatch, {test_url: buffer.getvalue()})
    with pytest.raises(data.DataUnavailableError, match="rows"):
        data.load_stsb("test")
    assert leftovers(isolated) == ["stsb/train.parquet"]


def test_hub_offline_mode_is_respected_without_waiting(monkeypatch, isolated):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(data, "_open_url", no_network)
    started = time.monotonic()
    with pytest.raises(data.DataUnavailableError, match="HF_HUB_OFFLINE"):
        data.load_stsb("dev")
    assert time.monotonic() - started < 2


def snli_zip(data_dir: Path, target: Path) -> bytes:
    """A stand-in for snli_1.0.zip: the mirror's dev and test as jsonl, plus unlabelled pairs to drop."""
    names = ["entailment", "neutral", "contradiction"]
    with zipfile.ZipFile(target, "w") as archive:
        for split in ("dev", "test", "train"):
            source = data_dir / "snli" / f"snli_1.0_{'dev' if split == 'train' else split}.tsv"
            with open(source, newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
            lines = [json.dumps({"gold_label": names[int(r["label"])], "sentence1": r["premise"],
                                 "sentence2": r["hypothesis"], "pairID": str(i)}) for i, r in enumerate(rows)]
            lines.insert(5, json.dumps({"gold_label": "-", "sentence1": "A man.", "sentence2": "A woman."}))
            archive.writestr(f"snli_1.0/snli_1.0_{split}.jsonl", "\n".join(lines) + "\n")
    return target.read_bytes()


def test_snli_from_the_stanford_zip_matches_the_mirror(data_dir, monkeypatch, isolated, tmp_path):
    requested = serve(monkeypatch, {data.SNLI_ZIP_URL: snli_zip(data_dir, tmp_path / "snli.zip")})
    for split in ("dev", "test"):
        downloaded = data.load_snli(split)
        mirrored = data.load_snli(split, data_dir=data_dir)
        pd.testing.assert_frame_equal(downloaded, mirrored, check_like=False)
    assert requested == [data.SNLI_ZIP_URL]  # one zip serves every split
    assert leftovers(isolated) == ["snli/snli_1.0.zip", "snli/snli_1.0_dev.tsv", "snli/snli_1.0_test.tsv"]


def test_a_truncated_snli_zip_is_not_kept(data_dir, monkeypatch, isolated, tmp_path):
    body = snli_zip(data_dir, tmp_path / "snli.zip")
    serve(monkeypatch, {data.SNLI_ZIP_URL: body[: len(body) // 2]})  # consistent headers, half a zip
    with pytest.raises(data.DataUnavailableError, match="snli_1.0_dev.tsv"):
        data.load_snli("dev")
    assert leftovers(isolated) == []


def test_prefetch_copies_from_a_data_folder_and_reports_what_is_missing(data_dir, monkeypatch, isolated):
    serve(monkeypatch, {})  # no internet
    done = data.download(["banking77", "books", "stsb"], data_dir=data_dir, progress=False)
    assert [p.name for p in done["banking77"]] == ["train.csv", "test.csv", "categories.json"]
    assert all(str(p).startswith(str(isolated)) for paths in done.values() for p in paths)
    assert [p.name for p in done["stsb"]] == ["sts-train.tsv", "sts-dev.tsv", "sts-test.tsv"]  # the subset
    # the cache alone now serves the loaders
    monkeypatch.setattr(data, "_open_url", no_network)
    assert len(data.load_books("dev")) == 964 and len(data.load_stsb("dev")) == 375
    # SNLI's train split is not in the mirror: dev and test are copied, train is reported
    with pytest.raises(data.DataUnavailableError, match="snli_1.0_train.tsv"):
        data.download("snli", data_dir=data_dir, progress=False)
    assert (isolated / "snli" / "snli_1.0_dev.tsv").is_file()
    with pytest.raises(ValueError, match="known datasets"):
        data.download("mnist")


# ------------------------------------------------------------------------------------------------------
# Your own files
# ------------------------------------------------------------------------------------------------------
def test_from_file_maps_string_labels_and_reads_every_format(tmp_path):
    frame = pd.DataFrame({"sentence": ["a cat", "a dog", "NA", "a bird"], "intent": ["pet", "pet", "none", "bird"],
                          "other": ["x", "y", "z", "w"], "sim": [0.5, 1, 0, 0.25]})
    names = sorted(set(frame["intent"]))
    for suffix in (".csv", ".tsv", ".jsonl", ".parquet"):
        path = tmp_path / f"mine{suffix}"
        if suffix == ".jsonl":
            frame.to_json(path, orient="records", lines=True)
        elif suffix == ".parquet":
            frame.to_parquet(path)
        else:
            frame.to_csv(path, sep="," if suffix == ".csv" else "\t", index=False)
        df = data.from_file(path, text_column="sentence", label_column="intent", score_column="sim",
                            text_pair_column="other")
        assert list(df.columns) == ["text", "text_pair", "label", "label_name", "score"], suffix
        assert df["text"].tolist() == frame["sentence"].tolist()  # "NA" stays text
        assert df["label"].tolist() == [names.index(v) for v in frame["intent"]]
        assert df["label_name"].tolist() == frame["intent"].tolist() and df.attrs["label_names"] == names
        assert df["score"].tolist() == frame["sim"].tolist()


def test_from_file_keeps_integer_labels(tmp_path):
    path = tmp_path / "ints.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": [3, 1, 3]}).to_csv(path, index=False)
    df = data.from_file(path, label_column="label")
    assert df["label"].tolist() == [3, 1, 3] and df["label"].dtype == np.int64


def test_from_file_errors_say_what_is_wrong(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("text,label\nhello,a\nworld,b\n")
    with pytest.raises(ValueError, match=r"no column 'sentence'.*columns are: text, label"):
        data.from_file(good, text_column="sentence")
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\nhello,a\n,b\n   ,a\nok,a\n")
    with pytest.raises(ValueError, match=r"2 row\(s\), data rows 1, 2"):
        data.from_file(empty, label_column="label")
    numbers = tmp_path / "numbers.jsonl"
    numbers.write_text('{"text": "fine"}\n{"text": 5}\n')
    with pytest.raises(ValueError, match="non-text values in 1 row"):
        data.from_file(numbers)
    missing = tmp_path / "missing.csv"
    missing.write_text("text,label\nhello,a\nworld,\nagain,b\n")
    with pytest.raises(ValueError, match=r"missing labels in 1 row\(s\), data rows 1 "):
        data.from_file(missing, label_column="label")
    sheet = tmp_path / "notes.xlsx"
    sheet.write_text("x")
    with pytest.raises(ValueError, match=r"\.csv, \.tsv.*\.parquet"):
        data.from_file(sheet)
    with pytest.raises(FileNotFoundError):
        data.from_file(tmp_path / "nowhere.csv")


# ------------------------------------------------------------------------------------------------------
# A dev split for training
# ------------------------------------------------------------------------------------------------------
def test_train_dev_split_is_stratified_disjoint_and_deterministic(data_dir):
    banking = data.load_banking77("train", data_dir=data_dir)
    train, dev = data.train_dev_split(banking, dev_size=0.1, seed=0)
    assert len(dev) == 1_000 and len(train) + len(dev) == len(banking)
    assert Counter(train["text"]) + Counter(dev["text"]) == Counter(banking["text"])
    total, share = banking["label"].value_counts(), dev["label"].value_counts()
    assert ((share - total * 0.1).abs() < 1).all() and share.index.nunique() == 77
    assert train["label"].nunique() == 77
    again_train, again_dev = data.train_dev_split(banking, dev_size=0.1, seed=0)
    pd.testing.assert_frame_equal(dev, again_dev)
    _, other_dev = data.train_dev_split(banking, dev_size=0.1, seed=1)
    assert set(other_dev["text"]) != set(dev["text"])
    small = pd.DataFrame({"text": list("abcdef"), "label": [0, 0, 0, 0, 1, 2]})
    small_train, small_dev = data.train_dev_split(small, dev_size=2)
    assert set(small_train["label"]) == {0, 1, 2}  # singleton classes stay in train
    with pytest.raises(ValueError, match="dev_size"):
        data.train_dev_split(small, dev_size=1.5)


def test_stratified_subset_keeps_each_class_share_and_is_repeatable():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": [0] * 60 + [1] * 30 + [2] * 10})
    subset = data.stratified_subset(frame, 20, seed=1)
    assert len(subset) == 20
    assert subset["label"].value_counts().to_dict() == {0: 12, 1: 6, 2: 2}  # 60/30/10 % of 20, counted by hand
    assert subset.equals(data.stratified_subset(frame, 20, seed=1))
    assert set(subset["text"]) <= set(frame["text"])
    assert data.stratified_subset(frame, 0) is frame and data.stratified_subset(frame, 500) is frame


def test_drop_small_classes_keeps_only_classes_with_enough_rows():
    frame = pd.DataFrame({"text": list("abcdefg"), "label": [0, 0, 0, 1, 1, 2, 0]})
    kept = data.drop_small_classes(frame, 2)
    assert kept["text"].tolist() == ["a", "b", "c", "d", "e", "g"]
    with pytest.raises(ValueError, match="no column 'intent'"):
        data.drop_small_classes(frame, 2, label_column="intent")
